"""Small helpers shared by the command-line entry points."""

import sys


def fail(message, code=2):
    """Print one clear error line and exit non-zero (no traceback)."""
    print("error: %s" % message, file=sys.stderr)
    sys.exit(code)
