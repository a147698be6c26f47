"""Vectors for dense stores: checking what an embed function returns, the
import callback that hands them to the library, and an OpenAI-compatible
HTTP embedder in the standard library.

A store whose embedder is not the built-in "tfidf-v1" is dense: the library
never embeds its text, the caller gives every vector (lr_store_add's vec,
lr_import_options.embed, lr_request.embedding). Here an embed function does:
a callable taking a list of str and returning one vector (a sequence of
numbers) per text, all of one length. Whatever it returns is checked before
a single float reaches C, and a fault raises EmbedError naming it, with
nothing written.

OpenAIEmbedder does what the gateway and the command do with a config's
router.embedding: POST {"model", "input": [texts]} (and "dimensions" when
set) to {base_url}/embeddings, with "Authorization: Bearer KEY" when a key is
given or its environment variable is set, and reads data[i].embedding placed
by data[i].index. Its store id is "openai:" + model, as theirs.

Threads: the functions here keep no state; an OpenAIEmbedder may be called
from several threads at once (one HTTP request per call and batch). Its
requests share two kinds of daemon threads: one that shuts a connection at
its deadline (_Watchdog) and those that look host names up (_Resolver).
"""
import collections
import functools
import heapq
import http.client
import ipaddress
import itertools
import json
import math
import numbers
import os
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from array import array
from collections.abc import Mapping
from ctypes import c_float, memmove, sizeof

from . import _lib
# core imports this module once it has defined _read_only_property.
from .core import _read_only_property
from .errors import EmbedError, InvalidType

__all__ = ["OpenAIEmbedder", "openai_embedder"]

# The library's cap on a vector's dimension (LR__STORE_MAX_DIM).
MAX_DIM = 65536
# router.embedding.max_input_chars' default (src/lib/config.c).
MAX_INPUT_CHARS = 8192

_FLOAT_MAX = 3.4028234663852886e38

# The types of a plain list row's numbers that need no closer look.
_PLAIN = frozenset((float, int))


def _err(message):
    return EmbedError(message, code=_lib.LR_EINVAL)


def _wrong_type(what, expected, x):
    """InvalidType for an argument of the wrong Python type, worded as the
    rest of the binding words it: `what` names the method and argument."""
    return InvalidType("%s: expected %s, got %s" % (what, expected, type(x).__name__),
                       code=_lib.LR_EINVAL)


def _count(x, name, hi, lo=1):
    """A whole-number argument of OpenAIEmbedder from lo to hi: InvalidType
    for no number at all (and True or False), EmbedError for another."""
    rule = "a whole number from %d to %d" % (lo, hi)
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise _wrong_type("OpenAIEmbedder: " + name, rule, x)
    if not isinstance(x, int) or not lo <= x <= hi:
        raise _err("OpenAIEmbedder: %s: expected %s, got %s" % (name, rule, _short(x)))
    return x


def _finite_float(x):
    """Whether the number x is finite and within a C float's range (an int
    too large for a double, which JSON may hold, is not)."""
    try:
        f = float(x)
    except OverflowError:
        return False
    return math.isfinite(f) and abs(f) <= _FLOAT_MAX


def _short(x):
    r = repr(x)
    return r if len(r) <= 40 else r[:37] + "..."


def _nested(x):
    """Whether x, inside a vector, is a sequence or array rather than one
    number (a numpy scalar or 0-d array is a number)."""
    axes = getattr(x, "ndim", None)
    return bool(axes) if isinstance(axes, int) else hasattr(x, "__len__")


