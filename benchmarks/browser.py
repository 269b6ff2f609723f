"""The system's headless Chromium, as the browser test and the site benchmarks launch it through
Playwright (no `playwright install`: Debian's `chromium` package)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_path() -> str | None:
    """The system Chromium (ATLAS_CHROMIUM overrides), or None."""
    candidates = [os.environ.get("ATLAS_CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser"),
                  "/usr/bin/chromium"]
    return next((c for c in candidates if c and Path(c).is_file()), None)
