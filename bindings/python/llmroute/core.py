"""The library's objects in Python: Config, Store, Router.

Each wraps one C handle and frees it when the Python object goes away (or at
close()). A Router keeps references to its Config and Store, so the C
objects it borrows outlive it. Routing calls copy their inputs into ctypes
structures owned by the calling thread and make one foreign call; the GIL is
released during it (ctypes.CDLL), so several threads route at once.

A dense store's embed function (see Store) runs in the calling thread: an
import calls it from inside the library's call, through a ctypes callback
that lets no exception cross into C (it is raised again once the call
returns); add and routing call it before the foreign call, a batch once.

Threads: route() and route_batch() on one Router from any number of threads.
Store.import_file() and the add methods may run while others route (the C
store serialises writers and excludes readers). close() may run while other
threads are inside calls on the same object: it does not wait for them; the
object is closed at once (a call begun after it raises the "is closed"
error), and the C handle is freed when the last call in flight returns (see
_Handle).
"""
import json
import math
import numbers
import operator
import os
import re
import tempfile
import threading
from collections.abc import Mapping
from ctypes import (POINTER, byref, c_char_p, c_float, c_int, c_long, c_uint64, c_void_p, cast,
                    sizeof)

from . import _lib
from ._lib import api
from .errors import (ConfigError, EmbedError, EmptyInput, Error, InvalidInput, InvalidType,
                     OutOfMemory, UnknownModel, raise_for)
from .errors import make as _make_error

__all__ = ["Config", "Store", "Router", "Decision", "Candidate", "BatchResult",
           "ImportReport", "ModelInfo", "config_from_llm_configs"]

NAN = float("nan")


def _wrong_type(what, expected, x):
    """InvalidType for an argument of the wrong Python type: `what` names
    the method and the argument ("Store.add: query")."""
    return InvalidType("%s: expected %s, got %s" % (what, expected, type(x).__name__),
                       code=_lib.LR_EINVAL)


def _got(x):
    """A value of the wrong kind as a message shows it: its type, and the
    value itself when short ("str 'yes'", "float 1.5", "None")."""
    if x is None:
        return "None"
    r = repr(x)
    return "%s %s" % (type(x).__name__, r if len(r) <= 40 else r[:37] + "...")


def _b(s, what):
    """A str as UTF-8 bytes for a char * argument (None stays NULL); `what`
    names the method and argument for a message. A NUL inside would end the
    C string early (a model name "a\\0b" would route as "a"), so one raises
    InvalidInput, as does a str that is no Unicode text (a lone surrogate,
    "\\udcff", which UTF-8 cannot encode)."""
    if s is None:
        return None
    if isinstance(s, str):
        try:
            s = s.encode("utf-8")
        except UnicodeEncodeError as e:
            raise _not_utf8(what, s, e) from None
    elif not isinstance(s, bytes):
        raise _wrong_type(what, "a str", s)
    if b"\0" in s:
        raise InvalidInput("%s: %r: a NUL byte inside a string would cut it short in C"
                           % (what, (s[:40] + (b"..." if len(s) > 40 else b"")).decode(
                               "utf-8", "replace")), code=_lib.LR_EINVAL)
    return s


def _not_utf8(what, s, e):
    """InvalidInput for a str UTF-8 cannot encode (e from str.encode)."""
    return InvalidInput("%s: %r: not valid Unicode text: %r at position %d is a lone "
                        "surrogate, which UTF-8 cannot encode"
                        % (what, s if len(s) <= 40 else s[:37] + "...", s[e.start], e.start),
                        code=_lib.LR_EINVAL)


def _path(p, what):
    """A file path (a str, bytes or os.PathLike) as bytes for C: a str as
    os.fsencode() gives it (a name read from the file system with bytes
    that are not UTF-8 comes back as it was)."""
    try:
        p = os.fspath(p)
    except TypeError:
        raise _wrong_type(what, "a path (a str or os.PathLike)", p) from None
    if isinstance(p, str):
        try:
            p = os.fsencode(p)
        except UnicodeEncodeError as e:
            raise _not_utf8(what, p, e) from None
    return _b(p, what)


def _read_only(what, why, instead):
    """The AttributeError for setting `what` ("Store: path"), an attribute
    callers may read but not set: a setting the constructor takes and uses
    at once, so that setting it later would change nothing, or a value the
    binding keeps for itself; why it is so, and what to do instead."""
    return AttributeError("%s: read-only (%s); to change it, %s" % (what, why, instead))


def _read_only_property(attr, doc, owner, why, instead, copy=False):
    """A read-only attribute `attr` of class `owner` ("Store"), documented
    by `doc`: a property whose getter returns self._<attr> (with copy, a
    new list of its items: a list the object keeps for itself is not
    handed out, for a caller's append or sort to change it in place) and
    whose setter raises _read_only("<owner>: <attr>", why, instead). It has
    no deleter, so `del obj.attr` raises the AttributeError property raises
    for one."""
    private = "_" + attr

    def get(self):
        value = getattr(self, private)
        return list(value) if copy else value

    def refuse(self, value):
        raise _read_only("%s: %s" % (owner, attr), why, instead)

    get.__name__ = refuse.__name__ = attr
    return property(get, refuse, None, doc)


# embed.py builds OpenAIEmbedder's read-only attributes with
# _read_only_property when it is imported, so it is imported once that is
# defined.
from . import embed as _embed  # noqa: E402


def _is_bool(x):
    """Whether x is True or False: a bool, or numpy's bool (numpy.bool_),
    which is no subclass of bool or int (nor a numbers.Real), so that
    isinstance(x, bool) alone misses it."""
    return isinstance(x, bool) or (type(x).__module__ == "numpy" and type(x).__name__ in
                                   ("bool_", "bool"))


def _flag(x, what):
    """A yes-or-no argument as 1 or 0: True or False only (numpy's bool
    too), so that a str such as "no" is not taken for True."""
    if _is_bool(x):
        return 1 if x else 0
    raise InvalidType("%s: expected True or False, got %s" % (what, _got(x)),
                      code=_lib.LR_EINVAL)


def _s(b):
    return None if b is None else b.decode("utf-8", "replace")


def _name_text(name):
    """A model name given as str or bytes, as a message shows it: bytes
    decoded (bad UTF-8 replaced), not their repr (b'gpt')."""
    return _s(name) if isinstance(name, (bytes, bytearray)) else name


def _json_value(o):
    """json.dumps()'s default for what it cannot write itself: a numpy
    scalar (numpy.int64, numpy.float32, numpy.bool_, as a DataFrame's rows
    hold them) as the Python number or bool it holds, which the number
    arguments take as they are; anything else is refused as json refuses
    it (TypeError)."""
    if type(o).__module__ == "numpy" and getattr(o, "ndim", None) == 0:
        v = o.item()
        if isinstance(v, (bool, int, float)):
            return v
    raise TypeError("Object of type %s is not JSON serializable" % type(o).__name__)


def _iterable(x):
    """Whether x can be iterated (a list, a tuple, a generator, ...)."""
    try:
        iter(x)
    except TypeError:
        return False
    return True


_CORRECT = "a boolean or a number in [0,1]"

# A record's numbers (enum lr_record_number), each with the rule `llmroute
# import` words it by.
_RECORD_RULES = {_lib.LR_CORRECTNESS: _CORRECT,
                 _lib.LR_INPUT_TOKENS: "a non-negative integer",
                 _lib.LR_OUTPUT_TOKENS: "a non-negative number"}


def _record_number(x, what, kind):
    """A record's number (kind: _lib.LR_CORRECTNESS, LR_INPUT_TOKENS or
    LR_OUTPUT_TOKENS) as a float, for the library to check on the rule
    `llmroute import` applies to it (lr_record_check_number()), so that
    Store.add and add_outcome take what an import of the same record
    takes. What the import refuses before any rule is refused here, in its
    words after `what` (the caller's argument) and with the value: True
    and False, which a correctness takes as 1 and 0 and a token count
    refuses, as the import refuses JSON's true there (InvalidType), and a
    value that is no number at all, a str or None (InvalidType)."""
    if _is_bool(x):  # numpy's bool too, which is no numbers.Real
        if kind == _lib.LR_CORRECTNESS:
            return 1.0 if x else 0.0
    elif isinstance(x, numbers.Real):  # numpy's number scalars too
        return _float(x, what)
    raise InvalidType("%s: expected %s, got %s" % (what, _RECORD_RULES[kind], _got(x)),
                      code=_lib.LR_EINVAL)


def _record_tokens(x, what):
    """A record's input token count for lr_record.input_tokens (a C long),
    checked here on the import's rule (lr_record_check_number(), in its
    words after `what`), as a long cannot carry 2.5 or 1e300 to the
    library: a whole number from 0 to 1e9, 123.0 taken as 123; 2.5, a
    negative, NaN, an infinity and a count over the cap are InvalidInput.
    None (estimate it from the query, as an import estimates an absent
    one) is -1."""
    if x is None:
        return -1
    v = _record_number(x, what, _lib.LR_INPUT_TOKENS)
    err = _lib.lr_error()
    if api.lr_record_check_number(_lib.LR_INPUT_TOKENS, v, _b(what, what), byref(err)) != 0:
        raise InvalidInput(_s(err.message), code=_lib.LR_EINVAL)
    return int(v)


def _too_large(what, x):
    """InvalidInput for a number float() cannot take: an int beyond a
    double's range (about 1.8e308), where float() raises OverflowError."""
    return InvalidInput("%s: %s is too large for a number (a double holds at most about "
                        "1.8e308)" % (what, _got(x)), code=_lib.LR_EINVAL)


def _float(x, what):
    """float(x), an int too large for a double being InvalidInput naming
    `what` rather than an OverflowError out of the binding."""
    try:
        return float(x)
    except OverflowError:
        raise _too_large(what, x) from None


_INT_MAX = 2 ** (8 * sizeof(c_int) - 1) - 1
_LONG_MAX = 2 ** (8 * sizeof(c_long) - 1) - 1


def _whole(x, what, lo, hi):
    """x as a Python int in [lo, hi] for a C integer field. ctypes stores an
    int too large for the field modulo its size without a word, so a value
    out of range, or one that is not a whole number, raises InvalidInput
    (InvalidType for one that is no number at all, and for True and False,
    which are not taken for 1 and 0)."""
    if _is_bool(x):
        raise InvalidType("%s: expected a whole number, got %s" % (what, _got(x)),
                          code=_lib.LR_EINVAL)
    try:
        v = operator.index(x)
    except TypeError:
        f = x
        if type(x).__module__ == "numpy" and isinstance(x, numbers.Real):
            f = float(x)  # numpy.float32(5.0), which is no float
        if isinstance(f, float) and f.is_integer():
            v = int(f)
        else:
            cls = InvalidInput if isinstance(x, numbers.Real) else InvalidType
            raise cls("%s: expected a whole number, got %s" % (what, _got(x)),
                      code=_lib.LR_EINVAL) from None
    if not lo <= v <= hi:
        raise InvalidInput("%s: expected a whole number from %d to %d, got %d"
                           % (what, lo, hi, v), code=_lib.LR_EINVAL)
    return v


def _key_ttl(x, what):
    """A key time-to-live in seconds for lr_store_set_key_ttl: a whole
    number from 0 to LR_STORE_MAX_KEY_TTL; True and False are refused, not
    taken for 1 and 0."""
    if _is_bool(x):
        raise InvalidType("%s: expected a whole number of seconds, got %s" % (what, _got(x)),
                          code=_lib.LR_EINVAL)
    return _whole(x, what, 0, _lib.LR_STORE_MAX_KEY_TTL)


# The sequential cursor is a uint64_t.
_CURSOR_MAX = 2 ** 64 - 1

# The library's cap on a token count (include/llmroute.h: "a whole number
# from 0 to 1e9"), and on a model's batch capacity (a config's "capacity").
_TOKENS_MAX = 10 ** 9
_CAPACITY_MAX = 10 ** 9


