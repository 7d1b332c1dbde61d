import sys

from lstmserve.cli import main

sys.exit(main())
