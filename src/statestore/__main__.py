"""``python -m statestore`` runs the command line."""

import sys

from statestore.cli import main

if __name__ == "__main__":
    sys.exit(main())
