"""``python -m imusic`` runs the command line."""

import sys

from imusic.cli import main

sys.exit(main())
