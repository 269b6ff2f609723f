"""`python -m generator` runs the `atlas` command line."""
from generator.cli import app

app(prog_name="atlas")