def _tokens(x, what):
    """An input-token count for a C long; None (estimate from the text) is
    -1. One over the library's cap of 1e9 is refused here, in the
    library's words but naming the caller's argument (`what`): the
    library's message names its own field and a batch's query by its
    place ("query 1: input_tokens: ..."), not input_tokens[1] or an AIOS
    method's input_token_lengths[1]. A negative one is refused with the
    real range."""
    if x is None:
        return -1
    v = x
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    elif not _is_bool(v):
        try:
            v = operator.index(v)  # a numpy integer, say
        except TypeError:
            pass
    if isinstance(v, int) and not isinstance(v, bool) and v > _TOKENS_MAX:
        raise InvalidInput("%s: %d is over the cap of %d" % (what, v, _TOKENS_MAX),
                           code=_lib.LR_EINVAL)
    v = _whole(x, what, -_LONG_MAX - 1, _LONG_MAX)
    if v < 0:
        raise InvalidInput("%s: expected a whole number from 0 to %d, got %d"
                           % (what, _TOKENS_MAX, v), code=_lib.LR_EINVAL)
    return v


def _number(x, what):
    """x as a float that is not NaN: NaN means "the default" to the library,
    so it is refused rather than passed on. A str that spells a number
    ("0.9"), True and False are refused too: no number argument takes them."""
    if isinstance(x, (str, bytes, bytearray)) or _is_bool(x):
        raise InvalidType("%s: expected a number, got %s" % (what, _got(x)),
                          code=_lib.LR_EINVAL)
    try:
        v = float(x)
    except (TypeError, ValueError):  # no number at all, or a str that spells none
        raise InvalidType("%s: expected a number, got %s" % (what, _got(x)),
                          code=_lib.LR_EINVAL) from None
    except OverflowError:
        raise _too_large(what, x) from None
    if v != v:
        raise InvalidInput("%s: expected a number, got NaN" % what, code=_lib.LR_EINVAL)
    return v


def _c_number(v):
    """v as the library writes a number in a message (lr__error_number():
    the fewest digits from 6 up that read back as v)."""
    for prec in range(6, 18):
        text = "%.*g" % (prec, v)
        if not math.isfinite(v) or float(text) == v:
            break
    return text


def _fraction(x, what):
    """_number(x) from 0 to 1 (a performance requirement, an alpha), refused
    as the library refuses one outside, before a call that would embed."""
    v = _number(x, what)
    if not 0 <= v <= 1:
        raise InvalidInput("%s: expected a number from 0 to 1, got %s" % (what, _c_number(v)),
                           code=_lib.LR_EINVAL)
    return v


# ==== Configuration ====

# Keys of a model object the C configuration reads (README, "Configuration
# reference"). Everything else in an AIOS llm_config (max_gpu_memory,
# eval_device, ...) concerns the caller's backends, not routing, and is not
# passed on; `api_key` in particular is never passed: the C configuration
# refuses keys in configuration text by design.
_MODEL_KEYS = ("name", "backend", "base_url", "api_key_env", "upstream_model", "hosted_model",
               "cost_per_input_token", "cost_per_output_token", "max_concurrency", "capacity",
               "mock", "timeouts", "retry", "headers", "description")


_PRICE_KEYS = ("cost_per_input_token", "cost_per_output_token")

# Keys of a model object whose value is text.
_TEXT_KEYS = ("name", "backend", "base_url", "api_key_env", "upstream_model", "hosted_model",
              "description", "hostname")


def _field(obj, key):
    """obj[key] for a mapping, obj.key for an object (AIOS passes both)."""
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


_INT64 = 2 ** 63


def _children(v):
    """(key or index, value) of each item of a dict or list, else none."""
    if isinstance(v, Mapping):
        return v.items()
    if isinstance(v, (list, tuple)):
        return enumerate(v)
    return ()


def _step(k):
    """A child's part of a path: "[2]" for an index, ".name" for a key."""
    return "[%d]" % k if isinstance(k, int) else ".%s" % k


def _not_finite(v, path=""):
    """(path, value) of the first NaN or infinity in v (nested in dicts and
    lists, path like ".connect_ms" or "[2]"), or None. JSON has no way to
    write either, so one can only be refused, and better by its name."""
    if isinstance(v, numbers.Real) and not isinstance(v, numbers.Integral):
        f = float(v)
        return None if math.isfinite(f) else (path, f)
    if isinstance(v, numbers.Integral) and not isinstance(v, bool):
        # JSON writes any int, but the configuration reads whole numbers
        # into 64 bits ("too big integer", at a column of the binding's
        # own JSON): one beyond is named by its field instead.
        return None if -_INT64 <= v < _INT64 else (path, v)
    for k, x in _children(v):
        hit = _not_finite(x, path + _step(k))
        if hit:
            return hit
    return None


def _not_finite_config(where, key, hit):
    """ConfigError for a NaN or an infinity in a configuration (hit, from
    _not_finite), named by its field (key + the hit's path), as the library
    names a price below 0: both are configurations that fail validation."""
    path, f = hit
    field = (key + path).lstrip(".")
    rule = ("a finite number >= 0" if field.rsplit(".", 1)[-1].startswith("cost_per_")
            else "a finite number")
    if isinstance(f, numbers.Integral):  # an int beyond 64 bits
        return ConfigError("%s%s is %s, too large for a whole number of the configuration "
                           "(at most 2**63 - 1); expected %s" % (where, field, _got(f), rule),
                           code=_lib.LR_ECONFIG)
    return ConfigError("%s%s is %s; expected %s" % (where, field, "NaN" if f != f else repr(f),
                                                    rule), code=_lib.LR_ECONFIG)


def config_from_llm_configs(llm_configs, router=None):
    """The configuration document (a dict) for AIOS-style llm_configs.

    Each llm_config (a dict, or an object with attributes such as AIOS's
    LLMConfig) gives one model; AIOS's `hostname` becomes `base_url` when no
    base_url is set. `router` is the "router" object, or None.
    """
    return _config_doc(llm_configs, router, "config_from_llm_configs")


# Why a value that holds itself, or is nested past Python's stack, is
# refused (the walks over it end in RecursionError).
_SELF_HELD = ("cannot be written as JSON: it holds itself (a circular reference) or is "
              "nested too deep")


def _config_doc(llm_configs, router, where, router_where=None):
    """config_from_llm_configs() for the method `where` names in messages
    ("SmartRouting: llm_configs[2]: ..."); router_where goes before the
    name of a router key in them (where + ": router." unless given)."""
    if router_where is None:
        router_where = where + ": router."
    if isinstance(llm_configs, (str, bytes, Mapping)) or not _iterable(llm_configs):
        raise _wrong_type(where + ": llm_configs", "a list of model configurations",
                          llm_configs)
    if router is not None and not isinstance(router, Mapping):
        raise _wrong_type(where + ": router", "a dict or None", router)
    models = []
    for i, c in enumerate(llm_configs):
        if isinstance(c, str):
            c = {"name": c}
        elif c is None or isinstance(c, (bytes, bytearray, numbers.Number)):
            raise _wrong_type("%s: llm_configs[%d]" % (where, i),
                              "a model configuration (a dict, an object with a name, or a str)",
                              c)
        m = {}
        for k in _MODEL_KEYS:
            v = _field(c, k)
            if v is not None and k in _TEXT_KEYS:
                if not isinstance(v, str):
                    raise InvalidType("%s: llm_configs[%d].%s: expected a str, got %s"
                                      % (where, i, k, _got(v)), code=_lib.LR_EINVAL)
                _b(v, "%s: llm_configs[%d].%s" % (where, i, k))
            if v is not None and k in _PRICE_KEYS and (
                    isinstance(v, bool) or not isinstance(v, numbers.Real)):
                # A price that is no number ("1e-6", True) is a wrong type,
                # as it is as any other number argument.
                raise InvalidType("%s: llm_configs[%d].%s: expected a number, got %s"
                                  % (where, i, k, _got(v)), code=_lib.LR_EINVAL)
            if v is not None:
                try:
                    hit = _not_finite(v)
                except RecursionError:
                    raise InvalidType("%s: llm_configs[%d].%s: %s" % (where, i, k, _SELF_HELD),
                                      code=_lib.LR_EINVAL) from None
                if hit:
                    name = m.get("name")
                    at = ("%s: llm_configs[%d] (%r): " % (where, i, name)
                          if isinstance(name, str) else "%s: llm_configs[%d]: " % (where, i))
                    raise _not_finite_config(at, k, hit)
                m[k] = v
        if "base_url" not in m:
            host = _field(c, "hostname")
            if host is not None and not isinstance(host, str):
                raise InvalidType("%s: llm_configs[%d].hostname: expected a str, got %s"
                                  % (where, i, _got(host)), code=_lib.LR_EINVAL)
            if host:
                _b(host, "%s: llm_configs[%d].hostname" % (where, i))
                m["base_url"] = host
        try:
            json.dumps(m, allow_nan=False, default=_json_value)
        except (TypeError, ValueError) as e:  # bytes among the headers, say
            raise InvalidType("%s: llm_configs[%d]: cannot be written as JSON: %s"
                              % (where, i, e), code=_lib.LR_EINVAL) from None
        models.append(m)
    doc = {"models": models}
    if router:
        doc["router"] = {k: v for k, v in router.items() if v is not None}
        for k, v in doc["router"].items():
            try:
                hit = _not_finite(v)
            except RecursionError:
                raise InvalidType("%s%s: %s" % (router_where, k, _SELF_HELD),
                                  code=_lib.LR_EINVAL) from None
            if hit:
                raise _not_finite_config(router_where, k, hit)
    return doc


class ModelInfo(tuple):
    """One configured model (struct lr_model_info); prices not set are NaN."""
    __slots__ = ()
    _names = ("name", "backend", "base_url", "api_key_env", "upstream_model",
              "cost_per_input_token", "cost_per_output_token", "max_concurrency", "capacity")

    def __new__(cls, *values):
        return tuple.__new__(cls, values)

    def __getattr__(self, key):
        try:
            return self[self._names.index(key)]
        except ValueError:
            raise AttributeError(key) from None

    def __repr__(self):
        return "ModelInfo(%s)" % ", ".join("%s=%r" % kv for kv in zip(self._names, self))


class _NoCopy:
    """Refuses copy.copy(), copy.deepcopy() and pickling with a TypeError
    naming the class and what to do instead (_copy_hint). The objects that
    own libllmroute handles (and the AIOS classes built on them) cannot be
    copied: a shallow copy would share the C handle, which both copies
    would then free, and state that must be one per object (a round-robin
    cursor) would be shared; a deep or pickled copy cannot hold a handle of
    this process's memory. One object may be shared instead: each is safe
    to use from several threads."""
    _copy_hint = "build a new one"

    def _no_copy(self, how):
        name = type(self).__name__
        return TypeError("cannot %s a %s object: the libllmroute objects it owns (C handles, "
                         "each freed once) cannot be duplicated; %s" % (how, name, self._copy_hint))

    def __copy__(self):
        raise self._no_copy("copy")

    def __deepcopy__(self, memo):
        raise self._no_copy("deepcopy")

    def __reduce_ex__(self, protocol):
        raise self._no_copy("pickle")


# Guards the borrow counts of Config, Store and Router handles: taken and
# given back around every call into the library on the handle, and while a
# Router holds a Config's or a Store's pointer. Held for a few Python
# statements only, never across a foreign call.
_borrow_lock = threading.Lock()