def vectors(embed, texts, dim, name="embed"):
    """embed(texts), checked: (flat array('f') of len(texts) * d, d). dim is
    the store's dimension, or 0 when it has none yet (the vectors then set
    it). EmbedError names the first fault, its message starting with
    `name`; an exception embed raises goes through unchanged."""
    rows = embed(list(texts))
    n = len(texts)
    if isinstance(rows, (str, bytes, Mapping)) or not hasattr(rows, "__len__"):
        raise _err(name + ": expected a list of %d vectors, got %s" % (n, type(rows).__name__))
    axes = getattr(rows, "ndim", None)
    if isinstance(axes, int) and axes > 2:
        raise _err(name + ": returned an array of %d axes (shape %s): expected one vector per "
                   "text, as rows of numbers" % (axes, _short(getattr(rows, "shape", "?"))))
    if len(rows) != n:
        raise _err(name + ": returned %d vector%s for %d text%s"
                   % (len(rows), "" if len(rows) == 1 else "s", n, "" if n == 1 else "s"))
    flat = array("f")
    first = None
    for i, row in enumerate(rows):
        if isinstance(row, (str, bytes, Mapping)) or not hasattr(row, "__len__"):
            raise _err(name + ": vector %d: expected a sequence of numbers, got %s"
                       % (i, type(row).__name__))
        axes = getattr(row, "ndim", None)
        if isinstance(axes, int) and axes != 1:
            raise _err(name + ": vector %d: expected a sequence of numbers, got an array of "
                       "%d axes" % (i, axes))
        k = len(row)
        if first is None:
            first = k
            if k == 0:
                raise _err(name + ": vector 0 is empty")
            if k > MAX_DIM:
                raise _err(name + ": vectors of dimension %d are over the cap of %d"
                           % (k, MAX_DIM))
            if dim and k != dim:
                raise _err(name + ": returned vectors of dimension %d, but the store's are %d"
                           % (k, dim))
        elif k != first:
            raise _err(name + ": vectors differ in length: vector 0 has %d numbers, vector %d "
                       "has %d" % (first, i, k))
        try:
            d = array("d", row)
        except (TypeError, OverflowError):  # OverflowError: an int too large for a double
            d = None
        if d is not None and axes is None and not _PLAIN.issuperset(map(type, row)):
            # array("d") takes anything float() takes, a one-number array
            # too: a row nested one level deeper is no vector.
            for j, x in enumerate(row):
                if _nested(x):
                    d = None
                    break
        if d is None or len(d) != k:
            for j, x in enumerate(row):
                if (isinstance(x, (str, bytes)) or not hasattr(x, "__float__")
                        or _nested(x)):
                    raise _err(name + ": vector %d, number %d: expected a number, got %s"
                               % (i, j, _short(x)))
                if not _finite_float(x):
                    raise _err(name + ": vector %d, number %d: expected a finite number, got %s"
                               % (i, j, _short(x)))
            raise _err(name + ": vector %d: expected a sequence of numbers" % i)
        # One sum finds a NaN or an infinity (or a number too large for a
        # float) without a Python-level test per number.
        if not math.isfinite(sum(d)) or max(d) > _FLOAT_MAX or min(d) < -_FLOAT_MAX:
            for j, x in enumerate(d):
                if not math.isfinite(x) or abs(x) > _FLOAT_MAX:
                    raise _err(name + ": vector %d, number %d: expected a finite number, got %r"
                               % (i, j, x))
        if not any(d):
            raise _err(name + ": vector %d is all zeros (it has no direction)" % i)
        f = array("f", d)
        if not any(f):
            # Each number is below the least a float holds (about 1.4e-45):
            # the vector the library gets would have no direction.
            raise _err(name + ": vector %d is all zeros as 32-bit floats (its numbers are "
                       "below 1.4e-45 in size), so it has no direction" % i)
        flat.extend(f)
    return flat, (first or dim)


def probe_dim(embed):
    """The dimension of embed's vectors: its `dimensions` attribute when it
    has one, else the length of the vector of a probe text (as the command
    learns a server's)."""
    d = getattr(embed, "dimensions", None)
    if isinstance(d, int) and not isinstance(d, bool) and d > 0:
        return d
    _, d = vectors(embed, ["dimension probe"], 0)
    return d


class ImportCallback:
    """The lr_embed_fn an import calls, around embed. An exception never
    crosses into C: it is kept in `exc`, the callback returns an error code
    with the message in the library's lr_error, and the caller re-raises it
    after the import returns. Keep this object alive for the call (the C
    function pointer is self.fn)."""

    def __init__(self, embed):
        self.embed = embed
        self.exc = None
        self.fn = _lib.lr_embed_fn(self._call)

    def _call(self, arg, texts, n, out, dim, err):
        try:
            words = [texts[i].decode("utf-8", "replace") for i in range(n)]
            flat, _ = vectors(self.embed, words, dim)
            if len(flat) != n * dim:  # vectors() ensures it; out holds no more
                raise _err("embed: %d numbers for %d vectors of %d" % (len(flat), n, dim))
            memmove(out, flat.buffer_info()[0], len(flat) * sizeof(c_float))
            return 0
        except BaseException as e:  # noqa: B902: nothing may escape into C
            self.exc = e
            message = str(e) if isinstance(e, EmbedError) else (
                "embed raised %s: %s" % (type(e).__name__, e))
            try:
                m = message.encode("utf-8", "replace")[:511]
                err.contents.message = m
                err.contents.code = _lib.LR_EINVAL
            except BaseException:
                pass
            return _lib.LR_EINVAL

    def reraise(self, c_message):
        """After a failed import: raise what the callback kept, as EmbedError
        with the library's message (which says which records), chained from
        the exception embed raised. An interrupt is re-raised as it is."""
        e = self.exc
        if e is None:
            return
        self.exc = None
        if not isinstance(e, Exception):
            raise e
        out = EmbedError(c_message or str(e), code=_lib.LR_EINVAL)
        if isinstance(e, EmbedError) and e.__cause__ is None and e.__context__ is None:
            raise out from None
        raise out from e


