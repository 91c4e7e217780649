"""`python -m edge --config FILE ...` is `smartstock run` (the container's entry point)."""

import sys

from smartstock.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
