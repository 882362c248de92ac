"""``python -m sxtquant`` runs the command-line interface."""

import sys

from sxtquant.cli import main

if __name__ == "__main__":
    sys.exit(main())
