import sys

from mxscan.cli import main

sys.exit(main())
