"""Old name of benchmarks/readme_blocks.py, kept so that scripts importing it still run."""

from benchmarks.readme_blocks import machine_line, replace_block  # noqa: F401
