import sys

from duel_assets.cli import main

sys.exit(main())
