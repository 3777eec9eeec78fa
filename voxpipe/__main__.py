import sys

from voxpipe.cli import main

sys.exit(main())
