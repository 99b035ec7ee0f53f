"""Exception hierarchy for loomrt.

Every error raised deliberately by loomrt derives from :class:`LoomrtError`.
Each concrete class also derives from the closest built-in exception so that
callers who catch standard exceptions (``ValueError``, ``OSError``...) keep
working.
"""

from __future__ import annotations

__all__ = [
    "LoomrtError",
    "FormatError",
    "UnsupportedError",
    "InvalidArgumentError",
    "NotFoundError",
    "ContextFullError",
    "StateError",
    "OutOfMemoryError",
    "InternalError",
    "LoomrtIOError",
    "ArgumentTypeError",
    "BusyError",
    "NumericError",
]


class LoomrtError(Exception):
    """Base class of all loomrt errors."""


class FormatError(LoomrtError, ValueError):
    """A file or metadata value is malformed or inconsistent."""


class UnsupportedError(LoomrtError, NotImplementedError):
    """A feature, model type or file variant is not supported."""


class InvalidArgumentError(LoomrtError, ValueError):
    """A caller passed an invalid argument."""


class NotFoundError(LoomrtError, FileNotFoundError):
    """A required file or resource does not exist."""


class ContextFullError(LoomrtError, ValueError):
    """The context window cannot hold the requested tokens."""


class StateError(LoomrtError, RuntimeError):
    """An operation was attempted in an invalid object state."""


class OutOfMemoryError(LoomrtError, MemoryError):
    """An allocation failed."""


class InternalError(LoomrtError, RuntimeError):
    """An internal invariant was violated (a bug in loomrt)."""


class LoomrtIOError(LoomrtError, OSError):
    """Reading or writing a file failed."""


class ArgumentTypeError(InvalidArgumentError, TypeError):
    """A caller passed an argument of the wrong type (e.g. bytes for a prompt, a float or a
    string for an integer). Both an :class:`InvalidArgumentError` (a ``ValueError``) and a
    ``TypeError``: either ``except`` catches it."""


class BusyError(LoomrtError, RuntimeError):
    """A session was used by a second thread (or a second generation) while in use.

    A session serves one thread at a time; give each thread its own session, or use the
    model's generate / chat / stream, which take one of their own."""


class NumericError(LoomrtError, FloatingPointError):
    """The model produced NaN or infinite logits (corrupt or overflowing weights).

    The message names the position and the first layer (or the embedding, or the final norm
    and LM head) whose output stopped being finite. Nothing was added to the session."""
