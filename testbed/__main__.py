"""``python -m testbed ...``: the same commands as ``mxscan testbed ...``."""

import sys

from testbed.cli import main

sys.exit(main())
