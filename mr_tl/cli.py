"""What every command line of mr_tl shares: one-line errors and exit codes (mr_tl.errors)."""

import errno
import os
import sys

from mr_tl.errors import MrTlError


def fail(message, code=2):
    """Print one clear error line and exit non-zero (no traceback)."""
    print("error: %s" % message, file=sys.stderr)
    sys.exit(code)


def _quiet_broken_pipe():
    """``cmd | head -1``: the reader went away; exit without a traceback (and without Python's
    second complaint when it flushes stdout at exit)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    sys.exit(141)   # what a shell reports for SIGPIPE


def run_command(function, *args, **kwargs):
    """Call a command's body; turn mr_tl's errors, a closed pipe, a full disk and Ctrl-C into one line
    and an exit code instead of a traceback.  Returns what ``function`` returns."""
    try:
        return function(*args, **kwargs)
    except MrTlError as e:
        fail(str(e), e.exit_code)
    except BrokenPipeError:
        _quiet_broken_pipe()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            fail("no space left on the device%s (%s); nothing written there is marked complete, free some space "
                 "and run the command again" % (" writing " + e.filename if e.filename else "", e.strerror), 1)
        raise