class _Handle(_NoCopy):
    """A C handle with its free function: close() frees it once; with-blocks
    and garbage collection close it too. Not copied (_NoCopy).

    Every call into the library on the handle borrows it (_borrow()) for the
    call's length and gives it back after (_give_back()); so does a Router
    for the Config and Store whose pointers it keeps. close() never frees a
    borrowed handle: the object is closed to its owner at once (later calls
    raise InvalidInput "the ... is closed"), and the C object is freed by
    whichever borrower gives it back last. close() does not wait for the
    calls in flight, so it cannot deadlock with one, even one that is
    waiting on something the closing thread holds (ctypes releases the GIL
    during a foreign call; a dense store's import calls back into Python)."""
    _free = None
    _what = "object"
    _borrowers = 0
    _orphan = None  # the C handle of a closed object still borrowed

    def _closed(self):
        return InvalidInput("the %s is closed" % self._what, code=_lib.LR_EINVAL)

    @property
    def handle(self):
        """The C handle, not borrowed: for a check only, never for a call
        (use _borrow())."""
        if getattr(self, "_h", None) is None:
            raise self._closed()
        return self._h

    def _borrow(self):
        """The C handle, counted as borrowed until _give_back(); InvalidInput
        when the object is closed."""
        with _borrow_lock:
            h = getattr(self, "_h", None)
            if h is None:
                raise self._closed()
            self._borrowers += 1
        return h

    def _give_back(self):
        with _borrow_lock:
            self._borrowers -= 1
            h = self._orphan if self._borrowers == 0 else None
            if h:
                self._orphan = None
        if h:
            self._release(h)

    def _release(self, h):
        """Free the C handle h: called once, when the object is closed and
        no borrower is left."""
        type(self)._free(h)

    def close(self):
        with _borrow_lock:
            h, self._h = getattr(self, "_h", None), None
            if h and self._borrowers:
                self._orphan, h = h, None
        if h:
            self._release(h)

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Config(_Handle):
    """A loaded, validated configuration (struct lr_config); immutable.

    Config(doc) takes a dict (the JSON document) or JSON text;
    Config.from_file(path) reads a file. Invalid configurations raise
    ConfigError (a ValueError) with the C message naming the field.
    """
    _free = staticmethod(api.lr_config_free)
    _what = "configuration"
    _copy_hint = ("a Config never changes, so share this one (it may be used by any number "
                  "of routers and threads), or load another from the same document "
                  "(Config(doc), Config.from_file(path))")

    def __init__(self, doc):
        if isinstance(doc, Mapping):
            try:
                _refuse_text_fault(doc, "Config: doc: ")
                hit = _not_finite(doc)
            except RecursionError:
                # A dict that holds itself, or nesting past Python's stack:
                # no JSON document either way.
                raise InvalidInput("configuration: " + _SELF_HELD, code=_lib.LR_EINVAL) from None
            if hit:
                raise _not_finite_config("configuration: ", "", hit)
            try:
                text = json.dumps(doc, allow_nan=False, default=_json_value)
            except (TypeError, ValueError, RecursionError) as e:
                raise InvalidInput("configuration: cannot be written as JSON: %s" % e,
                                   code=_lib.LR_EINVAL) from None
        elif isinstance(doc, (str, bytes)):
            text = doc
        else:
            raise _wrong_type("Config: doc", "a dict or JSON text", doc)
        data = _b(text, "Config: doc")
        h = c_void_p()
        err = _lib.lr_error()
        rc = api.lr_config_load_string(data, len(data), byref(h), byref(err))
        try:
            raise_for(rc, err, "lr_config_load_string")
        except Error as e:
            first = data.lstrip(b" \t\r\n\xef\xbb\xbf")[:1]
            if not isinstance(doc, Mapping) and first not in (b"{", b"["):
                # Config("config.json"): the text is a file's name, not JSON.
                if os.path.isfile(data):
                    e.message += ("; Config(doc) takes JSON text or a dict, and %r is a file: "
                                  "read it with Config.from_file(path)" % (text,))
                else:
                    e.message += ("; Config(doc) takes JSON text (which begins with '{') or a "
                                  "dict: to read a file, use Config.from_file(path)")
                e.args = (e.message,)
            raise
        self._h = h
        self._json = text if isinstance(text, str) else text.decode("utf-8", "replace")
        self._load_models()

    @classmethod
    def from_file(cls, path):
        self = cls.__new__(cls)
        h = c_void_p()
        err = _lib.lr_error()
        rc = api.lr_config_load_file(_path(path, "Config.from_file: path"), byref(h),
                                     byref(err))
        raise_for(rc, err, "lr_config_load_file")
        self._h = h
        self._json = None
        self._load_models()
        return self

    def _load_models(self):
        models = []
        for i in range(api.lr_config_model_count(self._h)):
            p = api.lr_config_model(self._h, i).contents
            models.append(ModelInfo(_s(p.name), _s(p.backend), _s(p.base_url),
                                    _s(p.api_key_env), _s(p.upstream_model),
                                    p.cost_per_input_token, p.cost_per_output_token,
                                    p.max_concurrency, p.capacity))
        self._models = models
        self._names = [m.name for m in models]
        self._index = {n: i for i, n in enumerate(self._names)}

    # ---- What was loaded, read-only ----
    #
    # The models and the text are what the C configuration was loaded
    # from, which never changes; a Router takes its names and models from
    # them. Setting one afterwards would change nothing in the
    # configuration (config.json), or have the binding's view of it differ
    # from the library's (config.names = [...] had a Router name its
    # choice of model 0 after another), so it is refused.

    _LOADED = ("Config", "the configuration is loaded when the Config is made, and never changes",
               "load another Config(doc) or Config.from_file(path)")

    json = _read_only_property(
        "json",
        """The JSON text the configuration was loaded from (None: from a
        file, Config.from_file). Read-only.""",
        *_LOADED)
    models = _read_only_property(
        "models", """The configured models (ModelInfo), in order: a new list
        at each read, so that changing it changes nothing in the Config.
        Read-only.""", *_LOADED, copy=True)
    names = _read_only_property(
        "names", """The configured models' names, in order: a new list at
        each read, so that changing it changes nothing in the Config.
        Read-only.""", *_LOADED, copy=True)


    def index(self, name):
        """The config index of model `name`; UnknownModel (a ValueError) if none."""
        if not isinstance(name, (str, bytes)):
            raise _wrong_type("Config.index: name", "a str", name)
        nb = _b(name, "Config.index: name")
        h = self._borrow()
        try:
            i = api.lr_config_model_index(h, nb)
        finally:
            self._give_back()
        if i < 0:
            # lr_config_model_index() has no lr_error: the message is the
            # router's wording for the same fault.
            raise UnknownModel("unknown model '%s'" % _name_text(name), code=i,
                               c_name="lr_config_model_index")
        return i

    @property
    def warnings(self):
        """Warnings found while loading (unknown keys and the like)."""
        h = self._borrow()
        try:
            return [_s(api.lr_config_warning(h, i))
                    for i in range(api.lr_config_warning_count(h))]
        finally:
            self._give_back()

    @property
    def router_defaults(self):
        h = self._borrow()
        try:
            d = api.lr_config_router_defaults(h).contents
            return {"strategy": _s(d.strategy),
                    "performance_requirement": d.performance_requirement,
                    "n_similar": d.n_similar, "predictor": _s(d.predictor), "alpha": d.alpha,
                    "store": _s(d.store_path), "query_text": _s(d.query_text)}
        finally:
            self._give_back()

    @property
    def embedding(self):
        """The remote embedder of router.embedding (lr_config_embedding) as a
        dict: base_url, model, api_key_env, dimensions (0: the server's),
        batch_size, timeout_ms, embedder_id ("openai:" + model),
        max_input_chars (0: texts sent whole). None when
        the config uses the built-in embedder. OpenAIEmbedder.from_config()
        makes the embed function for it."""
        h = self._borrow()
        try:
            p = api.lr_config_embedding(h)
            if not p:
                return None
            e = p.contents
            return {"base_url": _s(e.base_url), "model": _s(e.model),
                    "api_key_env": _s(e.api_key_env), "dimensions": e.dimensions,
                    "batch_size": e.batch_size, "timeout_ms": e.timeout_ms,
                    "embedder_id": _s(e.embedder_id), "max_input_chars": e.max_input_chars}
        finally:
            self._give_back()

    def __len__(self):
        return len(self._models)



# ==== History store ====


def _records_message(message, tmp):
    """A message about import_records' temporary file, about its records:
    "/tmp/x.json: record 3 (line 1): query: ..." becomes
    "import_records: records[3]: query: ..."."""
    message = re.sub(r"\brecord (\d+) \(line \d+\)", r"records[\1]", message)
    message = re.sub(r"\brecords (\d+) to (\d+) \(lines \d+ to \d+\)",
                     r"records[\1] to records[\2]", message)
    return message.replace(tmp, "import_records")


def _text_fault(v, path=""):
    """(path, str) of the first str in v (a value, a key, nested in dicts
    and lists) that UTF-8 cannot encode, or None."""
    if isinstance(v, str):
        return None if v.isascii() or _utf8(v) else (path, v)
    if isinstance(v, Mapping):
        for k, x in v.items():
            sub = "%s.%s" % (path, k) if path else str(k)
            if isinstance(k, str) and not _utf8(k):
                return (path or "(a key)", k)
            hit = _text_fault(x, sub)
            if hit:
                return hit
    elif isinstance(v, (list, tuple)):
        for j, x in enumerate(v):
            hit = _text_fault(x, "%s[%d]" % (path, j))
            if hit:
                return hit
    return None


def _refuse_text_fault(v, prefix):
    """InvalidInput, its message prefix then the field's path, for the first
    str in v that UTF-8 cannot encode (see _text_fault); else nothing."""
    hit = _text_fault(v)
    if hit:
        path, s = hit
        try:
            s.encode("utf-8")
        except UnicodeEncodeError as e:
            raise _not_utf8(prefix + path, s, e) from None


def _utf8(s):
    """Whether UTF-8 can encode s (no lone surrogate)."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _records_utf8(text, records):
    """text as UTF-8; a record with a str UTF-8 cannot encode (a lone
    surrogate) is InvalidInput naming it and its field."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        pass
    for i, rec in enumerate(records):
        _refuse_text_fault(rec, "records[%d]: " % i)
    raise InvalidInput("records: not valid Unicode text", code=_lib.LR_EINVAL)