def fail_from(e, message=None):
    """EmbedError for an exception embed raised outside an import."""
    if isinstance(e, EmbedError):
        return e
    return EmbedError(message or "embed raised %s: %s" % (type(e).__name__, e),
                      code=_lib.LR_EINVAL)


def checked(embed, texts, dim, name="embed"):
    """vectors() with an exception from embed turned into EmbedError (the
    original as its __cause__); interrupts go through as they are."""
    try:
        return vectors(embed, texts, dim, name)
    except EmbedError:
        raise
    except Exception as e:
        raise fail_from(e) from e


# ==== An OpenAI-compatible HTTP embedder ====

# The answer to a batch of n texts may be up to this many bytes (as the
# command's client): JSON floats take about 10 to 25 characters each.
_ANSWER_BASE = 1 << 20
_ANSWER_PER_FLOAT = 32
_ANSWER_MAX = 512 << 20
_PROBE_DIM = 65536


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is never followed (it would resend the texts elsewhere):
    it fails with the status, as in the gateway."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class _Watch:
    """The connections of one HTTP exchange (an embeddings request here, a
    bootstrap download in routing), shut down when its deadline passes
    (expire(), from a timer thread): a read blocked in the response's head,
    or in a chunk's size line, then returns at once, where a socket timeout
    bounds only each read (a server that sends a byte now and then would
    hold the caller for as long as it likes)."""

    def __init__(self, deadline=None):
        self.lock = threading.Lock()
        self.conns = []
        self.expired = False
        self.done = False
        # The time.monotonic() deadline, which also bounds each name lookup
        # and connection attempt (_connect()): there is no socket to shut
        # while a name is looked up.
        self.deadline = deadline

    def finish(self):
        """The exchange is over: a later expire() does nothing. Whether the
        deadline passed first (what was read may have been cut short)."""
        with self.lock:
            self.done = True
            return self.expired

    def add(self, conn):
        """A connection (an http.client one, whose .sock is its socket
        while it has one)."""
        with self.lock:
            self.conns.append(conn)

    def add_socket(self, sock):
        """The socket a response is read from: urllib's handler takes it
        from its connection once the head is read (conn.sock is None after),
        so a body read is cut at the deadline only through this. Shut at
        once when the deadline has passed already."""
        if sock is None:
            return
        with self.lock:
            self.conns.append(_Socket(sock))
            if self.expired:
                _shut(sock)

    def expire(self):
        with self.lock:
            if self.done:
                return
            self.expired = True
            for conn in self.conns:
                _shut(getattr(conn, "sock", None))


class _Watchdog:
    """One daemon thread that expires the _Watch of each embeddings request
    at its deadline, rather than a timer thread started per request (which
    cost about half a millisecond a call here). A finished watch stays in
    the heap until its deadline comes up, so the heap holds at most the
    requests of the last timeout's length. After a fork the child starts a
    thread of its own at its first request (the parent's is not there),
    with a lock of its own (the parent's thread may have held this one at
    the fork)."""

    def __init__(self):
        self._order = itertools.count()
        self._reset()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._reset)

    def _reset(self):
        self._cond = threading.Condition()
        self._heap = []
        self._pid = None

    def watch(self, seconds):
        """A new _Watch that expires `seconds` from now unless finished."""
        deadline = time.monotonic() + seconds
        w = _Watch(deadline)
        with self._cond:
            if self._pid != os.getpid():
                self._heap = []
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="llmroute-embed-deadlines",
                                 daemon=True).start()
            heapq.heappush(self._heap, (deadline, next(self._order), w))
            if self._heap[0][2] is w:
                self._cond.notify()
        return w

    def _run(self):
        with self._cond:
            while True:
                now = time.monotonic()
                while self._heap and (self._heap[0][2].done or self._heap[0][0] <= now):
                    w = heapq.heappop(self._heap)[2]
                    w.expire()  # nothing when it finished
                self._cond.wait(self._heap[0][0] - now if self._heap else None)


