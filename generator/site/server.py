"""`atlas serve`: the output folder over HTTP on 127.0.0.1, static files only."""
from __future__ import annotations

import errno
import functools
import http.server
from pathlib import Path
from urllib.parse import unquote

from generator import safefs
from generator.errors import SiteError


class _SiteHandler(http.server.SimpleHTTPRequestHandler):
    """Static files only: no folder listings, nothing whose path has a dotfile or dot-folder
    (`.atlas-cache/`, `.atlas.lock`, the ledgers: the build's, not the site's) however the
    request spells it (`%2f`, `%2e`, encoded twice, backslashes), and nothing a symlink leads
    to outside the folder."""

    def send_head(self):  # type: ignore[no-untyped-def]
        if _hidden(self.path) or not _served(self.directory, self.translate_path(self.path)):
            self.send_error(404, "File not found")
            return None
        return super().send_head()

    def list_directory(self, path):  # type: ignore[no-untyped-def]
        self.send_error(404, "File not found")
        return None


def _hidden(url: str) -> bool:
    """Whether a request path names a dotfile or dot-folder at any level of percent-decoding."""
    path = url.split("?", 1)[0].split("#", 1)[0]
    for _ in range(4):  # %252e... decodes once per round
        parts = path.replace("\\", "/").split("/")
        if any(part.startswith(".") for part in parts):
            return True
        decoded = unquote(path)
        if decoded == path:
            return False
        path = decoded
    return True  # encoded more deeply than any browser does: refused


def _served(root: str, path: str) -> bool:
    """Whether the file a request maps to lies inside the site folder (symlinks resolved)."""
    try:
        safefs.inside(root, path)
    except safefs.UnsafePathError:
        return False
    return True


def make_server(output: Path, port: int = 8000) -> http.server.ThreadingHTTPServer:
    """An HTTP server for the `output` folder, bound to 127.0.0.1 only (port 0: any free one)."""
    if isinstance(port, bool) or not 0 <= port <= 65535:
        raise SiteError(f"port {port} is out of range (0-65535; 0 picks a free one)")
    handler = functools.partial(_SiteHandler, directory=str(output))
    try:
        return http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise SiteError(f"port {port} is in use (another `atlas serve`?): pick another with --port") from None
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise SiteError(f"port {port} needs privileges: use a port above 1023, e.g. --port 8000") from None
        raise SiteError(f"cannot serve on 127.0.0.1:{port}: {exc.strerror or exc}") from None


def serve(output: Path, port: int = 8000) -> None:
    """Serve `output` on http://127.0.0.1:<port>/ until interrupted (local only)."""
    if not (Path(output) / "index.html").is_file():
        raise SiteError(f"{output}/index.html not found: run `atlas render` (or `atlas build`) first")
    with make_server(output, port) as server:
        print(f"Serving {output} at http://127.0.0.1:{server.server_address[1]}/ (Ctrl-C to stop)")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
