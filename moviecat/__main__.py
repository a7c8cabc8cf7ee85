"""`python -m moviecat`: the same command as the `moviecat` console script."""

import sys

from moviecat.cli import main

sys.exit(main())
