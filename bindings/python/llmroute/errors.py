"""Python exceptions for libllmroute's error codes.

Every exception raised for a failed C call carries the library's own message
(struct lr_error's `message`, e.g. "unknown model 'gpt-5'") as its text, plus
`code` (the negative LR_E* value), `line` (1-based line of a file, or 0) and
`c_name` (the function that failed). Bad input of any kind is a ValueError;
an argument of the wrong Python type is InvalidType, which is also a
TypeError.
"""
from . import _lib

__all__ = ["Error", "InvalidInput", "InvalidType", "UnknownModel", "ParseError", "ConfigError",
           "EmptyInput", "StoreError", "StoreBusy", "StoreReplaced", "Cancelled", "Infeasible",
           "StrategyError", "TooBig", "IOFailure", "OutOfMemory", "EmbedError", "raise_for"]


class Error(Exception):
    """Base of every error from libllmroute."""

    def __init__(self, message, code=0, line=0, c_name=None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.line = line
        self.c_name = c_name


class InvalidInput(Error, ValueError):
    """LR_EINVAL: an invalid argument or malformed input."""


class InvalidType(InvalidInput, TypeError):
    """An argument of the wrong Python type (a number where a str belongs).
    An InvalidInput like every other bad argument, and a TypeError as well,
    as Python's own functions raise for one, so both `except` clauses catch
    it. The message names the method, the argument and the type received:
    "Store.add: query: expected a str, got int"."""


class UnknownModel(InvalidInput):
    """LR_ENOMODEL: a model name (or index) that is not configured."""


class ParseError(InvalidInput):
    """LR_EPARSE: malformed JSON or data."""


class ConfigError(InvalidInput):
    """LR_ECONFIG: a configuration that fails validation."""


class EmptyInput(InvalidInput):
    """LR_EEMPTY: an empty candidate list, store or batch where one is needed."""


class StrategyError(InvalidInput):
    """LR_ESTRATEGY: an unknown strategy, or one that lacks what it needs."""


class TooBig(InvalidInput):
    """LR_ETOOBIG: an input over a configured cap."""


class Infeasible(InvalidInput):
    """LR_EINFEASIBLE: no assignment meets the constraints. `result` holds the
    best reachable assignment the library returned (a BatchResult)."""

    result = None


class EmbedError(InvalidInput):
    """A dense store's embed function failed, or gave vectors that cannot be
    used (not one per text, of differing length or not the store's
    dimension, NaN or infinite, not numbers), or an embeddings server failed
    or answered something other than embeddings. Nothing was written. When
    embed raised, the exception it raised is __cause__."""


class StoreError(Error, RuntimeError):
    """LR_ESTORE: the history store failed or does not match (e.g. another embedder)."""


class StoreBusy(StoreError):
    """LR_EBUSY: another process has held the history store for longer than a
    write waits (5 s); nothing was written. Transient: try again."""


class StoreReplaced(StoreError):
    """LR_EREPLACED: the history store's file was replaced or removed since it
    was opened; nothing was written. refresh() opens the file now at its path."""


class Cancelled(Error):
    """LR_ECANCELED: stopped at the caller's request (an import's cancel flag,
    which the C API offers); nothing was written."""


class IOFailure(Error, OSError):
    """LR_EIO: a file could not be read or written."""


class OutOfMemory(Error, MemoryError):
    """LR_ENOMEM."""


_BY_CODE = {
    _lib.LR_EINVAL: InvalidInput,
    _lib.LR_ENOMEM: OutOfMemory,
    _lib.LR_ENOMODEL: UnknownModel,
    _lib.LR_EIO: IOFailure,
    _lib.LR_EPARSE: ParseError,
    _lib.LR_ECONFIG: ConfigError,
    _lib.LR_EEMPTY: EmptyInput,
    _lib.LR_ESTORE: StoreError,
    _lib.LR_EBUSY: StoreBusy,
    _lib.LR_EREPLACED: StoreReplaced,
    _lib.LR_ECANCELED: Cancelled,
    _lib.LR_EINFEASIBLE: Infeasible,
    _lib.LR_ESTRATEGY: StrategyError,
    _lib.LR_ETOOBIG: TooBig,
}


def strerror(code):
    """lr_strerror(): a short description of an error code."""
    return _lib.api.lr_strerror(code).decode("utf-8", "replace")


def make(code, err=None, c_name=None):
    """The exception for a C return code and its filled struct lr_error."""
    message = ""
    line = 0
    if err is not None:
        message = err.message.decode("utf-8", "replace")
        line = err.line
    if not message:
        message = strerror(code)
    cls = _BY_CODE.get(code, Error)
    return cls(message, code=code, line=line, c_name=c_name)


def raise_for(code, err=None, c_name=None):
    """Raise the exception for a negative return code; return otherwise."""
    if code < 0:
        raise make(code, err, c_name)
    return code
