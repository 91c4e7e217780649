import sys

from smartstock.cli import main

if __name__ == "__main__":  # guard so multiprocessing's spawn can import this module safely
    sys.exit(main())
