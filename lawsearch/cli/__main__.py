import sys

from lawsearch.cli import main

sys.exit(main())
