"""``python -m lawsearch``: the command line, as the ``lawsearch`` script runs it."""

import sys

from lawsearch.cli import main

sys.exit(main())
