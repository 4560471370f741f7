"""`python -m ferkit` is the `ferkit` command."""

import sys

from ferkit.cli import main

sys.exit(main())
