"""``python -m pyfdc ...``: same as the ``pyfdc`` command."""
import sys

from pyfdc.cli import main

sys.exit(main())
