"""``python -m langchain_nemoguard.simulator``: the simulator without the project CLI."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
