"""``python -m stgcma COMMAND ...``: the command-line entry point (see ``stgcma.cli``)."""

from stgcma.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
