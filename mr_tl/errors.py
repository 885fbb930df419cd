"""Every error mr_tl reports to a user, in one place.

Each command prints such an error as one line, ``error: <message>``, and
exits with the error's ``exit_code`` (see :func:`mr_tl.cli.run_command`, the
one path every command's errors take; it also turns Ctrl-C into exit 130, a
closed pipe into exit 141 and a full disk into exit 1):

* 2 -- the request cannot be carried out as asked (bad flags, bad or
  incomplete inputs, a model that does not match its sidecar, a run
  directory that cannot be used); nothing was changed.
* 1 -- the work started but did not finish (a job failed, its output did not
  add up, training diverged); what was written before is kept and named.

The core raises these (never ``SystemExit``); only the command layer turns
them into exit codes.  :class:`RecordError` is the exception: it is raised
deep inside parsers for one bad line and is turned into one of these, with
the file and line, by whoever read the line.
"""


class MrTlError(Exception):
    """Base class: an error with a message meant for the user."""

    exit_code = 2


class UsageError(MrTlError, ValueError):
    """Command-line flags that do not make sense together (what was given, what is allowed)."""


class InputError(MrTlError, ValueError):
    """Inputs that would make a job fail or lie; raised before it runs, or when its output is checked."""


class PackError(InputError):
    """The image folder or the options cannot be packed as asked."""


class FeatureError(InputError):
    """Features that cannot be used as they are (what was expected, what was found)."""


class ModelError(MrTlError, ValueError):
    """A model file or sidecar that cannot be used, with what was expected."""


class RunError(MrTlError, ValueError):
    """A run directory that cannot be used as asked."""


class OutputExists(MrTlError, ValueError):
    """An output that is already there and was not to be replaced (``--overwrite`` replaces it)."""


class JobFailed(MrTlError, RuntimeError):
    """A job (or the check of its output) failed after it started."""

    exit_code = 1


class TrainingError(JobFailed):
    """Training cannot go on (diverged, a round failed); the last good checkpoint is kept."""


class RecordError(ValueError):
    """A line that is not a valid record of the expected kind (callers add the file and line)."""