_watchdog = _Watchdog()


class _Socket:
    """A socket as _Watch keeps connections: its .sock."""

    def __init__(self, sock):
        self.sock = sock


def _shut(sock):
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _response_socket(resp):
    """The socket under an http.client response, or None."""
    raw = getattr(getattr(resp, "fp", None), "raw", None)
    sock = getattr(raw, "_sock", None)
    return sock if hasattr(sock, "settimeout") else None


class _Lookup:
    """One socket.getaddrinfo call handed to a _Resolver thread."""

    def __init__(self, args):
        self.args = args
        self.done = threading.Event()
        self.result = None
        self.error = None
        self.abandoned = False


class _Resolver:
    """Name lookups (socket.getaddrinfo) made on daemon threads, each waited
    for until a deadline and no longer: getaddrinfo takes no timeout, and a
    resolver that does not answer holds its caller for as long as the C
    library tries its name servers. A lookup past its deadline raises
    socket.timeout in the caller and goes on in its thread, its answer
    dropped (no connection is made with it). A thread is started when no
    idle one waits, so there are never more than the lookups once in flight
    at the same time, and kept for later lookups. After a fork the child
    starts afresh (the parent's threads are not there)."""

    def __init__(self):
        self._reset()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._reset)

    def _reset(self):
        self._cond = threading.Condition()
        self._jobs = collections.deque()
        self._idle = 0

    def getaddrinfo(self, deadline, *args):
        job = _Lookup(args)
        with self._cond:
            self._jobs.append(job)
            start = self._idle < len(self._jobs)
            if not start:
                self._cond.notify()
        if start:
            threading.Thread(target=self._run, name="llmroute-resolver", daemon=True).start()
        if not job.done.wait(max(0.0, deadline - time.monotonic())):
            job.abandoned = True
            raise socket.timeout("timed out")
        if job.error is not None:
            raise job.error
        return job.result

    def _run(self):
        cond, jobs = self._cond, self._jobs
        while True:
            with cond:
                while not jobs:
                    self._idle += 1
                    cond.wait()
                    self._idle -= 1
                job = jobs.popleft()
            if job.abandoned:
                continue
            try:
                job.result = socket.getaddrinfo(*job.args)
            except Exception as e:
                job.error = e
            job.done.set()
            job = None


_resolver = _Resolver()


def _numeric_host(host):
    """Whether host is an IP address, which getaddrinfo reads without
    asking a resolver."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _connect(deadline, address, timeout=None, source_address=None, *args, **kw):
    """socket.create_connection within the time.monotonic() deadline, the
    name lookup included (_Resolver): each address is tried with what is
    left of it, and the socket keeps `timeout` for its reads, as
    create_connection leaves it. The deadline passing is socket.timeout."""
    host, port = address[:2]
    if _numeric_host(host):
        infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
    else:
        infos = _resolver.getaddrinfo(deadline, host, port, 0, socket.SOCK_STREAM)
    per_read = timeout if isinstance(timeout, (int, float)) else socket.getdefaulttimeout()
    error = None
    for family, kind, proto, _, addr in infos:
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("timed out")
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(left if per_read is None else min(left, per_read))
            if source_address:
                sock.bind(source_address)
            sock.connect(addr)
        except OSError as e:
            sock.close()
            error = e
            continue
        sock.settimeout(per_read)
        return sock
    if error is not None:
        raise error
    raise OSError("getaddrinfo returned no address for %s" % host)


# The _Watch of the embeddings request the calling thread is making, for
# the one opener all requests share (building an opener per request cost
# about 0.6 ms: urllib reads the proxy settings for each).
_current = threading.local()


class _WatchedOpen:
    """An http(s) handler that hands each connection it makes to a _Watch:
    its own `watch`, else the calling thread's (_current.watch), if any."""

    watch = None

    def do_open(self, http_class, req, **kwargs):
        watch = self.watch if self.watch is not None else getattr(_current, "watch", None)

        def connection(*args, **kw):
            conn = http_class(*args, **kw)
            if watch is not None:
                watch.add(conn)
                if watch.deadline is not None:
                    # http.client connects through this attribute (set in
                    # HTTPConnection.__init__): the lookup is bounded too.
                    conn._create_connection = functools.partial(_connect, watch.deadline)
            return conn

        return super().do_open(connection, req, **kwargs)


class _WatchedHTTP(_WatchedOpen, urllib.request.HTTPHandler):
    pass


