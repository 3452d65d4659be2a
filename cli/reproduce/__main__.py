"""``python -m cli.reproduce TABLE ...`` (``make reproduce``)."""

import sys

from cli.reproduce import main

main(sys.argv[1:])
