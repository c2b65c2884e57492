"""The CLI error convention, for every command: one line naming the thing at fault and the
valid choices; exit status 2 for usage errors (a wrong name, version, day or setting), 1 for
failures (a server down, a refused promotion); a traceback only with `--debug`."""

from __future__ import annotations


class PlatformError(Exception):
    """A failure the user can act on; its message is the one line the CLI prints."""

    exit_code = 1


class UsageError(PlatformError):
    """The command was asked for something that does not exist or is not valid."""

    exit_code = 2


class NotFound(UsageError):
    """An unknown model, version, alias, dataset or day; the message lists what there is."""
