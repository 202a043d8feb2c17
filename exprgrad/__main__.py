"""`python -m exprgrad`: the command (see exprgrad.ui.cli); Ctrl-C while it starts exits 130."""

import sys

try:
    from .ui.cli import main
except KeyboardInterrupt:  # before main() can report it
    sys.exit(130)

sys.exit(main())