def _records_json(records):
    """(JSON of records as UTF-8, {(index, field): "NaN"}) for import_records.
    JSON cannot write NaN or an infinity: each is written as a string
    naming it ("NaN", "Infinity", "-Infinity"), which the library refuses
    where a number belongs as it refuses any other string there, naming
    the record by its place (and skips it with strict=False); the dict lets
    the message say which value it was. A record that cannot be written at
    all (a bytes value, say) is InvalidType naming it, and one holding a
    str UTF-8 cannot encode InvalidInput naming it."""
    try:
        text = json.dumps(records, allow_nan=False, ensure_ascii=False, default=_json_value)
    except (TypeError, ValueError) as e:
        if not (isinstance(e, ValueError) and str(e).startswith("Out of range float")):
            raise _unwritable(records, e) from None
    else:
        return _records_utf8(text, records), {}
    hits = {}

    def named(v, i, path):
        if isinstance(v, numbers.Real) and not isinstance(v, numbers.Integral):
            f = float(v)
            if math.isfinite(f):
                return v
            word = "NaN" if f != f else ("Infinity" if f > 0 else "-Infinity")
            hits.setdefault((i, path), word)
            return word
        if isinstance(v, Mapping):
            return {k: named(x, i, "%s.%s" % (path, k) if path else str(k))
                    for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [named(x, i, "%s[%d]" % (path, j)) for j, x in enumerate(v)]
        return v

    out = [named(rec, i, "") if _not_finite(rec) else rec for i, rec in enumerate(records)]
    try:
        text = json.dumps(out, allow_nan=False, ensure_ascii=False, default=_json_value)
    except (TypeError, ValueError) as e:  # bytes beside the NaN, say
        raise _unwritable(records, e) from None
    return _records_utf8(text, records), hits


# A run of digits as long as a whole number beyond a double's range
# (about 1.8e308) is written: _huge_int() need only look when there is one.
_LONG_DIGITS = re.compile(rb"[0-9]{309}")


def _huge_int(v, path=""):
    """(record index, field, value) of the first int in the records v too
    large for a double (which the import reads every number as), or None."""
    if isinstance(v, numbers.Integral) and not isinstance(v, bool):
        try:
            float(v)
        except OverflowError:
            return path, v
        return None
    for k, x in _children(v):
        if not path and isinstance(k, int):  # the top: a record's index
            hit = _huge_int(x, "\0")
            if hit:
                return k, hit[0][1:].lstrip("."), hit[1]
            continue
        hit = _huge_int(x, path + _step(k))
        if hit:
            return hit
    return None


def _unwritable(records, e):
    """InvalidType naming the first record JSON cannot write (a bytes value,
    a key that is no str, a record that contains itself); e is json's error
    for the whole list."""
    for i, rec in enumerate(records):
        try:
            json.dumps(rec, allow_nan=True, default=_json_value)
        except (TypeError, ValueError) as err:
            e = err
            return InvalidType("records[%d]: cannot be written as JSON: %s" % (i, e),
                               code=_lib.LR_EINVAL)
    return InvalidType("records: cannot be written as JSON: %s" % e, code=_lib.LR_EINVAL)


def _name_non_finite(message, hits):
    """A message naming a record's field ("records[3]: outputs[0].correctness:
    expected a number") with the NaN or infinity that field held, which the
    library saw as a string (", got NaN")."""
    if not hits:
        return message
    m = re.search(r"\brecords\[(\d+)\]: ([^:]+): ", message)
    if not m:
        return message
    word = hits.get((int(m.group(1)), m.group(2)))
    if word is None:
        return message
    message = re.sub(r",? got (a )?string$", "", message)
    return "%s, got %s" % (message, word)


class ImportReport(tuple):
    """What an import did (struct lr_import_report)."""
    __slots__ = ()
    read = property(lambda self: self[0])
    imported = property(lambda self: self[1])
    skipped_split = property(lambda self: self[2])
    bad = property(lambda self: self[3])
    first_bad = property(lambda self: self[4])

    def __new__(cls, read, imported, skipped_split, bad, first_bad):
        return tuple.__new__(cls, (read, imported, skipped_split, bad, first_bad))

    def __repr__(self):
        return ("ImportReport(read=%d, imported=%d, skipped_split=%d, bad=%d, first_bad=%r)"
                % self)


def _store_embedder(embedder, embed):
    """The embedder id a Store opens with: `embedder`, else the id an embed
    function carries (an OpenAIEmbedder's "openai:MODEL"). An embed function
    makes the store dense, so it needs an id other than the built-in's."""
    if embed is None:
        return embedder
    if not callable(embed):
        raise _wrong_type("Store: embed", "a callable (a list of str -> one vector per text)",
                          embed)
    own = getattr(embed, "embedder_id", None)
    if embedder is None:
        embedder = own
    if embedder is None:
        raise InvalidInput("embedder: a store with an embed function is dense: give the id of "
                           "its embedding model (e.g. embedder='all-MiniLM-L6-v2'), which the "
                           "store records so that it is never mixed with another model's "
                           "vectors", code=_lib.LR_EINVAL)
    if not isinstance(embedder, str):
        raise _wrong_type("Store: embedder", "a str or None", embedder)
    if embedder == "tfidf-v1":
        raise InvalidInput("embedder: 'tfidf-v1' is the built-in embedder, which takes no "
                           "embed function: give the id of embed's model instead, or no embed",
                           code=_lib.LR_EINVAL)
    if isinstance(own, str) and own != embedder:
        raise InvalidInput("embedder: '%s', but embed is the embedder '%s'" % (embedder, own),
                           code=_lib.LR_EINVAL)
    return embedder


def _check_new_embedder(path, embedder, embed=None):
    """Refuse, before a store is made, an embedder id that can only be a typo.

    The library takes any id: "tfidf-v1" is the built-in embedder and every
    other id makes a dense store, whose vectors the caller supplies. With an
    embed function this binding supplies them, so any id but "tfidf-v1" is
    the user's name for embed's model ("all-MiniLM-L6-v2"). Without one,
    the ids that make sense are "tfidf-v1" and "openai:" + the model of
    router.embedding (a store the gateway and the command fill, or that a
    Router fills through the config's embedder); a new store under any other
    id could never be filled. An existing store is left to the library,
    which refuses an id other than the one it was made with and names both."""
    if embedder is None:
        return
    if not isinstance(embedder, str):
        raise _wrong_type("Store: embedder", "a str or None", embedder)
    if embed is not None:
        if embedder and embedder != "tfidf-v1" and "\0" not in embedder:
            return
    elif embedder == "tfidf-v1" or (embedder.startswith("openai:") and len(embedder) > 7):
        return
    path = os.fspath(path)
    if path != ":memory:" and os.path.exists(path) and os.path.getsize(path) > 0:
        return
    raise InvalidInput("embedder: '%s' is not an embedder this binding can make a store for: "
                       "give None or 'tfidf-v1' (the built-in embedder), 'openai:MODEL' "
                       "for the store of router.embedding's model, or any id of your own "
                       "with embed= (the function that gives its vectors)" % embedder,
                       code=_lib.LR_EINVAL)


def _blank(q):
    """Whether a query (a str or bytes) is spaces, tabs and line breaks
    alone, and not empty: the text the library ranks without neighbours."""
    if isinstance(q, (bytes, bytearray)):
        q = q.decode("latin-1")
    return isinstance(q, str) and q != "" and q.strip(" \t\n\v\f\r") == ""


def _float_ptr(flat, i, dim):
    """A float * to row i of an array('f') of rows of dim floats."""
    return cast(flat.buffer_info()[0] + i * dim * sizeof(c_float), POINTER(c_float))


# The stores whose import is calling its embed function on this thread
# (Store.import_file), innermost last: a write to one of them from inside
# that embed is refused by the library at once, and add_data of one record
# must not call embed first (it would run again, and again).
_importing = threading.local()


class Store(_Handle):
    """A history store (struct lr_store) in a SQLite file, or in memory.

    Store() or Store(":memory:") lives in memory; Store(path) opens or
    creates the file. A store made by another embedder is StoreError.
    embedder: None or "tfidf-v1" (the built-in), or the id of a dense
    store's embedding model. embed: for a dense store, the function that
    gives its vectors: it takes a list of str and returns one vector (a
    sequence of numbers) per text, all of the store's dimension. With embed,
    embedder is required (any id but "tfidf-v1"; an OpenAIEmbedder gives its
    own "openai:MODEL"), and import, add, add_outcome and routing over the
    store embed their queries through it. Without embed, a new store's id
    must be None, "tfidf-v1" or "openai:MODEL" (the dense store of a
    config's router.embedding); any other is refused (InvalidInput) as a
    typo. dense_dim: a dense store's dimension when known (0: set by the
    first vectors). key_ttl_s: how long add_outcome's idempotency keys are
    remembered, in seconds (None: the library's 24 hours; 0: for good); see
    key_ttl_s.
    """
    _free = staticmethod(api.lr_store_free)
    _what = "store"
    _copy_hint = ("share this one (routers and threads may use it at once), or open "
                  "another Store on the same file (Store(path, ...))")
    _embed = None

    def __init__(self, path=":memory:", embedder=None, read_only=False, max_records=0,
                 dense_dim=0, key_ttl_s=None, embed=None):
        cpath = _path(path, "Store: path")
        embedder = _store_embedder(embedder, embed)
        _check_new_embedder(path, embedder, embed)
        opts = _lib.lr_store_options(_b(embedder, "Store: embedder"),
                                     _whole(dense_dim, "Store: dense_dim", 0, _INT_MAX),
                                     _flag(read_only, "Store: read_only"),
                                     _whole(max_records, "Store: max_records", 0, 2 ** 63 - 1))
        ttl = None if key_ttl_s is None else _key_ttl(key_ttl_s, "Store: key_ttl_s")
        h = c_void_p()
        err = _lib.lr_error()
        rc = api.lr_store_open(cpath, byref(opts), byref(h), byref(err))
        raise_for(rc, err, "lr_store_open")
        self._h = h
        self._path = os.fspath(path)
        self._embed = embed
        if ttl is not None:
            self.key_ttl_s = ttl

    # ---- What the constructor was given, read-only ----
    #
    # The file is opened, and a dense store's embed function taken, when
    # the Store is made: setting either afterwards would change nothing but
    # the value read back (the records would go on into the file opened)
    # or embed with a function the store was not opened with, so it is
    # refused, saying what to do instead.

    path = _read_only_property(
        "path", """The store file as given (":memory:": in memory). Read-only.""",
        "Store", "the store file is opened when the Store is made",
        "open another Store(path, ...)")
    embed = _read_only_property(
        "embed",
        """The function that gives a dense store's vectors, as given to the
        constructor (None: none; the built-in embedder needs none).
        Read-only.""",
        "Store", "a dense store embeds its queries with the function it was opened with",
        "open another Store(path, embedder=..., embed=...) on the same file")

    @property
    def key_ttl_s(self):
        """Seconds an idempotency key this Store commits is remembered from
        the add_outcome that stored it (0: for good); each key keeps the
        value in force when it was stored. After that the key is forgotten:
        the same key records again. Settable at any time (a whole number
        from 0 to 100 years); the store's file keeps no setting, so each
        Store has its own, 24 hours unless set."""
        h = self._borrow()
        try:
            return api.lr_store_key_ttl(h)
        finally:
            self._give_back()

    @key_ttl_s.setter
    def key_ttl_s(self, seconds):
        ttl = _key_ttl(seconds, "Store.key_ttl_s")
        err = _lib.lr_error()
        h = self._borrow()
        try:
            rc = api.lr_store_set_key_ttl(h, ttl, byref(err))
        finally:
            self._give_back()
        raise_for(rc, err, "lr_store_set_key_ttl")

    @property
    def embedder(self):
        """The id of the embedder the store was made with ("tfidf-v1": built in)."""
        h = self._borrow()
        try:
            return _s(api.lr_store_embedder(h))
        finally:
            self._give_back()

    @property
    def dense(self):
        """True for a store whose vectors the caller gives (not "tfidf-v1")."""
        return self.embedder != "tfidf-v1"

    @property
    def dim(self):
        """A dense store's vector dimension; 0 for the built-in embedder, or
        for a dense store that has no vector yet and was opened without
        dense_dim."""
        h = self._borrow()
        try:
            return api.lr_store_dim(h)
        finally:
            self._give_back()

    def __len__(self):
        h = self._borrow()
        try:
            return api.lr_store_count(h)
        finally:
            self._give_back()

    def refresh(self):
        """Read what other connections (another process's import, say) have
        committed to the file since this handle's copy last matched it.
        True when the copy was rebuilt, False when there was nothing new
        (this handle's own writes never count). On failure the old copy
        stays and StoreError is raised."""
        return self._rebuilt_by(api.lr_store_refresh, "lr_store_refresh")

    def added_since_build(self):
        """Records added to this handle's copy one at a time since it was
        last built whole (its own appends, mostly). While above 0, routing
        on it can differ from routing on a fresh open of the same file:
        those records were weighed and grouped by the last build's rules."""
        h = self._borrow()
        try:
            return api.lr_store_added_since_build(h)
        finally:
            self._give_back()

    def rebuild(self):
        """refresh(), and also rebuild the copy when records were added to it
        since its last build (added_since_build()), so that it routes as a
        fresh open of the file does. True when the copy was rebuilt. Takes
        as long as an open. On failure the old copy stays and StoreError is
        raised."""
        return self._rebuilt_by(api.lr_store_rebuild, "lr_store_rebuild")

    def _rebuilt_by(self, fn, name):
        """fn (lr_store_refresh or lr_store_rebuild) on this handle: whether
        the copy was rebuilt; StoreError on failure."""
        changed = c_int(0)
        err = _lib.lr_error()
        h = self._borrow()
        try:
            rc = fn(h, byref(changed), byref(err))
        finally:
            self._give_back()
        raise_for(rc, err, name)
        return bool(changed.value)

    def _need_embed(self, what):
        """The store's embed function, for a dense store; InvalidInput when
        it has none. None for the built-in embedder."""
        if not self.dense:
            return None
        if self.embed is None:
            raise InvalidInput("%s: the history store uses the embedder '%s', whose vectors "
                               "come from the caller: open it with embed= (a function from "
                               "texts to vectors)" % (what, self.embedder),
                               code=_lib.LR_EINVAL)
        return self.embed

    def _vector(self, query, embedding, what):
        """(float *, dim, the array the pointer is into: keep it while the
        pointer is used) for one query into this store: the given embedding,
        else embed([query]); (None, 0, None) for the built-in embedder."""
        if embedding is None:
            embed = self._need_embed(what)
            if embed is None:
                return None, 0, None
            if isinstance(query, bytes):
                # Taken as a built-in store takes it: the bytes go to the
                # library as they are (the caller's _b refused a NUL), and
                # embed gets their text, as routing over a dense store does.
                query = _s(query)
            if not isinstance(query, str):
                raise InvalidInput("%s: query: expected a string, got %s"
                                   % (what, type(query).__name__), code=_lib.LR_EINVAL)
            flat, dim = _embed.checked(embed, [query], self.dim)
        else:
            flat, dim = _embed.checked(lambda texts: [embedding], [query], self.dim,
                                       what + ": embedding")
        return _float_ptr(flat, 0, dim), dim, flat

    def import_file(self, path, split=None, strict=True):
        """Import the AIOS smart-routing format (JSON array or JSONL) from a
        file, all or nothing. Returns an ImportReport. A dense store embeds
        every kept record's query through its embed function, in batches;
        a fault there raises EmbedError and imports nothing."""
        cpath = _path(path, "Store.import_file: path")
        opts = _lib.lr_import_options(_b(split, "Store.import_file: split"),
                                      _flag(strict, "Store.import_file: strict"))
        cb = None
        self.handle  # raises: closed
        embed = self._need_embed("import")
        if embed is not None:
            cb = _embed.ImportCallback(embed)
            opts.embed = cb.fn
            dim = self.dim
            if dim == 0:
                try:
                    dim = _embed.probe_dim(embed)
                except EmbedError:
                    raise
                except Exception as e:
                    raise _embed.fail_from(e) from e
            opts.embed_dim = dim
        rep = _lib.lr_import_report()
        err = _lib.lr_error()
        stack = _importing.__dict__.setdefault("stores", [])
        stack.append(self)
        h = self._borrow()
        try:
            rc = api.lr_store_import_file(h, cpath, byref(opts), byref(rep), byref(err))
        finally:
            self._give_back()
            stack.pop()
        if rc < 0 and cb is not None:
            cb.reraise(err.message.decode("utf-8", "replace"))
        raise_for(rc, err, "lr_store_import_file")
        return ImportReport(rep.read, rep.imported, rep.skipped_split, rep.bad,
                            _s(rep.first_bad) or None)

    def import_records(self, records, split=None, strict=True):
        """Import records in the AIOS format (a list of dicts with "query",
        "input_token_length", "outputs": [{"model_name", "correctness",
        "output_token_length"}]) through the same all-or-nothing import as a
        file, so the store's statistics are rebuilt once for the lot."""
        if isinstance(records, (str, bytes, Mapping)) or not _iterable(records):
            raise _wrong_type("Store.import_records: records", "a list of records (dicts)",
                              records)
        _b(split, "Store.import_records: split")
        _flag(strict, "Store.import_records: strict")
        records = list(records)
        for i, rec in enumerate(records):
            # Checked here: a record that is no dict is the caller's mistake,
            # not bad data for the library to skip.
            if not isinstance(rec, Mapping):
                raise _wrong_type("Store.import_records: records[%d]" % i, "a record (a dict "
                                  "with \"query\", \"input_token_length\", \"outputs\")", rec)
        return self._through_file(records, lambda tmp: self.import_file(tmp, split=split,
                                                                         strict=strict))

    def _through_file(self, records, call):
        """call(path) of a temporary file holding records as JSON (its
        ImportReport), the messages naming the records, not the file:
        import_records(), and _append_record()."""
        try:
            data, hits = _records_json(records)
        except InvalidInput as e:
            e.message = "Store.import_records: " + e.message
            e.args = (e.message,)
            raise
        # An int too large for a double is the caller's mistake, named here
        # whether strict or not, as for any other argument (the library
        # would skip its record as bad data). json writes it in full, 309
        # digits or more: only then are the records walked to find it.
        huge = _huge_int(records) if _LONG_DIGITS.search(data) else None
        if huge is not None:
            i, field, v = huge
            raise _too_large("import_records: records[%d]: %s" % (i, field), v)
        fd, tmp = tempfile.mkstemp(prefix="llmroute-import-", suffix=".json")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            try:
                rep = call(tmp)
            except Error as e:
                # The library names the temporary file and its one line:
                # name the records instead.
                e.message = _name_non_finite(_records_message(e.message, tmp), hits)
                e.args = (e.message,)
                e.line = 0
                raise
        finally:
            os.unlink(tmp)
        if rep.first_bad:
            rep = ImportReport(rep.read, rep.imported, rep.skipped_split, rep.bad,
                               _name_non_finite(_records_message(rep.first_bad, tmp), hits))
        return rep

    def _append_record(self, record):
        """One record (AIOS's format) appended as add() appends one, after
        the library's record reader (lr_dataset_load(), strict) has checked
        it on an import's rules and in its words, so that it is taken,
        refused and named as import_records([record]) would take, refuse
        and name it; returns the ImportReport that import gives. The copy
        gains the record in place (added_since_build()), where an import
        builds it whole: rebuild() makes it what the import makes. A dense
        store (one that knows its dimension: the first import learns it)
        embeds the record's query with one call of its embed function
        after the check, as the import's callback would, a fault there
        raised as the import raises it."""
        embed = self._need_embed("import")
        dim = self.dim if embed is not None else 0

        def load_and_add(tmp):
            opts = _lib.lr_import_options(None, 1)
            ds = c_void_p()
            rep = _lib.lr_import_report()
            err = _lib.lr_error()
            rc = api.lr_dataset_load(os.fsencode(tmp), byref(opts), byref(ds), byref(rep),
                                     byref(err))
            raise_for(rc, err, "lr_dataset_load")
            try:
                if api.lr_dataset_count(ds) != 1:
                    raise InvalidInput("records: expected one record", code=_lib.LR_EINVAL)
                rec = api.lr_dataset_record(ds, 0)
                vec, keep = None, None
                if embed is not None:
                    keep = self._embed_for_import(embed, rec.contents.query, dim, tmp)
                    vec = _float_ptr(keep, 0, dim)
                err = _lib.lr_error()
                h = self._borrow()
                try:
                    rc = api.lr_store_add(h, rec, vec, dim, byref(err))
                finally:
                    self._give_back()
                del keep
                raise_for(rc, err, "lr_store_add")
            finally:
                api.lr_dataset_free(ds)
            return ImportReport(1, 1, 0, 0, None)

        return self._through_file([record], load_and_add)

    def _in_own_import(self):
        """Whether this thread is inside an import into this store (in its
        embed function, then): see _importing."""
        return any(s is self for s in getattr(_importing, "stores", ()))

    @staticmethod
    def _embed_for_import(embed, query, dim, tmp):
        """The vector (an array('f') of dim floats) of query (bytes, the
        one record of the file tmp) from embed, as an import's embed
        callback gets it (_embed.ImportCallback); a fault is raised as the
        import raises it (EmbedError "tmp: embedding records 0 to 0 (lines
        1 to 1): ...", chained from what embed raised), which
        _through_file() then words as about the records."""
        try:
            flat, _ = _embed.vectors(embed, [query.decode("utf-8", "replace")], dim)
            return flat
        except Exception as e:
            message = str(e) if isinstance(e, EmbedError) else (
                "embed raised %s: %s" % (type(e).__name__, e))
            out = EmbedError("%s: embedding records 0 to 0 (lines 1 to 1): %s" % (tmp, message),
                             code=_lib.LR_EINVAL)
            if isinstance(e, EmbedError) and e.__cause__ is None and e.__context__ is None:
                raise out from None
            raise out from e

    def add(self, query, outcomes, input_tokens=None, task=None, embedding=None):
        """Append one record: outcomes is a list of (model, correctness,
        output_tokens) tuples or AIOS outcome dicts. Durable when it returns.
        A dense store embeds the query through its embed function, or takes
        the given embedding (a sequence of numbers of the store's dimension)."""
        where = "Store.add"
        qb = _b(query, where + ": query")
        if isinstance(outcomes, (str, bytes, Mapping)) or not _iterable(outcomes):
            raise _wrong_type(where + ": outcomes", "a list of (model, correctness, "
                              "output_tokens) tuples or outcome dicts", outcomes)
        outs = []
        for i, o in enumerate(outcomes):
            if isinstance(o, Mapping):
                o = (o.get("model_name", o.get("model")), o.get("correctness"),
                     o.get("output_token_length", o.get("output_tokens")))
            if not isinstance(o, (tuple, list)) or len(o) != 3:
                cls = InvalidInput if isinstance(o, (tuple, list)) else InvalidType
                raise cls("%s: outcomes[%d]: expected (model, correctness, output_tokens) or "
                          "an outcome dict, got %s" % (where, i, _got(o)), code=_lib.LR_EINVAL)
            model, correct, out_tokens = o
            # None is passed on as NaN: the library names the missing field.
            correct = NAN if correct is None else _record_number(
                correct, "%s: outcomes[%d].correctness" % (where, i), _lib.LR_CORRECTNESS)
            out_tokens = NAN if out_tokens is None else _record_number(
                out_tokens, "%s: outcomes[%d].output_tokens" % (where, i),
                _lib.LR_OUTPUT_TOKENS)
            outs.append(_lib.lr_outcome(_b(model, "%s: outcomes[%d].model" % (where, i)),
                                        correct, out_tokens))
        arr = (_lib.lr_outcome * max(1, len(outs)))(*outs)
        rec = _lib.lr_record(qb, _record_tokens(input_tokens, where + ": input_tokens"),
                             _b(task, where + ": task"), arr, len(outs))
        vec, dim, keep = self._vector(query, embedding, where)
        err = _lib.lr_error()
        h = self._borrow()
        try:
            rc = api.lr_store_add(h, byref(rec), vec, dim, byref(err))
        finally:
            self._give_back()
        del keep
        raise_for(rc, err, "lr_store_add")

    def add_outcome(self, query, model, correctness, output_tokens, input_tokens=None,
                    idempotency_key=None, embedding=None):
        """Append one outcome for `query` (the feedback path). Returns True when
        it was recorded. With idempotency_key (1 to 255 characters of printable
        ASCII, no spaces), the key is stored with the outcome in one commit and
        a key this store already holds records nothing and returns False, so a
        retry after an unknown result is safe; a key the store holds for
        another outcome (the query, input tokens, model, correctness or
        output tokens differ from what it was committed with) records
        nothing and raises InvalidInput naming the key. A key is remembered for the
        key_ttl_s in force when it was committed (24 hours unless set),
        whatever another handle's setting: later, the same key records again.
        A dense store embeds the query through its embed function, or takes
        the given embedding."""
        where = "Store.add_outcome"
        err = _lib.lr_error()
        qb = _b(query, where + ": query")
        mb = _b(model, where + ": model")
        correctness = _record_number(correctness, where + ": correctness", _lib.LR_CORRECTNESS)
        output_tokens = _record_number(output_tokens, where + ": output_tokens",
                                       _lib.LR_OUTPUT_TOKENS)
        if idempotency_key is not None and not isinstance(idempotency_key, str):
            raise _wrong_type(where + ": idempotency_key", "a str or None", idempotency_key)
        tokens = _record_tokens(input_tokens, where + ": input_tokens")
        kb = (None if idempotency_key is None
              else _b(idempotency_key, where + ": idempotency_key"))
        vec, dim, keep = self._vector(query, embedding, where)
        dup = c_int(0)
        h = self._borrow()
        try:
            if kb is None and vec is None:
                rc = api.lr_store_add_outcome(h, qb, tokens, mb, correctness, output_tokens,
                                              byref(err))
            elif kb is None:
                rc = api.lr_store_add_outcome_vec(h, qb, tokens, mb, correctness,
                                                  output_tokens, vec, dim, byref(err))
            else:
                rc = api.lr_store_add_outcome_keyed(h, kb, qb, tokens, mb, correctness,
                                                    output_tokens, vec, dim, byref(dup),
                                                    byref(err))
        finally:
            self._give_back()
        del keep
        if kb is None:
            raise_for(rc, err, "lr_store_add_outcome")
            return True
        raise_for(rc, err, "lr_store_add_outcome_keyed")
        if dup.value == _lib.LR_STORE_KEY_DIFFERS:
            raise InvalidInput("%s: idempotency_key %r was used for another outcome (its query, "
                               "input_tokens, model, correctness or output_tokens differ); "
                               "nothing was stored" % (where, idempotency_key))
        return not dup.value



# ==== Routing ====


class Candidate(tuple):
    """One ranked candidate (struct lr_candidate); unknown figures are NaN."""
    __slots__ = ()
    index = property(lambda self: self[0])
    name = property(lambda self: self[1])
    predicted_quality = property(lambda self: self[2])
    predicted_output_tokens = property(lambda self: self[3])
    estimated_cost = property(lambda self: self[4])

    def __new__(cls, index, name, quality, out_tokens, cost):
        return tuple.__new__(cls, (index, name, quality, out_tokens, cost))

    def __repr__(self):
        return ("Candidate(index=%d, name=%r, predicted_quality=%r, "
                "predicted_output_tokens=%r, estimated_cost=%r)" % self)


class Decision:
    """The answer to one request (struct lr_decision): the chosen model's
    config index and name, its predictions, and the ranking when asked for
    (best first; the head is the choice, the tail the fallback order)."""
    __slots__ = ("index", "name", "predicted_quality", "predicted_output_tokens",
                 "estimated_cost", "input_tokens", "ranking")

    def __init__(self, index, name, quality, out_tokens, cost, input_tokens, ranking):
        self.index = index
        self.name = name
        self.predicted_quality = quality
        self.predicted_output_tokens = out_tokens
        self.estimated_cost = cost
        self.input_tokens = input_tokens
        self.ranking = ranking

    def __repr__(self):
        return ("Decision(index=%d, name=%r, predicted_quality=%r, estimated_cost=%r, "
                "input_tokens=%d)" % (self.index, self.name, self.predicted_quality,
                                      self.estimated_cost, self.input_tokens))


class BatchResult:
    """A batch's assignment (struct lr_batch_report and the decisions)."""
    __slots__ = ("decisions", "feasible", "mean_quality", "total_cost", "iterations", "message")

    def __init__(self, decisions, feasible, mean_quality, total_cost, iterations, message):
        self.decisions = decisions
        self.feasible = feasible
        self.mean_quality = mean_quality
        self.total_cost = total_cost
        self.iterations = iterations
        self.message = message

    @property
    def indices(self):
        return [d.index for d in self.decisions]

    def __repr__(self):
        return ("BatchResult(n=%d, feasible=%r, mean_quality=%r, total_cost=%r, message=%r)"
                % (len(self.decisions), self.feasible, self.mean_quality, self.total_cost,
                   self.message))


_BATCH_MODES = {"per_query": _lib.LR_BATCH_PER_QUERY, "quality": _lib.LR_BATCH_QUALITY,
                "budget": _lib.LR_BATCH_BUDGET}

# Candidate lists seen recently, as C arrays, so a repeated list (the usual
# case: the same selected_llms on every call) costs one dict lookup.
_CANDS_CACHE_MAX = 512


class _Scratch(threading.local):
    """One thread's request, decision and error structures for route(), and
    its prepared text-less requests by candidate list for route_index()."""

    def __init__(self):
        self.req = _lib.lr_request()
        self.dec = _lib.lr_decision()
        self.plain = _lib.lr_decision()  # never given a ranking buffer
        self.err = _lib.lr_error()
        self.prepared = {}


_route = api.lr_router_route

_DECISION_INTS = sizeof(_lib.lr_decision) // sizeof(c_int)


def _no_memory(e, where, queries, n):
    """The exception for a MemoryError e raised while a batch was prepared
    or read (Python's own has no message): OutOfMemory naming the method
    and the batch's size. The library's OutOfMemory is passed on as it is."""
    if isinstance(e, OutOfMemory):
        return e
    if queries is None:
        arg, count = "n", n
    else:
        arg, count = "queries", len(queries) if hasattr(queries, "__len__") else "the"
    out = OutOfMemory("%s: %s: out of memory routing %s queries in one call; route them in "
                      "smaller batches" % (where, arg, count), code=_lib.LR_ENOMEM)
    out.__cause__ = e if str(e) else None
    out.__suppress_context__ = True
    return out


def _plain_name(name):
    """Whether the library's messages quote the str `name` as it is: printable
    ASCII but a quote and a backslash, at most 200 characters (its
    lr__error_shown() escapes or cuts anything else)."""
    return (len(name) <= 200 and name.isascii() and name.isprintable()
            and "'" not in name and "\\" not in name)


def _indices(decs):
    """The `index` field (the first member, a C int) of every lr_decision in
    a ctypes array, read through the buffer in one pass."""
    return memoryview(decs).cast("B").cast("i")[::_DECISION_INTS].tolist()


class Router(_Handle):
    """A router (struct lr_router) over a Config.

    strategy, performance_requirement, n_similar and predictor default to
    the config's "router" object; store is a Store for smart routing.

    Smart routing over a dense store needs each query's vector: embed (a
    function from a list of texts to one vector per text) gives them, else
    the store's own embed, else an OpenAIEmbedder for the config's
    router.embedding when that is the embedder the store was made with (as
    the gateway and `llmroute route` do). A batch embeds all its queries in
    one call. route() and route_batch() also take the vectors themselves
    (embedding=, embeddings=).
    """
    _free = staticmethod(api.lr_router_free)
    _what = "router"
    _copy_hint = ("share this one (it may be called from several threads at once), or "
                  "build another Router from the same Config (Router(config, ...))")

    def __init__(self, config, strategy=None, store=None, performance_requirement=None,
                 n_similar=None, predictor=None, embed=None):
        if not isinstance(config, Config):
            if not isinstance(config, (Mapping, str, bytes)):
                raise _wrong_type("Router: config", "a Config, a dict or JSON text", config)
            config = Config(config)
        if store is not None and not isinstance(store, Store):
            raise _wrong_type("Router: store", "a Store or None", store)
        if embed is not None:
            if not callable(embed):
                raise _wrong_type("Router: embed", "a callable (a list of str -> one vector "
                                  "per text)", embed)
            if store is None or not store.dense:
                raise InvalidInput("embed: gives the vectors of a dense store's queries, but "
                                   "the router has %s" % (
                                       "no store" if store is None else
                                       "a store with the built-in embedder '%s'"
                                       % store.embedder), code=_lib.LR_EINVAL)
        opts = _lib.lr_router_options()
        api.lr_router_options_init(byref(opts))
        opts.strategy = _b(strategy, "Router: strategy")
        if performance_requirement is not None:
            opts.performance_requirement = _number(performance_requirement,
                                                   "Router: performance_requirement")
        if n_similar is not None:
            opts.n_similar = _whole(n_similar, "Router: n_similar", 1, _lib.LR_MAX_N_SIMILAR)
        opts.predictor = _b(predictor, "Router: predictor")
        # The C router keeps both pointers: borrowed until close() gives them back.
        # What routing reads of the store is read through that pointer, or
        # kept here, so the Router goes on routing after store.close().
        store_embedder = store.embedder if store is not None else None
        borrowed = [config]
        config_h = config._borrow()
        try:
            if store is not None:
                opts.store = store._borrow()
                borrowed.append(store)
            h = c_void_p()
            err = _lib.lr_error()
            rc = api.lr_router_new(config_h, byref(opts), byref(h), byref(err))
            raise_for(rc, err, "lr_router_new")
        except BaseException:
            for o in borrowed:
                o._give_back()
            raise
        self._h = h
        self._borrowed = borrowed
        self._store_h = opts.store
        self._store_embedder = store_embedder
        self._config = config
        self._store = store
        # The Config's own lists, which it never changes (its names and
        # models hand out copies): the Config may be closed while the
        # Router routes on, and the models as loaded give capacities by name.
        self._names = config._names
        self._models = config._models
        self._model_index = config._index
        self._scratch = _Scratch()
        self._cands = {}
        self._embed = embed
        self._dense = (store is not None and store_embedder != "tfidf-v1"
                       and self.strategy == "smart")
        self._config_embed = None
        info = config.embedding if self._dense else None
        if info and info["embedder_id"] == store_embedder:
            self._config_embed = _embed.OpenAIEmbedder.from_config(config)

    def _store_dim(self):
        """The store's dimension (Store.dim), read through the pointer the
        router borrowed: the Store itself may be closed. 0 without a store."""
        if self._store_h is None:
            return 0
        self._borrow()  # the store's handle lives as long as the router's
        try:
            return api.lr_store_dim(self._store_h)
        finally:
            self._give_back()

    def _store_empty(self):
        """Whether the store has no records to route on (read as
        _store_dim() reads), when the library answers "the history store is
        empty" whatever the vectors: a store made with its dimension (the
        gateway's, dense_dim) has one before its first record."""
        if self._store_h is None:
            return False
        self._borrow()
        try:
            return api.lr_store_count(self._store_h) == 0
        finally:
            self._give_back()

    # ---- What the router was made over, read-only ----
    #
    # The C router keeps the configuration and the store it was made with:
    # another Config or Store set afterwards would not be routed over, and
    # a Store's embed function would embed queries for a store other than
    # the one routed over, so setting either is refused.

    config = _read_only_property(
        "config", """The Config the router was made over. Read-only.""",
        "Router", "the router routes over the Config it was made with",
        "build another Router(config, ...)")
    store = _read_only_property(
        "store", """The Store the router was made over (None: none). Read-only.""",
        "Router", "the router routes over the Store it was made with",
        "build another Router(config, store=...)")

    @property
    def embed(self):
        """The function that embeds routed queries over a dense store: the
        router's embed, else the store's, else the config's
        router.embedding; None when no vector is needed."""
        if not self._dense:
            return None
        return self._embed or self._store.embed or self._config_embed

    def _release(self, h):
        # The C router is freed first: until then it may read the Config
        # and Store it borrowed.
        api.lr_router_free(h)
        with _borrow_lock:
            borrowed, self._borrowed = getattr(self, "_borrowed", ()), ()
        for o in borrowed:
            o._give_back()

    @property
    def strategy(self):
        h = self._borrow()
        try:
            return _s(api.lr_router_strategy(h))
        finally:
            self._give_back()

    @property
    def sequential_cursor(self):
        """The sequential strategy's round-robin cursor
        (lr_router_sequential_cursor): the ticket the next request of two or
        more candidates takes; it gets candidate number ticket % n of its n,
        and the cursor moves on by one (wrapping from 2**64 - 1 to 0). A
        request of one candidate leaves it. Settable, to a whole number
        from 0 to 2**64 - 1: a router given another's cursor goes on with
        the turns the other would have given, for lists of every length.
        Reading and setting are each atomic beside routing on other
        threads. A router of another strategy (smart) has no cursor:
        reading or setting it raises StrategyError."""
        cursor = c_uint64()
        err = _lib.lr_error()
        h = self._borrow()
        try:
            rc = api.lr_router_sequential_cursor(h, byref(cursor), byref(err))
        finally:
            self._give_back()
        raise_for(rc, err, "lr_router_sequential_cursor")
        return cursor.value

    @sequential_cursor.setter
    def sequential_cursor(self, value):
        value = _whole(value, "Router.sequential_cursor", 0, _CURSOR_MAX)
        err = _lib.lr_error()
        h = self._borrow()
        try:
            rc = api.lr_router_set_sequential_cursor(h, value, byref(err))
        finally:
            self._give_back()
        raise_for(rc, err, "lr_router_set_sequential_cursor")

    # -- candidates --

    def _candidates(self, models, where, arg="models"):
        """(char ** array, count) for a list of names; (None, 0) for all.
        `where` names the method for a message ("Router.route"), `arg` the
        argument ("models[2]" for one query's list in a batch). A list or
        tuple of names, or one name; anything else (a dict, whose keys
        would be taken, a set, in no order) is InvalidType."""
        if models is None:
            return None, 0
        if isinstance(models, (str, bytes)):
            models = (models,)
        elif not isinstance(models, (list, tuple)):
            raise _wrong_type("%s: %s" % (where, arg), "a list of model names", models)
        key = tuple(models)
        try:
            hit = self._cands.get(key)
        except TypeError:  # an entry that is no name: refused below
            hit = None
        if hit is not None:
            return hit
        if not key:
            raise EmptyInput("the candidate list is empty: give at least one model name",
                             code=_lib.LR_EEMPTY)
        for i, m in enumerate(key):
            if not isinstance(m, (str, bytes)):
                raise InvalidType("%s: %s[%d]: expected a model name, got %s"
                                  % (where, arg, i, _got(m)), code=_lib.LR_EINVAL)
        arr = (c_char_p * len(key))(*[_b(m, "%s: %s[%d]" % (where, arg, i))
                                      for i, m in enumerate(key)])
        hit = (arr, len(key))
        if len(self._cands) >= _CANDS_CACHE_MAX:
            self._cands.clear()
        self._cands[key] = hit
        return hit

    def _decision(self, d, ranking_buf):
        ranking = None
        if ranking_buf is not None:
            names = self._names
            ranking = [Candidate(c.index, names[c.index], c.predicted_quality,
                                 c.predicted_output_tokens, c.estimated_cost)
                       for c in ranking_buf[:d.n_ranked]]
        return Decision(d.index, self._names[d.index], d.predicted_quality,
                        d.predicted_output_tokens, d.estimated_cost, d.input_tokens, ranking)

    # -- one request --

    def route(self, models=None, query=None, input_tokens=None, performance_requirement=None,
              ranking=False, embedding=None):
        """Route one request among `models` (names; None = every configured
        model). Returns a Decision; with ranking=True it carries the full
        ranking. Unknown names raise UnknownModel (a ValueError). Over a
        dense store the query is embedded (see the class), or `embedding`
        is its vector."""
        where = "Router.route"
        self.handle  # raises: closed
        ranking = _flag(ranking, where + ": ranking")
        # Every argument is checked, and the query embedded, before the
        # thread's request is filled: a check that raises must leave no
        # pointer behind in it (the next call would route by a freed
        # vector), and an embed function that routes on this router, on
        # this thread, uses the same request.
        cands, n_cands = self._candidates(models, where)
        query_b = _b(query, where + ": query")
        tokens = _tokens(input_tokens, where + ": input_tokens")
        requirement = (NAN if performance_requirement is None else
                       _fraction(performance_requirement, where + ": performance_requirement"))
        buf = None
        if ranking:
            n = n_cands or len(self._names)
            buf = (_lib.lr_candidate * n)()
        s = self._scratch
        req, dec, err = s.req, s.dec, s.err
        for attempt in (0, 1):
            flat = self._vectors([query], None if embedding is None else [embedding], where,
                                 where + ": embedding", models)
            try:
                req.models, req.n_models = cands, n_cands
                req.query = query_b
                if flat is not None:
                    req.embedding, req.embedding_dim = _float_ptr(flat[0], 0, flat[1]), flat[1]
                req.input_tokens = tokens
                req.performance_requirement = requirement
                if buf is not None:
                    dec.ranking, dec.ranking_cap = buf, len(buf)
                else:
                    dec.ranking, dec.ranking_cap = None, 0
                h = self._borrow()
                try:
                    rc = api.lr_router_route(h, byref(req), byref(dec), byref(err))
                finally:
                    self._give_back()
            finally:
                req.models = None
                req.query = None
                req.embedding, req.embedding_dim = None, 0
            if rc >= 0 or attempt or not self._filled_meanwhile(flat, embedding):
                break
        del flat
        if rc < 0:
            raise_for(rc, err, "lr_router_route")
        return self._decision(dec, buf)

    def route_index(self, models=None):
        """The chosen config index alone, for a request without text (what
        sequential routing needs): route() without building a Decision."""
        if self._h is None:
            raise self._closed()
        s = self._scratch
        try:
            if type(models) is tuple or models is None:
                key = models
            elif isinstance(models, (str, bytes)):
                key = (models,)
            elif isinstance(models, (list, tuple)):
                key = tuple(models)
            else:  # no list of names: _candidates() says what is wrong
                raise TypeError
            req = s.prepared.get(key)
        except TypeError:  # not a list of names: _candidates() says what is wrong
            key, req = models, None
        if req is None:
            arr, k = self._candidates(key, "Router.route_index")
            req = _lib.lr_request()
            api.lr_request_init(byref(req))
            req.models, req.n_models = arr, k
            if len(s.prepared) >= _CANDS_CACHE_MAX:
                s.prepared.clear()
            s.prepared[key] = req
        plain = s.plain
        # _borrow() and _give_back() inlined: this is the per-call path of
        # SequentialRouting.
        with _borrow_lock:
            h = self._h
            if h is None:
                raise self._closed()
            self._borrowers += 1
        try:
            rc = _route(h, req, plain, s.err)
        finally:
            with _borrow_lock:
                self._borrowers -= 1
                orphan = self._orphan if self._borrowers == 0 else None
                if orphan:
                    self._orphan = None
            if orphan:
                self._release(orphan)
        if rc < 0:
            raise_for(s.err.code, s.err, "lr_router_route")
        return plain.index

    # -- many requests --

    def route_batch(self, queries=None, models=None, input_tokens=None, n=None,
                    mode="per_query", alpha=None, budget=None, capacities=None,
                    ranking=False, embeddings=None):
        """Route n requests in one call (lr_router_route_batch).

        queries: a list of query texts (or None entries), or None with `n`
            for requests without text (sequential);
        models: None (every configured model), one list of names shared by
            all requests, or a list of lists (one per request; any entry a
            list makes it that, and None among them is every configured
            model for its request);
        input_tokens: None (estimated from the text) or one count per query;
        mode: "per_query" (each on its own), "quality" (minimum total cost
            with mean predicted quality >= alpha and load <= capacity per
            model) or "budget" (maximum mean quality with total cost <= budget);
            alpha is for "quality" only (None: the config's), budget for
            "budget" only; given with another mode they are InvalidInput;
        capacities: None (the config's), or a dict name -> cap (models not
            named keep their configured capacity) or a list with one cap per
            configured model: each a whole number from 0 (unlimited) to 1e9,
            as a config's "capacity".

        embeddings: over a dense store, one vector per query; None: the
            queries are embedded in one call (see the class).

        Returns a BatchResult. When the constraints cannot all be met the
        result has feasible=False, the best reachable assignment and the
        library's explanation in `message`.
        """
        try:
            decs, bufs, rep, rc, err = self._batch("Router.route_batch", queries, models,
                                                   input_tokens, n, mode, alpha, budget,
                                                   capacities, ranking, embeddings)
            out = [self._decision(decs[i], bufs[i] if bufs else None)
                   for i in range(len(decs))]
        except MemoryError as e:
            raise _no_memory(e, "Router.route_batch", queries, n)
        message = _s(rep.message) or (_s(err.message) if rc < 0 else "")
        return BatchResult(out, bool(rep.feasible) and rc == 0, rep.mean_quality,
                           rep.total_cost, rep.iterations, message)

    def route_indices(self, queries=None, models=None, input_tokens=None, n=None,
                      embeddings=None):
        """Each request routed on its own, as route_batch(mode="per_query"),
        returning only the chosen config indices (no Decision objects)."""
        try:
            decs, _, _, _, _ = self._batch("Router.route_indices", queries, models,
                                           input_tokens, n, "per_query", None, None, None,
                                           False, embeddings)
            return _indices(decs)
        except MemoryError as e:
            raise _no_memory(e, "Router.route_indices", queries, n)

    def _vectors(self, queries, embeddings, where, name, models=None, per_query=None):
        """(flat array('f'), dim, row of each query or None) for requests over
        a dense store, from `embeddings` or one call of the router's embed
        for the queries that have text; None when no vector is needed (no
        dense store, or an empty one, which the library reports as empty).
        `where` names the method, `name` the vectors' argument in messages.
        models: the candidates (per_query: one list per query; None: one
        request, route()'s), refused as the library refuses them, an unknown
        or repeated name, before embed is called."""
        if embeddings is not None:
            if isinstance(embeddings, (str, bytes, Mapping)) or not _iterable(embeddings):
                raise EmbedError("%s: expected a list of vectors, got %s"
                                 % (name, type(embeddings).__name__), code=_lib.LR_EINVAL)
            embeddings = list(embeddings)
            if len(embeddings) != len(queries):
                raise EmbedError("%s: %d vectors for %d queries"
                                 % (name, len(embeddings), len(queries)), code=_lib.LR_EINVAL)
            dim = self._store_dim()
            flat, dim = _embed.checked(lambda texts: embeddings, queries, dim, name)
            return flat, dim, list(range(len(queries)))
        embed = self.embed
        if embed is None:
            if self._dense and self._store_dim():
                raise InvalidInput("the history store uses the embedder '%s', so smart "
                                   "routing needs each query's vector: give embed= (to the "
                                   "Router or the Store), or embeddings"
                                   % self._store_embedder, code=_lib.LR_EINVAL)
            return None
        dim = self._store_dim()
        if dim == 0 or self._store_empty():
            # Nothing to search: the library says the store is empty (and
            # an AIOS class falls back), or refuses a query with a choice to
            # make and no text for its text, without a call to embed.
            return None
        rows, texts, empty = [], [], []
        for i, q in enumerate(queries):
            if q is None or _blank(q):
                # A blank text (spaces, tabs, line breaks alone) has nothing
                # to search by: the library ranks it without neighbours, on
                # the priors, and it needs no vector (nor a call to embed).
                rows.append(None)
            elif isinstance(q, (str, bytes, bytearray)) and len(q) == 0:
                # An empty text is refused below, as the library refuses it
                # over a store of the built-in embedder: it is never embedded.
                rows.append(None)
                empty.append(i)
            else:
                rows.append(len(texts))
                # Checked as the request will be (_requests()) before any is
                # embedded: a query the library cannot take (a lone
                # surrogate, a NUL) is InvalidInput naming it, and never
                # goes to embed (or its server).
                qb = _b(q, "%s: queries[%d]" % (where, i))
                texts.append(q if isinstance(q, str) else _s(qb))
        if empty:
            self._known_candidates(models, per_query)
            self._refuse_empty(empty, models, per_query)
        if not texts:
            return None
        self._known_candidates(models, per_query)
        flat, dim = _embed.checked(embed, texts, dim)
        return flat, dim, rows

    def _refuse_empty(self, empty, models, per_query):
        """Raise, in the library's words, its refusal of the first empty
        query text (of those at the indices `empty`) in a request with more
        than one candidate: smart routing has nothing to rank it by. A
        request with a single candidate gets it, text or none, and is left
        to the library. See _vectors: the empty text is never embedded."""
        batch = per_query is not None
        for i in empty:
            names = models[i] if per_query else models
            if names is None:
                n = len(self._names)
            elif isinstance(names, (str, bytes)):
                n = 1
            else:
                n = len(names)
            if n > 1:
                raise InvalidInput("%ssmart routing needs the query text"
                                   % ("query %d: " % i if batch else ""), code=_lib.LR_EINVAL,
                                   c_name="lr_router_route_batch" if batch
                                   else "lr_router_route")

    def _filled_meanwhile(self, vectors, given):
        """Whether a call that failed should be made again with vectors:
        _vectors() gave none (`vectors` None, no vectors `given`) because the
        dense store had no records, and it has some now. Another thread's
        first import or add may land between that look at the store and the
        library's, which then finds records and a request without the
        vector they need; made again, the request is embedded and routed
        over the store as it now is."""
        if vectors is not None or given is not None or self.embed is None:
            return False
        return self._store_dim() > 0 and not self._store_empty()

    def _known_candidates(self, models, per_query):
        """Raise, in the library's words, what it would raise for the
        candidates `models` (see _vectors) once it had the vectors: an
        unknown model name (UnknownModel), one listed twice among a
        request's candidates (InvalidInput); so that no query is embedded
        (an embeddings server asked) for a request that is refused. Anything
        else, and entries that are no names, the library or _requests()
        refuses as before."""
        if models is None:
            return
        batch = per_query is not None
        c_name = "lr_router_route_batch" if batch else "lr_router_route"
        lists = models if per_query else [models]
        for i, names in enumerate(lists):
            if names is None:
                continue
            if isinstance(names, (str, bytes)):
                names = (names,)
            elif not isinstance(names, (list, tuple)):
                return
            prefix = "query %d: " % i if batch else ""
            seen = set()
            for m in names:
                if isinstance(m, bytes):
                    try:
                        m = m.decode("utf-8")
                    except UnicodeDecodeError:
                        return  # the library names it in its own way
                elif not isinstance(m, str):
                    return
                if m not in self._model_index:
                    if not _plain_name(m):
                        # A NUL or a lone surrogate (_candidates() names the
                        # argument), or a name the library's message would
                        # escape or cut: left to it.
                        return
                    raise UnknownModel("%sunknown model '%s'" % (prefix, m),
                                       code=_lib.LR_ENOMODEL, c_name=c_name)
                if m in seen:
                    raise InvalidInput("%smodel '%s' is listed twice among the candidates"
                                       % (prefix, m), code=_lib.LR_EINVAL, c_name=c_name)
                seen.add(m)

    def _batch(self, where, queries, models, input_tokens, n, mode, alpha, budget, capacities,
               ranking, embeddings=None):
        """The C call of route_batch() and route_indices(); `where` names
        the method for messages."""
        self.handle  # raises: closed
        ranking = _flag(ranking, where + ": ranking")
        if queries is None:
            if n is None:
                raise InvalidInput("%s: give the queries or their number n" % where,
                                   code=_lib.LR_EINVAL)
            queries = [None] * _whole(n, where + ": n", 0, 2 ** 31)
        else:
            if isinstance(queries, (str, bytes, Mapping)) or not _iterable(queries):
                raise _wrong_type(where + ": queries", "a list of query texts (str or None)",
                                  queries)
            queries = list(queries)
            if n is not None and _whole(n, where + ": n", 0, 2 ** 63) != len(queries):
                raise InvalidInput("%s: n is %d but %d queries are given"
                                   % (where, n, len(queries)), code=_lib.LR_EINVAL)
        count = len(queries)
        if count == 0:
            raise EmptyInput("%s: the batch has no queries" % where, code=_lib.LR_EEMPTY)
        if input_tokens is not None:
            if isinstance(input_tokens, (str, bytes, Mapping)) or not _iterable(input_tokens):
                raise _wrong_type(where + ": input_tokens", "one count per query (a list) or "
                                  "None", input_tokens)
            input_tokens = list(input_tokens)
            if len(input_tokens) != count:
                raise InvalidInput("%s: input_tokens: %d counts for %d queries"
                                   % (where, len(input_tokens), count), code=_lib.LR_EINVAL)
        if models is not None and not isinstance(models, (str, bytes, list, tuple)):
            if isinstance(models, Mapping) or not _iterable(models):
                raise _wrong_type(where + ": models", "a list of model names, a list of such "
                                  "lists (one per query) or None", models)
            models = list(models)
        # One list per query when any entry is a list (None among them: every
        # configured model for that query), whichever entry it is.
        per_query = (models is not None and not isinstance(models, (str, bytes))
                     and any(isinstance(m, (list, tuple)) for m in models))
        if per_query:
            for i, m in enumerate(models):
                if m is not None and not isinstance(m, (list, tuple)):
                    raise _wrong_type("%s: models[%d]" % (where, i), "a list of model names "
                                      "or None (one list per query, as the others are)", m)
        if per_query and len(models) != count:
            raise InvalidInput("%s: models: %d candidate lists for %d queries"
                               % (where, len(models), count), code=_lib.LR_EINVAL)
        if not isinstance(mode, str):
            raise _wrong_type(where + ": mode", "one of %s" % ", ".join(_BATCH_MODES), mode)
        if mode not in _BATCH_MODES:
            raise InvalidInput("%s: mode: expected one of %s, got %r"
                               % (where, ", ".join(_BATCH_MODES), mode), code=_lib.LR_EINVAL)
        if capacities is not None and not isinstance(capacities, Mapping) and (
                isinstance(capacities, (str, bytes)) or not _iterable(capacities)):
            raise _wrong_type(where + ": capacities", "a dict of model name -> cap, one cap "
                              "per configured model (a list) or None", capacities)

        # The arguments are checked before the queries are embedded (a
        # request to an embeddings server, maybe), the counts read once.
        if input_tokens is not None:
            input_tokens = [_tokens(t, "%s: input_tokens[%d]" % (where, i))
                            for i, t in enumerate(input_tokens)]
        opts = _lib.lr_batch_options()
        api.lr_batch_options_init(byref(opts))
        opts.mode = _BATCH_MODES[mode]
        if alpha is not None:
            opts.alpha = _number(alpha, where + ": alpha")
        if budget is not None:
            opts.budget = _number(budget, where + ": budget")
        problem = self._batch_values_problem(mode, alpha is not None, opts.alpha,
                                             budget is not None, opts.budget)
        if problem:
            raise InvalidInput("%s: %s" % (where, problem), code=_lib.LR_EINVAL,
                               c_name="lr_router_route_batch")
        caps = None
        if capacities is not None:
            caps = self._capacities(capacities, where)
            opts.capacities = caps
        for attempt in (0, 1):
            vecs = self._vectors(queries, embeddings, where, where + ": embeddings", models,
                                 per_query)
            reqs, keep = self._requests(where, queries, models, input_tokens, per_query, vecs)
            decs = (_lib.lr_decision * count)()
            bufs = None
            if ranking:
                bufs = []
                for i in range(count):
                    m = models[i] if per_query else models
                    k = len(self._names) if m is None else (1 if isinstance(m, (str, bytes))
                                                            else len(m))
                    b = (_lib.lr_candidate * k)()
                    decs[i].ranking, decs[i].ranking_cap = b, k
                    bufs.append(b)
            rep = _lib.lr_batch_report()
            err = _lib.lr_error()
            h = self._borrow()
            try:
                rc = api.lr_router_route_batch(h, reqs, count, byref(opts), decs, byref(rep),
                                               byref(err))
            finally:
                self._give_back()
            if (rc >= 0 or rc == _lib.LR_EINFEASIBLE or attempt
                    or not self._filled_meanwhile(vecs, embeddings)):
                break
        if rc < 0 and rc != _lib.LR_EINFEASIBLE:
            e = _make_error(rc, err, "lr_router_route_batch")
            # The library names the argument it refuses ("alpha: expected a
            # number from 0 to 1, got 1.5"); the method goes before it, as
            # in the binding's own messages about the arguments.
            if e.message.startswith(("alpha: ", "budget: ")):
                e.message = "%s: %s" % (where, e.message)
                e.args = (e.message,)
            raise e
        del keep, caps  # the C call is done with them
        return decs, bufs, rep, rc, err

    def _batch_values_problem(self, mode, has_alpha, alpha, has_budget, budget):
        """What the library would say of alpha and budget in this mode (its
        checks in lr_router_route_batch, in its words), or None: said here so
        that a value it refuses is refused before the queries are embedded
        (a request to an embeddings server, which may be down). The quality
        and budget modes need a smart router, which the library says first."""
        if mode == "per_query":
            if has_budget:
                return ("budget: the per-query mode takes none (each query is routed on its "
                        "own); use the budget mode")
            if has_alpha:
                return ("alpha: the per-query mode takes none (each query meets its "
                        "performance requirement); use the quality mode")
            return None
        if self.strategy != "smart":
            return None
        if mode == "budget" and has_alpha:
            return ("alpha: the budget mode takes none (it maximises quality within the "
                    "budget); give alpha or budget, not both")
        if mode == "quality" and has_budget:
            return ("budget: the quality mode takes none (it meets alpha at the least cost); "
                    "give alpha or budget, not both")
        if mode == "quality" and has_alpha and not 0 <= alpha <= 1:
            return "alpha: expected a number from 0 to 1, got %s" % _c_number(alpha)
        if mode == "budget" and not has_budget:
            return ("budget: the budget mode needs one (a number from 0 to %g)"
                    % _lib.LR_BATCH_MAX_BUDGET)
        if mode == "budget" and not 0 <= budget <= _lib.LR_BATCH_MAX_BUDGET:
            return ("budget: expected a number from 0 to %g, got %s"
                    % (_lib.LR_BATCH_MAX_BUDGET, _c_number(budget)))
        return None

    def _requests(self, where, queries, models, input_tokens, per_query, vecs=None):
        """The lr_request array for a batch, and the objects it points into."""
        count = len(queries)
        if (not per_query and input_tokens is None and vecs is None
                and queries.count(None) == count):
            # Identical requests (sequential): one struct, copied in C.
            arr, k = self._candidates(models, where)
            one = _lib.lr_request()
            api.lr_request_init(byref(one))
            one.models, one.n_models = arr, k
            reqs = (_lib.lr_request * count).from_buffer_copy(bytes(one) * count)
            return reqs, arr
        reqs = (_lib.lr_request * count)()
        keep = []
        shared = None if per_query else self._candidates(models, where)
        for i in range(count):
            r = reqs[i]
            api.lr_request_init(byref(r))
            arr, k = (self._candidates(models[i], where, "models[%d]" % i) if per_query
                      else shared)
            r.models, r.n_models = arr, k
            q = queries[i]
            if q is not None:
                qb = _b(q, "%s: queries[%d]" % (where, i))
                keep.append(qb)
                r.query = qb
            if input_tokens is not None:
                r.input_tokens = input_tokens[i]  # checked by _batch()
            if vecs is not None and vecs[2][i] is not None:
                r.embedding = _float_ptr(vecs[0], vecs[2][i], vecs[1])
                r.embedding_dim = vecs[1]
        if vecs is not None:
            keep.append(vecs[0])
        return reqs, keep

    def _capacities(self, capacities, where):
        n = len(self._names)
        caps = (c_int * n)()
        if isinstance(capacities, Mapping):
            # Models the mapping does not name keep their configured capacity.
            for i in range(n):
                caps[i] = self._models[i].capacity
            for name, cap in capacities.items():
                if not isinstance(name, (str, bytes)):
                    raise InvalidType("%s: capacities: expected model names as keys, got %s"
                                      % (where, _got(name)), code=_lib.LR_EINVAL)
                try:
                    i = self._model_index.get(name if isinstance(name, str)
                                              else name.decode("utf-8"))
                except UnicodeDecodeError:
                    i = None
                if i is None:
                    raise UnknownModel("%s: capacities: unknown model '%s'"
                                       % (where, _name_text(name)), code=_lib.LR_ENOMODEL)
                caps[i] = _whole(cap, "%s: capacities[%r]" % (where, _name_text(name)), 0,
                                 _CAPACITY_MAX)
        else:
            capacities = list(capacities)
            if len(capacities) != n:
                raise InvalidInput("%s: capacities: %d values for %d configured models"
                                   % (where, len(capacities), n), code=_lib.LR_EINVAL)
            for i, cap in enumerate(capacities):
                caps[i] = 0 if cap is None else _whole(cap, "%s: capacities[%d]" % (where, i),
                                                       0, _CAPACITY_MAX)
        return caps



def estimate_tokens(text):
    """lr_estimate_tokens(): the library's token estimate for a text."""
    if text is None:
        return 0
    if not isinstance(text, (str, bytes)):
        raise _wrong_type("estimate_tokens: text", "a str", text)
    b = text
    if isinstance(text, str):
        try:
            b = text.encode("utf-8")
        except UnicodeEncodeError as e:
            raise _not_utf8("estimate_tokens: text", text, e) from None
    return api.lr_estimate_tokens(b, len(b))
