"""Frozen studies: each script reruns one comparison that docs/ reports (the settings it compared,
side by side), so the numbers there can be reproduced. They are not tools for a new atlas; the
scripts one level up are. Run them from the repository root: `python -m benchmarks.studies.NAME`."""