class _WatchedHTTPS(_WatchedOpen, urllib.request.HTTPSHandler):
    pass


# The embeddings requests' opener: no redirect followed, each connection
# handed to the calling thread's _Watch.
_opener = urllib.request.build_opener(_NoRedirect, _WatchedHTTP(), _WatchedHTTPS())


# Control characters (C0 and DEL) to blanks, for a server's message.
_BLANK_CONTROLS = {c: " " for c in list(range(0x20)) + [0x7f]}


def _server_message(body):
    """The error message in a non-200 answer: OpenAI's {"error": {"message"}},
    or {"error": "..."}, {"message"}, {"detail"}; else the body's start."""
    try:
        root = json.loads(body.decode("utf-8", "replace"))
    except ValueError:
        root = None
    msg = None
    if isinstance(root, dict):
        e = root.get("error")
        if isinstance(e, dict):
            e = e.get("message")
        if isinstance(e, str):
            msg = e
        elif isinstance(root.get("message"), str):
            msg = root["message"]
        elif isinstance(root.get("detail"), str):
            msg = root["detail"]
    if msg is None:
        msg = body[:200].decode("utf-8", "replace") if body else "(empty body)"
    # As the command prints it: a control character (an escape sequence's
    # ESC, a line break) is a blank, so none reaches a terminal or a log.
    return msg.translate(_BLANK_CONTROLS)


def _check_as_config(base_url, model):
    """Refuse, as EmbedError in its words, a base_url or model that the
    config's router.embedding refuses (a user and password before the host,
    a space, a query or fragment, no host, a port out of range, an IPv6
    address without brackets, a control character; a model name over its
    cap): the library's own check, over a configuration of one model, so
    that an embedder made here takes what `from_config` takes."""
    from .core import Config  # core imports this module: imported at call time
    from .errors import Error

    for name, text in (("base_url", base_url), ("model", model)):
        if any(c < " " or c == "\x7f" for c in text):
            raise _err("OpenAIEmbedder: %s: must not contain control characters" % name)
    try:
        Config({"models": [{"name": "embedder-check"}],
                "router": {"embedding": {"base_url": base_url, "model": model}}}).close()
    except Error as e:
        text = str(e)
        at = text.find("router.embedding.")
        if at >= 0:
            text = text[at + len("router.embedding."):]
        raise _err("OpenAIEmbedder: " + text) from None


def _ascii_path(url):
    """url with each character of its path that is not ASCII in UTF-8,
    percent-encoded (the host is left to IDNA, as http.client sends it)."""
    if url.isascii():
        return url
    cut = url.find("/", url.find("://") + 3)
    if cut < 0:
        return url
    return url[:cut] + "".join(c if c.isascii() else urllib.parse.quote(c, safe="")
                               for c in url[cut:])


