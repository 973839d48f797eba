"""The command line: a thin typer layer over the library (every command is a library call)."""
