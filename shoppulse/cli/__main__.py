"""`python -m shoppulse.cli`: the same as the `shoppulse` command."""

import sys

from . import main

sys.exit(main())
