import sys

from smartstock.cli import main

sys.exit(main())
