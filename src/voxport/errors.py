"""User-facing failures.

Anything raised as a `VoxportError` is a problem with the user's input or environment: the CLI prints its
message as one line and exits non-zero, without a traceback. Every other exception is a bug.
"""


class VoxportError(Exception):
    """A failure the user can act on; the message names the input and what was expected."""


class DeviceError(VoxportError):
    """The requested device or dtype is not usable on this machine."""


class CheckpointError(VoxportError):
    """A model directory or hub id cannot be resolved or loaded."""


class AudioError(VoxportError):
    """An audio file cannot be read or written."""


class InputError(VoxportError):
    """A request parameter is out of range or malformed."""


def first_line(error: BaseException) -> str:
    """An exception's message as one line for an error report; its type's name where the message is empty."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
