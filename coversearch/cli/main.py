"""Entry point of the `coversearch` command. Which module registers which command: ``commands.py``."""

from coversearch.cli.app import app


def main() -> None:
    app(prog_name="coversearch")


if __name__ == "__main__":
    main()
