"""``python -m lmlab``: the same as the ``lmlab`` command (see :mod:`lmlab.cli`)."""

import sys

from lmlab.cli import main

if __name__ == "__main__":
    sys.exit(main())
