"""`python -m bslr` runs the command line."""

import sys

from bslr.cli import main

sys.exit(main())
