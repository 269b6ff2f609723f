"""The intra-class atlas (Wei, Zhou, Torralba, Freeman 2015): what a CNN knows about the
variety inside each class, visualized and published as a static website.

Start at `generator.cli` (the `atlas` command) and ARCHITECTURE.md.
"""
from generator.threads import passive_wait

passive_wait()  # before torch loads: idle OpenMP threads sleep instead of spinning (threads.py)

__version__ = "0.1.0"
