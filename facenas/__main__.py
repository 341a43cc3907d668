import sys

from facenas.cli import main

sys.exit(main())