class OpenAIEmbedder:
    """An embed function over an OpenAI-compatible POST {base_url}/embeddings
    (Ollama, llama.cpp server, vLLM, TEI, OpenAI), in the standard library.

    base_url: e.g. "http://localhost:11434/v1" (a trailing "/" is dropped);
    model: the embedding model's name on that server; api_key: sent as a
    Bearer token, else the value of the environment variable api_key_env
    when it is set (never read from a config); dimensions: sent as
    "dimensions" and checked in answers (None: the server's own);
    batch_size: texts per request (1 to 2048); timeout: seconds per request,
    the whole of it (name lookup, connection, head and body);
    max_input_chars: each text is cut to its first this many characters
    before it is sent (0 to 1048576; 0: sent whole), as router.embedding's
    max_input_chars has the CLI and the gateway cut it, so that vectors made
    here and there agree (the default, 8192, is the config's).
    base_url and model, and url and embedder_id worked out from them, are
    read-only (AttributeError: make another OpenAIEmbedder); dimensions,
    batch_size, timeout and max_input_chars are read at each call and may
    be set, a value the constructor refuses refused the same way.
    An argument of the wrong type (to the constructor or a call) raises
    InvalidType naming it ("OpenAIEmbedder: model: expected ..., got int"),
    as the rest of the binding does; a bad value of the right type (a URL
    that is not http, a batch_size of 0, a base_url or model that the
    config's router.embedding refuses), EmbedError.

    Calling it with a list of texts returns one list of floats per text, in
    order. Failures raise EmbedError naming the URL and the fault: the
    server unreachable or slow, an answer other than 200 (with the server's
    own message), a 200 whose body is an error object (with its message,
    as some proxies answer a quota), a redirect, an answer that breaks
    off mid-body, an answer that is not JSON or not embeddings
    (missing data, wrong count, an index out of range or twice, vectors of
    differing or unexpected length, numbers that are not finite)."""

    def __init__(self, base_url, model, api_key=None, api_key_env=None, dimensions=None,
                 batch_size=64, timeout=30.0, max_input_chars=MAX_INPUT_CHARS):
        where = "OpenAIEmbedder: "
        if not isinstance(base_url, str):
            raise _wrong_type(where + "base_url", "an http:// or https:// URL", base_url)
        # The scheme in any case, as the config takes it (RFC 3986 3.1).
        if not base_url[:8].lower().startswith(("http://", "https://")):
            raise _err(where + "base_url: expected an http:// or https:// URL, got %s"
                       % _short(base_url))
        if not isinstance(model, str):
            raise _wrong_type(where + "model", "the embedding model's name (a str)", model)
        if not model:
            raise _err(where + "model: expected the embedding model's name, got ''")
        _check_as_config(base_url, model)
        for name, x in (("api_key", api_key), ("api_key_env", api_key_env)):
            if x is not None and not isinstance(x, str):
                raise _wrong_type(where + name, "a str or None", x)
        # Checked by their setters, below.
        self.dimensions = dimensions
        self.batch_size = batch_size
        self.max_input_chars = max_input_chars
        self.timeout = timeout
        self._base_url = base_url.rstrip("/")
        self._url = self._base_url + "/embeddings"
        # The URL asked: a path that is not ASCII (which the config takes)
        # in UTF-8 and percent-encoded, as http.client writes ASCII alone.
        self._request_url = _ascii_path(self._url)
        self._model = model
        self._embedder_id = "openai:" + model
        key = api_key
        if key is None and api_key_env:
            key = os.environ.get(api_key_env) or None
        # Any control character but a tab, as the command and the gateway
        # refuse router.embedding.api_key_env's value (gw_env_value_unsafe).
        source = " from " + api_key_env if api_key is None and api_key_env else ""
        if key is not None and any((c < " " and c != "\t") or c == "\x7f" for c in key):
            raise _err("OpenAIEmbedder: api_key%s holds a control character (CR, LF, ...), "
                       "not an API key" % source)
        # API keys are ASCII. Another character (a dash or a quote mark
        # pasted from a page, a byte-order mark) would fail every request
        # with http.client's codec error, or go as a latin-1 byte where the
        # gateway sends the variable's UTF-8: its place is named, never the
        # key.
        bad = next((i for i, c in enumerate(key or "") if c > "\x7f"), None)
        if bad is not None:
            raise _err("OpenAIEmbedder: api_key%s holds a character that is not ASCII, "
                       "character %d (U+%04X), which an API key never holds: check the key "
                       "for a character pasted with it" % (source, bad + 1, ord(key[bad])))
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if key:
            self._headers["Authorization"] = "Bearer " + key

    @classmethod
    def from_config(cls, config):
        """The embedder of a Config's router.embedding (lr_config_embedding):
        its base_url, model, api_key_env, dimensions, batch_size,
        timeout_ms and max_input_chars. None when the config has no router.embedding."""
        from .core import Config  # core imports this module: imported at call time

        if not isinstance(config, Config):
            raise _wrong_type("OpenAIEmbedder.from_config: config", "a Config", config)
        info = config.embedding
        if info is None:
            return None
        return cls(info["base_url"], info["model"], api_key_env=info["api_key_env"],
                   dimensions=info["dimensions"] or None, batch_size=info["batch_size"],
                   timeout=info["timeout_ms"] / 1000.0,
                   max_input_chars=info["max_input_chars"])

    def __repr__(self):
        return "OpenAIEmbedder(%r, %r)" % (self.base_url, self.model)

    # base_url and model are used once, when the embedder is made: the URL
    # asked comes from base_url, and the store id a Store records (never
    # mixing two models' vectors) from model. Setting either afterwards
    # would change nothing but the value read back (base_url), or ask the
    # server for another model's vectors under the old id (model), so they
    # are refused, with url and embedder_id, which are worked out from them.

    _MADE = ("OpenAIEmbedder",
             "the URL asked and the store id (\"openai:\" + model) are taken from base_url and "
             "model when the OpenAIEmbedder is made",
             "make another OpenAIEmbedder(base_url, model, ...)")

    base_url = _read_only_property(
        "base_url", """The server's base URL, its trailing "/" dropped. Read-only.""", *_MADE)
    url = _read_only_property(
        "url", """The URL asked, base_url + "/embeddings". Read-only.""", *_MADE)
    model = _read_only_property(
        "model", """The embedding model's name sent in each request. Read-only.""", *_MADE)
    embedder_id = _read_only_property(
        "embedder_id", """The store id, "openai:" + model. Read-only.""", *_MADE)

    # dimensions, batch_size, max_input_chars and timeout are read at each
    # call: they may be set, and the next call follows them. A value the
    # constructor refuses is refused the same way, naming the attribute,
    # and the old value stays (batch_size = 0 was taken, and the next call
    # raised range()'s ValueError; timeout = "30" a TypeError from socket).

    @property
    def dimensions(self):
        """The "dimensions" sent and checked in answers (None: the
        server's own)."""
        return self._dimensions

    @dimensions.setter
    def dimensions(self, value):
        if value is not None:
            _count(value, "dimensions", MAX_DIM)
        self._dimensions = value

    @property
    def batch_size(self):
        """Texts per request (1 to 2048)."""
        return self._batch_size

    @batch_size.setter
    def batch_size(self, value):
        self._batch_size = _count(value, "batch_size", 2048)

    @property
    def max_input_chars(self):
        """Each text is cut to its first this many characters (0: sent
        whole)."""
        return self._max_input_chars

    @max_input_chars.setter
    def max_input_chars(self, value):
        self._max_input_chars = _count(value, "max_input_chars", 1048576, lo=0)

    @property
    def timeout(self):
        """Seconds per request, the whole of it (a float)."""
        return self._timeout

    @timeout.setter
    def timeout(self, value):
        what = "OpenAIEmbedder: timeout"
        if isinstance(value, (str, bytes, bytearray, bool)):
            raise _wrong_type(what, "a number of seconds above 0", value)
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            raise _wrong_type(what, "a number of seconds above 0", value) from None
        except OverflowError:  # an int too large for a double: no finite timeout
            seconds = math.inf
        if not seconds > 0 or math.isinf(seconds):
            raise _err(what + ": expected a number of seconds above 0, got %s" % _short(value))
        self._timeout = seconds

    def __call__(self, texts):
        if isinstance(texts, (str, bytes, Mapping)) or not hasattr(texts, "__iter__"):
            raise InvalidType("OpenAIEmbedder: texts: expected a list of str, got %s"
                              % type(texts).__name__, code=_lib.LR_EINVAL)
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise InvalidType("OpenAIEmbedder: texts[%d]: expected a str, got %s"
                                  % (i, type(t).__name__), code=_lib.LR_EINVAL)
        out = []
        for i in range(0, len(texts), self.batch_size):
            out.extend(self._batch(texts[i:i + self.batch_size]))
        return out

    def _batch(self, texts):
        if self.max_input_chars:
            # Python counts a str in code points, as lr_embedding_input_len()
            # counts UTF-8 characters: the same cut.
            texts = [t[:self.max_input_chars] for t in texts]
        body = {"model": self.model, "input": texts}
        if self.dimensions:
            body["dimensions"] = self.dimensions
        data = json.dumps(body).encode("utf-8")
        limit = min(_ANSWER_MAX, _ANSWER_BASE + len(texts) * (self.dimensions or _PROBE_DIM)
                    * _ANSWER_PER_FLOAT)
        req = urllib.request.Request(self._request_url, data=data, headers=self._headers,
                                     method="POST")
        where = "embedding server at %s" % self.url
        late = "%s did not answer within %g s (timeout)" % (where, self.timeout)
        # The timeout bounds the whole exchange, as curl's CURLOPT_TIMEOUT_MS
        # bounds the command's: a socket timeout alone bounds each read, so
        # a server sending a byte a second would hold the caller for good.
        watch = _watchdog.watch(self.timeout)
        _current.watch = watch
        broke = None  # why the body broke off, once its head was read
        try:
            with _opener.open(req, timeout=self.timeout) as resp:
                watch.add_socket(_response_socket(resp))
                status = resp.status
                try:
                    answer = resp.read(limit + 1)
                except TimeoutError:  # a read past the timeout: late, as below
                    answer, broke = b"", late
                except (http.client.HTTPException, OSError, ValueError) as e:
                    # The server was reached: its answer broke off (a chunk
                    # cut short, the connection reset mid-body).
                    answer, broke = b"", str(e) or type(e).__name__
                else:
                    # http.client returns a body cut short of its
                    # Content-Length as it is, without an error.
                    left = resp.length
                    if left and len(answer) <= limit:
                        broke = ("the connection closed with %d of its %d bytes still to "
                                 "come" % (left, len(answer) + left))
        except urllib.error.HTTPError as e:
            watch.add_socket(_response_socket(getattr(e, "fp", None)))
            try:
                answer = e.read(4096)
            except Exception:
                answer = b""
            finally:
                e.close()  # its connection: else left to the garbage collector
            if watch.expired:
                raise _err(late) from None
            if 300 <= e.code < 400:
                raise _err("%s answered HTTP %d, a redirect to %s; redirects are not "
                           "followed: check the base_url"
                           % (where, e.code, (e.headers.get("Location") or "(no Location)"
                                              ).translate(_BLANK_CONTROLS))
                           ) from None
            raise _err("%s answered HTTP %d: %s" % (where, e.code, _server_message(answer))
                       ) from None
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            if (watch.expired or isinstance(reason, TimeoutError)
                    or "timed out" in str(reason)):
                raise _err(late) from None
            raise _err("cannot reach the %s: %s" % (where, reason)) from None
        finally:
            _current.watch = None
            expired = watch.finish()
        if expired:  # a body cut short by the shutdown at the deadline
            raise _err(late)
        if broke is late:
            raise _err(late)
        if broke is not None:
            raise _err("%s: its answer (HTTP %d) broke off: %s" % (where, status, broke))
        if status != 200:
            raise _err("%s answered HTTP %d: %s" % (where, status, _server_message(answer)))
        if len(answer) > limit:
            raise _err("%s: the answer to %d texts is over the cap of %d bytes (lower "
                       "batch_size)" % (where, len(texts), limit))
        return self._parse(answer, len(texts), where)

    def _parse(self, answer, n, where):
        try:
            root = json.loads(answer.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise _err("%s: the answer is not JSON (%s)" % (where, e)) from None
        except RecursionError:  # arrays or objects nested thousands deep
            raise _err("%s: the answer is not embeddings: JSON nested too deep to read"
                       % where) from None
        data = root.get("data") if isinstance(root, dict) else None
        if not isinstance(data, list) and isinstance(root, dict) and root.get(
                "error") is not None:
            # An error object with a 200 (as some proxies answer a quota or
            # a rate limit): its message is the reason, not the missing data.
            raise _err("%s answered HTTP 200 with an error: %s" % (where, _server_message(answer)))
        if not isinstance(data, list):
            raise _err("%s: the answer has no \"data\" array" % where)
        if len(data) != n:
            raise _err("%s: sent %d texts, got %d embeddings" % (where, n, len(data)))
        rows = [None] * n
        dim = self.dimensions or 0
        for k, item in enumerate(data):
            if not isinstance(item, dict):
                raise _err("%s: data[%d]: expected an object" % (where, k))
            idx = item.get("index", k)
            if isinstance(idx, bool) or not isinstance(idx, int) or not 0 <= idx < n:
                raise _err("%s: data[%d].index: expected an integer from 0 to %d"
                           % (where, k, n - 1))
            if rows[idx] is not None:
                raise _err("%s: data[%d]: index %d given twice" % (where, k, idx))
            vec = item.get("embedding")
            if not isinstance(vec, list) or not vec:
                raise _err("%s: data[%d].embedding: expected an array of numbers (a base64 "
                           "encoding is not read)" % (where, k))
            if self.dimensions and len(vec) != self.dimensions:
                raise _err("%s returned vectors of dimension %d, expected %d (dimensions)"
                           % (where, len(vec), self.dimensions))
            if dim and len(vec) != dim:
                raise _err("%s: vectors of differing length: data[%d].embedding has %d "
                           "numbers, data[0].embedding %d" % (where, k, len(vec), dim))
            dim = len(vec)
            for j, x in enumerate(vec):
                if (isinstance(x, bool) or not isinstance(x, (int, float))
                        or not _finite_float(x)):
                    raise _err("%s: data[%d].embedding[%d]: expected a finite number"
                               % (where, k, j))
            rows[idx] = vec
        return rows


def openai_embedder(base_url, model, api_key=None, api_key_env=None, dimensions=None,
                    batch_size=64, timeout=30.0, max_input_chars=MAX_INPUT_CHARS):
    """An OpenAIEmbedder: an embed function over an OpenAI-compatible
    embeddings endpoint; its store id is "openai:" + model."""
    return OpenAIEmbedder(base_url, model, api_key=api_key, api_key_env=api_key_env,
                          dimensions=dimensions, batch_size=batch_size, timeout=timeout,
                          max_input_chars=max_input_chars)
