"""AIOS's routing classes, backed by libllmroute.

The names and arguments follow aios/llm_core/routing.py in AIOS, so that
`from llmroute import RouterStrategy, SequentialRouting, SmartRouting` can
replace AIOS's own import. Both calling conventions AIOS has shipped work:

  - one candidate list for all queries (AIOS's first form):
      SequentialRouting(llm_configs).get_model_idxs(selected_llms, n_queries=1)
      SmartRouting(llm_configs).get_model_idxs(selected_llms, queries, input_token_lengths)
  - one candidate list per query (AIOS's later form, LLMAdapter.execute_llm_syscalls):
      router.get_model_idxs(selected_llm_lists, queries)
    where a query may be a string or a list of chat messages (the last user
    message is the query text, as AIOS's messages_to_query does by default;
    its input tokens are estimated over all its messages). No queries is
    no choices ([]), and None stands for every model, for all queries or
    for one of them.

Both return indices into llm_configs, which may change after construction
(AIOS's adapter appends models it registers at runtime) and may be empty
until then. What differs from AIOS on purpose:
SequentialRouting is round-robin with one running cursor in both calling
conventions (current AIOS returns the first available model of each list;
earlier AIOS keeps its cursor modulo the previous list's length), so its
choices can differ from AIOS's own;
unknown model names raise ValueError instead of being skipped (AIOS drops
them, which shortens its result list) or mapped to index 0; a candidate list
shorter than the previous one never fails (AIOS's cursor can run past it);
prices come from llm_configs (cost_per_input_token, cost_per_output_token;
never from the selected_llms entries, where earlier AIOS read them),
else from litellm's table when litellm is installed, else 0 for a model on
a local backend (LOCAL_BACKENDS, with a warning), and any other smart
candidate without them is refused with a message naming it (AIOS counts a
missing price as 0), but as the only candidate of a get_model_idxs
request, which gets it; a model listed twice among one request's
candidates and (over a store with data, with any embedder, which is not
called for it) a query given as the string "" raise InvalidInput, where a
query given as chat messages with no user text (or a blank last user
message) is ranked on each candidate's store-wide prior, as the gateway
serves it;
with predictor="aios", a tie on the highest quality when no candidate
meets the requirement goes to the cheapest (AIOS's argmax: the first).
Arguments of the wrong type raise InvalidType (an InvalidInput, and a
TypeError); its message, as that of any other bad argument, names the
method and the argument ("SmartRouting.get_model_idxs: selected_llms[0]:
..."), not the lower-level method it was passed on to. A generator serves
as selected_llms, queries or input_token_lengths as its list does.

Threads: every method may be called from several threads at once.
"""
import enum
import hashlib
import itertools
import html.parser
import http.client
import math
import numbers
import operator
import os
import re
import socket
import stat
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Mapping

try:
    import fcntl
except ImportError:  # not on Windows
    fcntl = None

from . import _lib
from .core import (_CURSOR_MAX, _MODEL_KEYS, Config, Router, Store, _b, _config_doc, _field,
                   _NoCopy, _got, _iterable, _number, estimate_tokens,
                   _path, _read_only_property, _tokens, _utf8, _whole, _wrong_type)
from .embed import (OpenAIEmbedder, _response_socket, _Watch, _WatchedHTTP,
                    _WatchedHTTPS)
from .errors import (ConfigError, EmbedError, EmptyInput, Error, Infeasible, InvalidInput,
                     InvalidType, IOFailure, TooBig, UnknownModel)

__all__ = ["RouterStrategy", "SequentialRouting", "SmartRouting", "QueryStore"]


class RouterStrategy(str, enum.Enum):
    """AIOS's strategy names. A str enum, so that RouterStrategy.Smart equals
    both itself (AIOS's Enum form) and "smart" (AIOS's later string form,
    read from its config file); and prints as that string, as AIOS's plain
    class attribute does (in a log line, an f-string, a YAML dump)."""
    Sequential = "sequential"
    Smart = "smart"

    __str__ = str.__str__
    __format__ = str.__format__


def _bad(msg):
    return InvalidInput(msg, code=_lib.LR_EINVAL)


def _bad_type(msg):
    """An argument of the wrong Python type: InvalidType, also a TypeError."""
    return InvalidType(msg, code=_lib.LR_EINVAL)


# The arguments of Router's methods that an AIOS method's arguments become
# (the others keep their names: queries, alpha, budget, capacities).
_ROUTER_ARGS = {"models": "selected_llms", "input_tokens": "input_token_lengths"}


def _renamed(e, where, lower, args=_ROUTER_ARGS):
    """e, an error of the binding raised by the lower-level method `lower`
    ("Router.route_batch") that the AIOS method `where` called, in that
    method's terms, its arguments renamed by `args`: "Router.route_batch:
    input_tokens[0]: ..." becomes "SmartRouting.route_batch:
    input_token_lengths[0]: ...". Call from an except clause, then raise
    it. Messages of the library itself ("query 0: unknown model 'x'") name
    no method: `where` is put before them."""
    if e.message.startswith(lower + ": "):
        rest = e.message[len(lower) + 2:]
        m = re.match(r"\w+", rest)
        if m and m.group() in args:
            rest = args[m.group()] + rest[m.end():]
        e.message = "%s: %s" % (where, rest)
        e.args = (e.message,)
    elif not e.message.startswith(where + ": "):
        e.message = "%s: %s" % (where, e.message)
        e.args = (e.message,)
    return e


def _name_of(llm, where):
    """The model name of a selected_llms entry: a dict with "name", an object
    with a .name (AIOS's LLMConfig), or a plain name. `where` names the
    method and the entry ("SmartRouting.predict: selected_llms[2]")."""
    if isinstance(llm, str):
        name = llm
    elif isinstance(llm, Mapping):
        name = llm.get("name")
    else:
        name = getattr(llm, "name", None)
    if not isinstance(name, str):
        raise _bad_type("%s: expected a model name (a str, or a dict with \"name\"), got %s"
                        % (where, _got(llm)))
    if "\0" in name:
        raise _bad("%s: %r: a NUL byte inside a model name would cut it short in C"
                   % (where, name))
    _b(name, where)  # raises InvalidInput for a str UTF-8 cannot encode
    return name


def _selection(selected, where, arg="selected_llms"):
    """selected_llms as given, as a list when it is another iterable (a
    generator, say), or InvalidInput naming it when it is no list of models.
    A lone name, dict or object with a .name is one model, as in _names.
    A set (or frozenset) is refused, InvalidType as Router refuses it: its
    order, which a round-robin and the first-listed tie-break follow,
    changes with the hash seed from one run to the next."""
    if selected is None or isinstance(selected, (str, Mapping, list, tuple)):
        return selected
    if isinstance(selected, (set, frozenset)):
        raise _bad_type("%s: %s: expected a list of models, got a %s, whose order changes "
                        "from one run to the next (with the hash seed); give a list "
                        "(sorted(...), say)" % (where, arg, type(selected).__name__))
    if not isinstance(selected, (bytes, bytearray)) and _iterable(selected):
        return list(selected)
    if isinstance(getattr(selected, "name", None), str):
        return [selected]
    raise _bad_type("%s: selected_llms: expected a list of models (names, or dicts with "
                    "\"name\"), a list of such lists (one per query), or None for every "
                    "configured model; got %s" % (where, type(selected).__name__))


def _is_per_query(selected):
    """True for AIOS's later form: a list of candidate lists, one per query
    (any entry a list: None among them is every model for its query). A
    list of None alone ([None] for one query) is that form too: None is no
    model, so it can only stand for a query's candidates (every model)."""
    if selected is None or isinstance(selected, (str, Mapping)):
        return False
    return (any(isinstance(s, (list, tuple)) for s in selected)
            or (len(selected) > 0 and all(s is None for s in selected)))


def _names(selected, where, arg="selected_llms"):
    """Candidate names for one request; None means every configured model.
    `where` names the method, `arg` the argument ("selected_llms[3]" for
    one of a list per query)."""
    if selected is None:
        return None
    if isinstance(selected, (str, Mapping)):
        selected = [selected]
    try:  # the usual case, a list of dicts with string names, in one pass
        names = tuple([llm["name"] for llm in selected])
        joined = "".join(names)
        if (all(type(n) is str for n in names) and "\0" not in joined
                and (joined.isascii() or _utf8(joined))):
            if names:
                return names
        else:
            names = None
    except (TypeError, KeyError, IndexError):
        names = None
    if names is None:
        names = tuple(_name_of(llm, "%s: %s[%d]" % (where, arg, i))
                      for i, llm in enumerate(selected))
    if not names:
        raise EmptyInput("%s: %s is empty: give at least one model, or None for all "
                         "configured models" % (where, arg), code=_lib.LR_EEMPTY)
    return names


def _candidate_lists(selected, n, where, arg="selected_llms"):
    """(models argument for Router.route_batch, per_query flag) for n
    queries; arg is the name the caller gave the candidates under."""
    if _is_per_query(selected):
        if len(selected) != n:
            raise _bad("%s: %s has %d candidate lists for %d queries"
                       % (where, arg, len(selected), n))
        for i, s in enumerate(selected):
            if s is not None and not isinstance(s, (list, tuple)):
                raise _bad_type("%s: %s[%d]: expected a list of models or None (one list per "
                                "query, as the others are), got %s"
                                % (where, arg, i, _got(s)))
        if all(s is None for s in selected):
            return None, False  # every model for every query
        return [_names(s, where, "%s[%d]" % (arg, i)) for i, s in enumerate(selected)], True
    return _names(selected, where, arg), False


def _query_text(q, i, where):
    """A query's text: a string, or chat messages (the last user message)."""
    if q is None or isinstance(q, str):
        return q
    if isinstance(q, Mapping):
        q = [q]
    if isinstance(q, (list, tuple)):
        for msg in reversed(q):
            if isinstance(msg, Mapping) and msg.get("role") == "user":
                content = msg.get("content")
                if isinstance(content, list):  # content parts
                    content = "\n".join(_part_texts(content, i, where))
                if content is not None and not isinstance(content, str):
                    raise _bad_type("%s: queries[%d]: the last user message's content: "
                                    "expected a string or a list of content parts, got %s"
                                    % (where, i, type(content).__name__))
                return (content or "").strip()
        return ""
    raise _bad_type("%s: queries[%d]: expected a string or a list of chat messages, got %s"
                    % (where, i, type(q).__name__))


def _message_texts(messages):
    """The texts of every message of a chat (a str content, or the "text"
    parts of a list of content parts); anything else counts no text."""
    if isinstance(messages, Mapping):
        messages = [messages]
    texts = []
    for msg in messages:
        content = msg.get("content") if isinstance(msg, Mapping) else None
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, (list, tuple)):
            texts.extend(p["text"] for p in content if isinstance(p, Mapping)
                         and p.get("type") == "text" and isinstance(p.get("text"), str))
    return texts


def _chat_tokens(q):
    """The estimated input tokens of a query given as chat messages: the
    contents of all its messages, as the request sends (and is billed for)
    them all, where the query text is its last user message alone; None
    for a query given as a string (the library estimates it from the
    text)."""
    if q is None or isinstance(q, str):
        return None
    return estimate_tokens("\n".join(_message_texts(q)))


def _part_texts(parts, i, where):
    """The texts of a message's "text" content parts (queries[i]'s)."""
    texts = []
    for j, p in enumerate(parts):
        if isinstance(p, Mapping) and p.get("type") == "text":
            t = p.get("text", "")
            if not isinstance(t, str):
                raise _bad_type("%s: queries[%d]: the last user message's content[%d]: "
                                "\"text\" is %s; expected a string"
                                % (where, i, j, "None" if t is None else "a " + type(t).__name__))
            texts.append(t)
    return texts


def _count_or_same(x):
    """x as an int when it is an integer of another type (a numpy integer,
    say) and no sequence; else x itself."""
    if not isinstance(x, int) and not hasattr(x, "__len__"):
        try:
            return operator.index(x)
        except TypeError:
            pass
    return x


def _length_list(where, lengths):
    """input_token_lengths as a list, or None to estimate them: one count
    (an int or a numpy integer) is a list of one; a str, a mapping or what
    cannot be iterated is refused."""
    if lengths is None:
        return None
    lengths = _count_or_same(lengths)
    if isinstance(lengths, int):
        return [lengths]
    if isinstance(lengths, (str, bytes, bytearray, Mapping)) or not _iterable(lengths):
        raise _bad_type("%s: input_token_lengths: expected one count per query (a list), or None "
                        "to estimate them, got %s" % (where, type(lengths).__name__))
    return list(lengths)


def _n_picks(n_queries, where):
    """How many picks n_queries asks for: a count (an int), or the queries
    themselves (one pick each: a list, a tuple, a generator). A str, a float
    and True or False are refused: n_queries="3" or 3.0 is no count, and a
    lone str would be one pick here but one per character in AIOS."""
    if isinstance(n_queries, (str, bytes, bytearray, bool, float)):
        raise _bad_type("%s: n_queries: expected a count (an int) or a list of queries, got %s"
                        % (where, _got(n_queries)))
    n_queries = _count_or_same(n_queries)
    if isinstance(n_queries, int):
        if not 0 <= n_queries <= _MAX_PICKS:
            raise _bad("%s: n_queries: expected a count from 0 to %d, got %d"
                       % (where, _MAX_PICKS, n_queries))
        return n_queries
    if isinstance(n_queries, Mapping):
        raise _bad_type("%s: n_queries: expected a count (an int) or a list of queries, got %s"
                        % (where, type(n_queries).__name__))
    try:
        return len(n_queries)
    except TypeError:
        pass
    if _iterable(n_queries):  # the queries as a generator, as SmartRouting takes them
        return sum(1 for _ in n_queries)
    raise _bad_type("%s: n_queries: expected a count (an int) or a list of queries, got %s"
                    % (where, type(n_queries).__name__))


_UNSET = object()

# The most picks one get_model_idxs call makes (Router.route_batch's n).
_MAX_PICKS = 2 ** 31


def _alias(where, name, value, alias, alias_value, default):
    """One argument that AIOS names `alias` and this binding `name`: the
    value given under either name (never both), else default."""
    if value is not _UNSET and alias_value is not _UNSET:
        raise TypeError("%s: got both %s and %s, which are the same argument (AIOS names it %s)"
                        % (where, name, alias, alias))
    if value is not _UNSET:
        return value
    if alias_value is not _UNSET:
        return alias_value
    return default


def _config_number(x, what):
    """_number() for an argument that goes into the configuration: a NaN is
    ConfigError there, as a value out of its range is (the library's
    configuration check), rather than InvalidInput."""
    if isinstance(x, float) and x != x:
        raise ConfigError("%s: expected a number, got NaN" % what, code=_lib.LR_ECONFIG)
    return _number(x, what)


def _config(llm_configs, router, where):
    """The Config of an AIOS class's llm_configs (and its router object),
    every message about them in that class's terms: the library's
    "models[2].name: ..." is "SmartRouting: llm_configs[2].name: ...", and
    "router.alpha: ..." is "SmartRouting: alpha: ..." (the argument)."""
    doc = _config_doc(llm_configs, router, where, where + ": ")
    try:
        return Config(doc)
    except Error as e:
        m = e.message
        if m.startswith("router."):
            m = m[len("router."):]
        m = re.sub(r"^models(?=[:\[])|\bmodels(?=\[)", "llm_configs", m)
        e.message = "%s: %s" % (where, m)
        e.args = (e.message,)
        raise


def _open_store(path, embedder, max_records, embed, where):
    """QueryStore's Store (path None: in memory), its arguments named for
    the AIOS method `where` in messages."""
    if path is not None:
        _path(path, where + ": path")
    if embedder is not None and not isinstance(embedder, str):
        raise _wrong_type(where + ": embedder", "a str or None", embedder)
    if embed is not None and not callable(embed):
        raise _wrong_type(where + ": embed", "a callable (a list of str -> one vector per "
                          "text)", embed)
    max_records = _whole(max_records, where + ": max_records", 0, 2 ** 63 - 1)
    try:
        return Store(":memory:" if path is None else path, embedder=embedder,
                     max_records=max_records, embed=embed)
    except InvalidInput as e:
        if e.message.startswith("embedder: "):  # what the embedder id is for
            e.message = "%s: %s" % (where, e.message)
            e.args = (e.message,)
        raise


# ==== Prices from litellm ====

_PRICE_KEYS = ("cost_per_input_token", "cost_per_output_token")
_LITELLM_KEYS = ("input_cost_per_token", "output_cost_per_token")


def _litellm_names(name, backend):
    """The keys litellm.model_cost is searched under for a model, in
    order: backend + "/" + name when a backend is given ("azure" +
    "gpt-4" -> "azure/gpt-4", "ollama" + "llama3" -> "ollama/llama3"),
    then the name as given, then the name without its provider prefix
    ("bedrock/claude-3" -> "claude-3"), which _litellm_price takes with a
    warning unless litellm files that entry under the same provider."""
    names = []
    if isinstance(backend, str) and backend and not name.startswith(backend + "/"):
        names.append(backend + "/" + name)
    names.append(name)
    if "/" in name:
        names.append(name.split("/", 1)[1])
    return [n for i, n in enumerate(names) if n and n not in names[:i]]


def _litellm_price(cost_map, name, backend):
    """(input, output) price per token from litellm's table, or None. A
    price found only under the name without its provider prefix is
    another provider's unless litellm's entry names the same provider
    ("litellm_provider"): it is used, with a RuntimeWarning naming both
    names."""
    stripped = name.split("/", 1)[1] if "/" in name else None
    for key in _litellm_names(name, backend):
        entry = cost_map.get(key) if isinstance(cost_map, Mapping) else None
        if not isinstance(entry, Mapping):
            continue
        prices = tuple(entry.get(k) for k in _LITELLM_KEYS)
        if all(isinstance(p, numbers.Real) and not isinstance(p, bool) and p == p
               and 0 <= p < math.inf for p in prices):
            if key == stripped and key != name:
                provider = name.split("/", 1)[0]
                if entry.get("litellm_provider") != provider:
                    warnings.warn(
                        "llmroute: litellm's price table has no entry %r; the price of %r "
                        "(litellm_provider %r) is used for it, which may be another "
                        "provider's price. Give cost_per_input_token and "
                        "cost_per_output_token in its llm_config to set it."
                        % (name, key, entry.get("litellm_provider")), RuntimeWarning,
                        stacklevel=_caller_level())
            return float(prices[0]), float(prices[1])
    return None


# The backends AIOS serves from a local server or process (its adapter's
# "huggingface" | "hflocal" and "vllm" | "sglang" cases, and "ollama",
# which it reaches through litellm), with the names litellm and llama.cpp
# go by: a model on one of them costs nothing per token.
LOCAL_BACKENDS = ("ollama", "ollama_chat", "vllm", "hosted_vllm", "sglang", "huggingface",
                  "hflocal", "llamacpp", "llama.cpp", "llama_cpp")


def _is_local(backend):
    return isinstance(backend, str) and backend.lower() in LOCAL_BACKENDS


def _priced_configs(llm_configs, where):
    """(llm_configs with the prices they lack filled from litellm's table,
    {name: why it still has none}, {name: (backend, why)} of the models on a
    local backend priced 0). AIOS looks every price up in litellm; this
    binding takes a price given in an llm_config first and looks up only
    the ones missing. litellm is imported only when some price is missing;
    without it, or without the model in its table, a model on a local
    backend (LOCAL_BACKENDS) gets the price 0 it costs, and any other stays
    unpriced, the reason kept for the message when it is a candidate."""
    if isinstance(llm_configs, (str, bytes, Mapping)) or not _iterable(llm_configs):
        return llm_configs, {}, {}  # _config says what is wrong with it
    llm_configs = list(llm_configs)
    out, unpriced, free = [], {}, {}
    cost_map = None
    litellm_error = None
    for c in llm_configs:
        cfg = {"name": c} if isinstance(c, str) else c
        name = _field(cfg, "name") if cfg is not None else None
        missing = [k for k in _PRICE_KEYS if _field(cfg, k) is None] if isinstance(
            name, str) else []
        if not missing:
            out.append(c)
            continue
        if cost_map is None and litellm_error is None:
            try:
                import litellm
                cost_map = getattr(litellm, "model_cost", None)
                if not isinstance(cost_map, Mapping):
                    litellm_error = "litellm has no model_cost price table"
            except Exception as e:  # ImportError, or litellm failing to import
                litellm_error = "litellm is not installed (%s: %s)" % (type(e).__name__, e)
        prices = None
        if litellm_error is None:
            prices = _litellm_price(cost_map, name, _field(cfg, "backend"))
            if prices is None:
                unpriced[name] = ("litellm's price table (litellm.model_cost) has no "
                                  "input_cost_per_token and output_cost_per_token for %s"
                                  % " or ".join(repr(n) for n in _litellm_names(
                                      name, _field(cfg, "backend"))))
        else:
            unpriced[name] = litellm_error
        if prices is None:
            backend = _field(cfg, "backend")
            if not _is_local(backend):
                out.append(c)
                continue
            free[name] = (backend, unpriced.pop(name, ""))
            prices = (0.0, 0.0)
        d = {k: _field(cfg, k) for k in _MODEL_KEYS + ("hostname",)
             if _field(cfg, k) is not None}
        for k, p in zip(_PRICE_KEYS, prices):
            d.setdefault(k, p)
        out.append(d)
    return out, unpriced, free


# ==== llm_configs that change after construction ====
#
# AIOS's adapter registers models at runtime: it appends an LLMConfig to
# its list and sets router.llm_configs to the list (the same object), then
# routes to the new model. So each call of an AIOS class compares
# llm_configs with a copy of the list its library configuration was built
# from, entry by entry (one list comparison in C: the same object, or an
# equal one), and builds the configuration and router again only when they
# differ. A field changed in place on an entry (a name or a price set on
# the same dict) is not seen: replace the entry (llm_configs[i] =
# new_config) for that.


class _Models:
    """One version of an AIOS class's llm_configs and what was built from
    it: `config` (None while llm_configs is empty) and the class's own
    fields. Replaced whole, never changed after it is published, but for
    the counts and caches its fields name."""

    def __init__(self, source):
        # A copy of the same type, so that comparing llm_configs with it is
        # one list (or tuple) comparison.
        self.entries = type(source)(source)
        self.config = None


def _unchanged(m, configs):
    """Whether llm_configs (configs) still holds the entries m was built
    from: each the same object (which the comparison takes without
    calling its __eq__) or an equal one. A list never equals a tuple, so
    a list given for a tuple (or the other way) is a change."""
    return m is not None and configs == m.entries


def _as_configs(llm_configs):
    """llm_configs as kept: a list or tuple as it is (so that changes to
    it in place are seen), another iterable (a generator) as a list of its
    entries; anything else as it is, for the configuration to refuse."""
    if isinstance(llm_configs, (list, tuple, str, bytes, Mapping)) or not _iterable(llm_configs):
        return llm_configs
    return list(llm_configs)


def _no_models(where):
    return EmptyInput("%s: llm_configs is empty: there is no model to route to yet; register "
                      "one (append its config to llm_configs, or set router.llm_configs to a "
                      "list with it)" % where, code=_lib.LR_EEMPTY)


class _ModelsOwner(_NoCopy):
    """llm_configs, read again by each call (see above). The class defines
    _build(configs, previous _Models or None) -> _Models, and its __init__
    sets _models (None) and _lock before it sets llm_configs. Not copied
    (_NoCopy): a copy would share the routers, the store and the lock."""

    @property
    def llm_configs(self):
        """The model configurations routed over: a list AIOS's adapter may
        append to, or replace, after construction; each call sees the
        change."""
        return self._llm_configs

    @llm_configs.setter
    def llm_configs(self, value):
        self._llm_configs = _as_configs(value)

    def _state(self):
        """The current _Models, built again when llm_configs changed."""
        m = self._models
        configs = self._llm_configs
        if _unchanged(m, configs):
            return m
        with self._lock:
            m = self._models
            configs = self._llm_configs
            if not _unchanged(m, configs):
                # Built from a copy taken first, which the new _Models keeps
                # as its entries: a model appended by another thread while
                # this one builds differs from them, so the next call builds
                # again, rather than being in entries and not in the config.
                if isinstance(configs, (list, tuple)):
                    configs = type(configs)(configs)
                m = self._build(configs, m)
                self._models = m
            return m

    @property
    def config(self):
        """The library configuration of the current llm_configs (None while
        it is empty)."""
        return self._state().config


class _SequentialModels(_Models):
    """A SequentialRouting's _Models, with its router and, while there is
    none (llm_configs empty), the round-robin cursor to carry over to the
    next."""

    def __init__(self, source):
        super().__init__(source)
        self.router = None
        self.cursor = 0

    def cursor_now(self):
        """The round-robin cursor: the router's, else the one carried (also
        when the caller closed the router, through SequentialRouting.router:
        its turns since are lost, and routing goes on over the next)."""
        if self.router is not None:
            try:
                return self.router.sequential_cursor
            except InvalidInput:  # the router is closed
                pass
        return self.cursor


class SequentialRouting(_ModelsOwner):
    """Round-robin over the selected models, with AIOS SequentialRouting's
    API (names, arguments, both calling conventions), not always its
    choices: current AIOS's get_model_idxs(selected_llm_lists, queries)
    takes the first available model of each list and never moves its
    cursor, and earlier AIOS keeps its cursor modulo the previous list's
    length (README, "What differs").

    One cursor per instance (copies are refused: see _NoCopy), advanced
    once per query with two or more candidates and taken modulo the
    current candidate list's length; safe under concurrency (an atomic
    counter in C). llm_configs may change after construction (models
    registered at runtime, as AIOS's adapter does): the router is rebuilt
    over the new list at the next call and the cursor carries over exactly
    (the new router is given the old one's). llm_configs may be empty
    until a model is registered; a call meanwhile raises EmptyInput.
    """

    _WHERE = "SequentialRouting"
    _copy_hint = ("share this one (it may be called from several threads at once), or build "
                  "a new SequentialRouting(llm_configs) for a round-robin cursor of its own")

    def __init__(self, llm_configs):
        self._lock = threading.Lock()
        self._models = None
        self.llm_configs = llm_configs
        self._state()

    def _build(self, configs, previous):
        if not isinstance(configs, (list, tuple)) or configs:
            # Refuses anything but a list of model configurations.
            config = _config(configs, {"strategy": "sequential"}, self._WHERE)
        m = _SequentialModels(configs)
        if m.entries:
            m.config = config
            m.router = Router(config, strategy="sequential")
        if previous is not None:
            # The new router's cursor starts at 0: it is given the last
            # one's, so the round-robin goes on where it was, for candidate
            # lists of every length. A call still routing on the last
            # router (it took it before this rebuild) may draw a ticket
            # after the read, which the new router then draws again.
            m.cursor = previous.cursor_now()
            if m.router is not None:
                m.router.sequential_cursor = m.cursor
        return m

    @property
    def router(self):
        """The library router over the current llm_configs (None while it
        is empty)."""
        return self._state().router

    @property
    def idx(self):
        """AIOS's round-robin position (its SequentialRouting.idx): the
        cursor, the ticket the next request of two or more candidates
        takes, which gets candidate number idx % n of its n. AIOS keeps it
        modulo the last list's length; here it counts on, so idx %
        len(selected_llms) is AIOS's value. Setting it (a whole number from
        0 to 2**64 - 1; idx = 0 restarts the round-robin) sets the cursor,
        which carries over to a router rebuilt for a new llm_configs."""
        return self._state().cursor_now()

    @idx.setter
    def idx(self, value):
        value = _whole(value, "SequentialRouting: idx", 0, _CURSOR_MAX)
        while True:
            m = self._state()
            if m.router is not None:
                m.router.sequential_cursor = value
            else:
                m.cursor = value
            # A rebuild between the two lines above read the cursor before
            # it was set: set it again on the new router.
            if self._models is m:
                return

    def get_model_idxs(self, selected_llms=_UNSET, n_queries=_UNSET, *,
                       selected_llm_lists=_UNSET, queries=_UNSET):
        """Indices into llm_configs, one per query.

        get_model_idxs(selected_llms, n_queries=1): n_queries picks from one
        candidate list. get_model_idxs(selected_llm_lists, queries): one pick
        per query from its own list. selected_llms=None means all models.
        AIOS's keyword names (selected_llm_lists=, queries=) are taken as
        well as this binding's; they name the same two arguments. No
        queries (n_queries=0, queries=[]) is no picks: [].
        """
        arg = "selected_llm_lists" if selected_llm_lists is not _UNSET else "selected_llms"
        if selected_llm_lists is not _UNSET or queries is not _UNSET:
            where = "SequentialRouting.get_model_idxs"
            selected_llms = _alias(where, "selected_llms", selected_llms,
                                   "selected_llm_lists", selected_llm_lists, None)
            n_queries = _alias(where, "n_queries", n_queries, "queries", queries, 1)
        else:
            if selected_llms is _UNSET:
                selected_llms = None
            if n_queries is _UNSET:
                n_queries = 1
        m = self._models
        if self._llm_configs != m.entries:  # _unchanged(), inlined for this common call
            m = self._state()
        # The usual call, one query over a list of dicts: straight through.
        if (type(n_queries) is int and n_queries == 1 and type(selected_llms) is list
                and selected_llms and type(selected_llms[0]) is dict and m.router is not None):
            try:
                key = tuple([llm["name"] for llm in selected_llms])
            except (KeyError, TypeError):
                key = None
            # Names are str here (route_index() also takes bytes): anything
            # else goes the long way, whose checks refuse it.
            for name in key or ():
                if type(name) is not str:
                    key = None
                    break
            if key is not None:
                try:
                    got = [m.router.route_index(key)]
                except Error as e:
                    # A name that is no str, or holds a NUL: the checks
                    # below name it in this method's terms.
                    if not e.message.startswith("Router.route_index: "):
                        raise _renamed(e, "SequentialRouting.get_model_idxs",
                                       "Router.route_index")
                else:
                    return got
        where = "SequentialRouting.get_model_idxs"
        n_queries = _n_picks(n_queries, where)
        selected_llms = _selection(selected_llms, where, arg)
        try:
            if _is_per_query(selected_llms):
                models, per_query = _candidate_lists(selected_llms, n_queries, where, arg)
                if n_queries == 0:
                    return []
                if m.router is None:
                    raise _no_models(where)
                if n_queries == 1:
                    return [m.router.route_index(models[0] if per_query else None)]
                return m.router.route_indices(models=models, n=n_queries)
            if n_queries == 0:
                if selected_llms is not None and not (
                        isinstance(selected_llms, (list, tuple)) and not selected_llms):
                    _names(selected_llms, where, arg)
                return []
            names = _names(selected_llms, where, arg)
            if m.router is None:
                raise _no_models(where)
            if n_queries == 1:
                return [m.router.route_index(names)]
            return m.router.route_indices(models=names, n=n_queries)
        except Error as e:
            lower = ("Router.route_index" if e.message.startswith("Router.route_index: ")
                     else "Router.route_indices")
            raise _renamed(e, where, lower, {"models": arg, "n": "n_queries"})


# ==== bootstrap_url: AIOS's history corpus, from a file or a download ====

# AIOS's config gives bootstrap_url as a Google Drive share link, which
# AIOS fetches with gdown. A share link names a page, not the file: its
# direct-download form is this, with the file's id.
_DRIVE_DOWNLOAD = "https://drive.google.com/uc?export=download&id=%s"
_DRIVE_LINKS = (re.compile(r"^https?://drive\.google\.com/file/d/([\w-]+)"),
                re.compile(r"^https?://drive\.google\.com/(?:open|uc)\?(?:.*&)?id=([\w-]+)"))

# A download larger than this is refused rather than filling the disk.
BOOTSTRAP_MAX_BYTES = 1 << 30


def bootstrap_download_url(url):
    """The URL bootstrap_url is downloaded from: a Google Drive share link
    ("https://drive.google.com/file/d/ID/view", "...open?id=ID") in its
    direct-download form, any other http(s) URL as it is."""
    for pattern in _DRIVE_LINKS:
        m = pattern.match(url)
        if m:
            return _DRIVE_DOWNLOAD % m.group(1)
    return url


class _DriveConfirm(html.parser.HTMLParser):
    """The form of Google Drive's "can't scan this file for viruses" page,
    which stands before a large file: its action and hidden fields."""

    def __init__(self):
        super().__init__()
        self.action = None
        self.fields = {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form" and self.action is None and a.get("action"):
            self.action = a["action"]
        elif tag == "input" and a.get("type") == "hidden" and a.get("name"):
            self.fields[a["name"]] = a.get("value") or ""


class _DownloadFailed(Exception):
    pass


# Google Drive's hosts: only a page from one of them is searched for the
# virus-scan form, and only a form whose action is https on one of them
# is followed.
_DRIVE_HOSTS = ("drive.google.com", "drive.usercontent.google.com", "docs.google.com")
_DRIVE_FORM_SCHEMES = ("https",)

# The longest bootstrap_timeout taken: a day.
BOOTSTRAP_MAX_TIMEOUT = 86400.0


def _host(url):
    try:
        return (urllib.parse.urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


class _HttpOnlyRedirect(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to another http(s) URL: urllib's own handler
    also follows one to ftp://."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urllib.parse.urlsplit(newurl).scheme.lower() not in ("http", "https"):
            raise _DownloadFailed("HTTP %d redirects to %s, which is no http(s) URL"
                                  % (code, newurl))
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _opener(watch):
    """An opener for http and https alone: no file://, ftp:// or data:
    handler, and redirects only to http(s); its connections go to watch."""
    opener = urllib.request.OpenerDirector()
    http_handler, https_handler = _WatchedHTTP(), _WatchedHTTPS()
    http_handler.watch = https_handler.watch = watch
    for h in (urllib.request.ProxyHandler(), urllib.request.UnknownHandler(),
              http_handler, https_handler,
              urllib.request.HTTPDefaultErrorHandler(), _HttpOnlyRedirect(),
              urllib.request.HTTPErrorProcessor()):
        opener.add_handler(h)
    return opener


def _get(url, deadline, timeout, out):
    """Write the body at url to the open file out, all of it before the
    time.monotonic() deadline; its Content-Type. A body shorter than its
    Content-Length, or a chunked body cut short, fails."""
    if urllib.parse.urlsplit(url).scheme.lower() not in ("http", "https"):
        raise _DownloadFailed("%s is no http(s) URL" % url)
    watch = _Watch(deadline)
    timer = threading.Timer(max(0.0, deadline - time.monotonic()), watch.expire)
    timer.daemon = True
    timer.start()
    try:
        return _fetch(url, deadline, timeout, out, watch)
    except _DownloadFailed:
        if watch.expired:  # the failure of a connection shut at the deadline
            raise _DownloadFailed("no answer within %g s" % timeout) from None
        raise
    finally:
        timer.cancel()


def _fetch(url, deadline, timeout, out, watch):
    """_get's download, its connections handed to watch."""
    late = "no answer within %g s" % timeout

    def left():
        t = deadline - time.monotonic()
        if t <= 0:
            raise _DownloadFailed(late)
        return t

    req = urllib.request.Request(url, headers={"User-Agent": "llmroute-python"})
    try:
        with _opener(watch).open(req, timeout=left()) as resp:
            ctype = resp.headers.get("Content-Type", "")
            length = resp.headers.get("Content-Length")
            try:
                length = int(length) if length is not None else None
            except ValueError:
                raise _DownloadFailed("Content-Length %r is no number" % length) from None
            sock = _response_socket(resp)
            total = 0
            while True:
                t = left()
                if sock is not None:
                    sock.settimeout(t)
                chunk = resp.read1(1 << 16)
                if not chunk:
                    break
                total += len(chunk)
                if total > BOOTSTRAP_MAX_BYTES:
                    raise _DownloadFailed("larger than %d bytes" % BOOTSTRAP_MAX_BYTES)
                out.write(chunk)
            left()
            if length is not None and total != length:
                raise _DownloadFailed("the connection closed after %d of the %d bytes its "
                                      "Content-Length gives" % (total, length))
            return ctype
    except urllib.error.HTTPError as e:
        raise _DownloadFailed("HTTP %d %s" % (e.code, e.reason)) from None
    except urllib.error.URLError as e:
        reason = e.reason
        if isinstance(reason, socket.timeout):
            reason = late
        raise _DownloadFailed(str(reason)) from None
    except (socket.timeout, TimeoutError):
        raise _DownloadFailed(late) from None
    except http.client.IncompleteRead as e:
        raise _DownloadFailed("the body was cut short (%d bytes of a chunk missing)"
                              % (e.expected or 0)) from None
    except http.client.HTTPException as e:  # a malformed status line or header
        raise _DownloadFailed("%s: %s" % (type(e).__name__, e)) from None
    except (OSError, ValueError, OverflowError) as e:  # a reset connection, a bad URL
        raise _DownloadFailed("%s: %s" % (type(e).__name__, e)) from None


def _download(url, tmp, timeout):
    """Download url into the file tmp within timeout seconds in all, past
    Google Drive's virus-scan page once (a form on a Drive page whose
    action is https on a Google host)."""
    deadline = time.monotonic() + timeout
    with open(tmp, "wb") as out:
        ctype = _get(url, deadline, timeout, out)
    if "text/html" in ctype:
        next_url = None
        if _host(url) in _DRIVE_HOSTS:
            with open(tmp, "rb") as f:
                page = f.read(1 << 20).decode("utf-8", "replace")
            form = _DriveConfirm()
            form.feed(page)
            if form.action and form.fields.get("id"):
                action = urllib.parse.urljoin(url, form.action)
                if (urllib.parse.urlsplit(action).scheme.lower() in _DRIVE_FORM_SCHEMES
                        and _host(action) in _DRIVE_HOSTS):
                    next_url = "%s?%s" % (action, urllib.parse.urlencode(form.fields))
        if next_url is not None:
            with open(tmp, "wb") as out:
                ctype = _get(next_url, deadline, timeout, out)
        if "text/html" in ctype:
            raise _DownloadFailed("the answer is a web page (Content-Type %s), not the "
                                  "data; is the file shared for anyone with the link?"
                                  % ctype)


def _cache_folder():
    """The folder of this user's own (mode 0700) in the temporary
    directory that keeps the downloads for stores in memory."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    folder = os.path.join(tempfile.gettempdir(), "llmroute-%d" % uid)
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        st = os.lstat(folder)
    except OSError as e:
        raise _DownloadFailed("no cache folder for the download: %s: %s"
                              % (folder, e.strerror or e)) from None
    if hasattr(os, "getuid"):
        if not stat.S_ISDIR(st.st_mode):
            why = "it is no folder"
        elif st.st_uid != uid:
            why = "it belongs to another user (uid %d)" % st.st_uid
        elif st.st_mode & 0o077:
            why = "others may use it (mode %o)" % (st.st_mode & 0o777)
        else:
            why = None
        if why:
            raise _DownloadFailed(
                "the cache folder %s is refused: %s, so another user could put a file in "
                "the download's place. Remove it, or give the store a file (store_path=, "
                "path=), beside which the download is kept" % (folder, why))
    return folder


def _bootstrap_cache(url, store_path):
    """Where the download of url is kept: beside the store file, or, for a
    store in memory, in a folder of this user's own (mode 0700) in the
    temporary directory, where no other user can put a file in its place;
    one file per URL."""
    name = "llmroute-bootstrap-%s.json" % hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    if store_path is not None and os.fsdecode(store_path) != ":memory:":
        return os.path.join(os.path.dirname(os.path.abspath(os.fsdecode(store_path))), name)
    return os.path.join(_cache_folder(), name)


def _bootstrap_timeout(value, where):
    """bootstrap_timeout as a float: a finite number of seconds > 0, at
    most BOOTSTRAP_MAX_TIMEOUT (a day)."""
    t = _number(value, where + ": bootstrap_timeout")
    if not 0 < t <= BOOTSTRAP_MAX_TIMEOUT:
        raise _bad("%s: bootstrap_timeout: expected a number of seconds > 0 and at most %g "
                   "(a day), got %r" % (where, BOOTSTRAP_MAX_TIMEOUT, value))
    return t


def _bootstrap_source(url, where):
    """(local path or None, http(s) URL or None) that bootstrap_url names;
    InvalidType or InvalidInput naming it when it is no path or no URL of
    a kind taken. Checked whether or not the store is empty."""
    if url is None or url == "":
        return None, None
    if not isinstance(url, (str, os.PathLike)):
        raise _bad_type("%s: bootstrap_url: expected a URL or a path to a local file (a str), "
                        "got %s" % (where, _got(url)))
    path = os.fspath(url)
    if not isinstance(path, str):
        raise _bad_type("%s: bootstrap_url: expected a URL or a path to a local file (a str), "
                        "got %s" % (where, _got(path)))
    if path.startswith("file://"):
        return urllib.request.url2pathname(urllib.parse.urlparse(path).path), None
    if re.match(r"^https?://", path, re.I):
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:
            raise _bad("%s: bootstrap_url: %r: a URL cannot hold a lone surrogate"
                       % (where, path)) from None
        return None, path
    if "://" in path:
        raise _bad("%s: bootstrap_url: %r: expected an http://, https:// or file:// URL, or a "
                   "local path" % (where, url))
    return path, None


class _StoreLock:
    """An exclusive lock between processes (fcntl.flock) on a file beside
    a store file, held while its bootstrap checks that the store is empty
    and imports: so that processes bootstrapping one store import once.
    Nothing for a store in memory, or where fcntl is missing."""

    def __init__(self, store_path, where):
        self.where = where
        self.lock_path = None
        if store_path is not None and os.fsdecode(store_path) != ":memory:" and fcntl:
            self.lock_path = os.fsdecode(store_path) + ".bootstrap-lock"
        self.fd = None

    def __enter__(self):
        if self.lock_path is not None:
            try:
                self.fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as e:
                raise IOFailure("%s: bootstrap_url: cannot open the lock file %s: %s"
                                % (self.where, self.lock_path, e.strerror or e),
                                code=_lib.LR_EIO) from None
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)  # releases the lock
            self.fd = None


def _bootstrap(store, url, store_path, timeout, where):
    """Import AIOS's bootstrap corpus (a JSON list, or JSONL, of records in
    its data format; every record, whatever its "split", as AIOS's current
    add_data does) into the QueryStore `store` if it is empty. url: a local
    path, a file:// URL, or an http(s) URL, downloaded once into a cache
    file (_bootstrap_cache) and read from there after. The cache file is
    only ever a complete download that imported: it is written under a
    temporary name in its folder and renamed into place after."""
    path, remote_url = _bootstrap_source(url, where)
    if path is None and remote_url is None:
        return
    with _StoreLock(store.path, where):
        if store.path is not None:
            store.refresh()  # another process may have imported under the lock
        if store.count() != 0:
            return
        if remote_url is None:
            _import_local(store, path, where)
            return
        remote = bootstrap_download_url(remote_url)
        named = remote if remote == remote_url else "%s (from %s)" % (remote, remote_url)
        tmp = None
        try:
            cache = _bootstrap_cache(remote_url, store.path)
            if not os.path.exists(cache):
                folder = os.path.dirname(cache)
                try:
                    fd, tmp = tempfile.mkstemp(prefix=".llmroute-bootstrap-", dir=folder)
                    os.close(fd)
                except OSError as e:
                    raise _DownloadFailed("cannot write a file in %s: %s"
                                          % (folder, e.strerror or e)) from None
                _download(remote, tmp, timeout)
        except _DownloadFailed as e:
            if tmp is not None:
                _unlink(tmp)
            raise IOFailure("%s: bootstrap_url: downloading %s failed: %s"
                            % (where, named, e), code=_lib.LR_EIO) from None
        except BaseException:
            if tmp is not None:
                _unlink(tmp)
            raise
        try:
            store.import_file(tmp if tmp is not None else cache)
        except Error as e:
            # A download that is no data is never kept, and a cached one
            # that is none is removed, so that the next try downloads again.
            _unlink(tmp if tmp is not None else cache)
            e.message = "%s: bootstrap_url: the data downloaded from %s: %s" % (
                where, remote, re.sub(r"^QueryStore\.import_file: (path: )?", "", e.message))
            e.args = (e.message,)
            raise
        except BaseException:
            if tmp is not None:
                _unlink(tmp)
            raise
        if tmp is not None:
            try:
                os.replace(tmp, cache)
            except OSError:
                _unlink(tmp)  # imported; only the cache is missing


def _unlink(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def _import_local(store, path, where):
    """bootstrap_url's local file into the store, its errors named for it."""
    try:
        store.import_file(path)
    except Error as e:
        e = _renamed(e, where, "QueryStore.import_file", {"path": "bootstrap_url"})
        if not e.message.startswith(where + ": "):  # the library's "cannot read 'x'"
            e.message = "%s: bootstrap_url: %s" % (where, e.message)
            e.args = (e.message,)
        raise e


# The embedding models AIOS's QueryStore has been given: a first positional
# argument that is one of these is AIOS's model_name, never a store file.
AIOS_MODEL_NAMES = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2",
                    "BAAI/bge-small-en-v1.5")


# A first positional argument of QueryStore that is a str is taken for a
# store file only when it looks like one (see _looks_like_store_path).
_STORE_SUFFIXES = (".db", ".sqlite", ".sqlite3", ".db3")


def _looks_like_store_path(s):
    """Whether s, QueryStore's first positional argument, is plainly a store
    file: ":memory:", an existing file, a name with a .db or .sqlite
    suffix, or a path with a folder that exists ("./history", "data/h"); ""
    too, which the store refuses itself. Anything else ("all-mpnet-base-v2",
    "sentence-transformers/all-mpnet-base-v2") may be an embedding model's
    name, given in AIOS's positional order."""
    if s in ("", ":memory:") or s.lower().endswith(_STORE_SUFFIXES) or os.path.exists(s):
        return True
    folder = os.path.dirname(s)
    return bool(folder) and os.path.isdir(folder)


class QueryStore(_NoCopy):
    """The history smart routing learns from (AIOS SmartRouting.QueryStore),
    kept in libllmroute's store: a SQLite file, or memory when path is None.

    add_data(data, split="train") takes AIOS's data format: a list of
    {"query", "input_token_length", "outputs": [{"model_name", "correctness",
    "output_token_length"}]}. As in AIOS, only the "train" split is routed
    from; "val" and "test" data are kept apart in `held_out` for evaluation.

    embed: a function from a list of texts to one vector per text (MiniLM,
    bge-small, an OpenAIEmbedder, ...): the store is then dense, its queries
    embedded through it, and embedder (required, unless embed carries its
    own id) names the model; see Store.
    """

    SPLITS = ("train", "val", "test")
    _copy_hint = ("share this one (it may be used from several threads at once), or open "
                  "another QueryStore(path=...) on the same file")

    # The file a store in persist_directory is kept in.
    PERSIST_FILE = "llmroute-history.db"

    _POSITIONAL = ("path", "embedder", "max_records", "embed")
    # AIOS's QueryStore(model_name, persist_directory, bootstrap_url).
    _POSITIONAL_AIOS = ("model_name", "persist_directory", "bootstrap_url")

    def __init__(self, *args, path=_UNSET, embedder=None, max_records=0, embed=None,
                 model_name=None, persist_directory=None, bootstrap_url=None,
                 bootstrap_timeout=60.0):
        where = "QueryStore"
        # QueryStore(path, embedder, max_records, embed) positionally, as
        # before, whatever the first argument looks like, but for one of
        # AIOS's model names (AIOS_MODEL_NAMES), which begins AIOS's
        # QueryStore(model_name, persist_directory, bootstrap_url).
        given = {"path": path, "embedder": embedder, "max_records": max_records,
                 "embed": embed, "model_name": model_name,
                 "persist_directory": persist_directory, "bootstrap_url": bootstrap_url}
        defaults = {"path": _UNSET, "embedder": None, "max_records": 0, "embed": None,
                    "model_name": None, "persist_directory": None, "bootstrap_url": None}
        order = self._POSITIONAL
        if args and isinstance(args[0], str) and args[0] in AIOS_MODEL_NAMES:
            order = self._POSITIONAL_AIOS
        elif args and isinstance(args[0], str) and not _looks_like_store_path(args[0]):
            a = args[0]
            raise _bad(
                "%s: %r: a first argument that names no existing file, has no .db or .sqlite "
                "suffix and no existing folder may be an embedding model's name (AIOS's "
                "QueryStore(model_name, ...)), and is not taken for a store file. For a store "
                "file give path=%r (or %r, or a .db suffix); for an embedding model give "
                "model_name=%r with embed= (a function from texts to vectors, such as "
                "SentenceTransformer(%r).encode), or leave it out for the built-in embedder"
                % (where, a, a, os.path.join(".", a), a, a))
        if len(args) > len(order):
            raise TypeError("%s() takes at most %d positional arguments (%s), but %d were given"
                            % (where, len(order), ", ".join(order), len(args)))
        for name, value in zip(order, args):
            if given[name] is not defaults[name]:
                raise TypeError("%s() got multiple values for argument '%s'" % (where, name))
            given[name] = value
        embedder, max_records, embed = given["embedder"], given["max_records"], given["embed"]
        path, model_name = given["path"], given["model_name"]
        persist_directory, bootstrap_url = given["persist_directory"], given["bootstrap_url"]
        timeout = _bootstrap_timeout(bootstrap_timeout, where)
        _bootstrap_source(bootstrap_url, where)
        if model_name is not None:
            if not isinstance(model_name, str):
                raise _wrong_type(where + ": model_name", "a str (an embedding model's name)",
                                  model_name)
            if embed is None:
                raise _bad(
                    "%s: model_name %r: this binding cannot load a sentence-transformers model "
                    "itself, and does not fall back quietly to another embedder. Give the "
                    "model as embed= (embed=SentenceTransformer(%r).encode, with model_name or "
                    "embedder naming it), or leave model_name out to use the built-in embedder "
                    "(\"tfidf-v1\"). For a store file of that name, give path=%r."
                    % (where, model_name, model_name, model_name))
            if embedder is None:
                embedder = model_name
            elif embedder != model_name:
                raise _bad("%s: model_name %r and embedder %r name different models"
                           % (where, model_name, embedder))
        if persist_directory is not None:
            if path is not _UNSET and path is not None:
                raise _bad("%s: give path (the store file) or persist_directory (a folder for "
                           "it), not both" % where)
            try:
                folder = os.fspath(persist_directory)
            except TypeError:
                raise _wrong_type(where + ": persist_directory", "a folder path (a str)",
                                  persist_directory) from None
            try:
                os.makedirs(folder, exist_ok=True)
            except OSError as e:
                raise IOFailure("%s: persist_directory: cannot make %r: %s"
                                % (where, folder, e.strerror or e), code=_lib.LR_EIO) from None
            path = os.path.join(folder, self.PERSIST_FILE)
        if path is _UNSET:
            path = None
        self._path = path
        self._model_name = model_name
        self._store = _open_store(path, embedder, max_records, embed, where)
        # The cap given (0: none), which a lone record's append checks
        # before it goes (_room()); _appending counts the appends in flight
        # that have taken room under it, guarded by _lock, and _own those
        # of the calling thread.
        self._max_records = _whole(max_records, where + ": max_records", 0, 2 ** 63 - 1)
        self._appending = 0
        self._own = threading.local()
        self.held_out = {"val": [], "test": []}
        self._generation = 0
        self._lock = threading.Lock()
        self._appended = threading.Condition(self._lock)
        self._predictors = {}
        # Set after add_data appended a record in place (see _settle()).
        self._unbuilt = False
        self._settle_lock = threading.Lock()
        self._bootstrap_timeout = timeout
        _bootstrap(self, bootstrap_url, path, timeout, where)

    # ---- What the constructor was given, read-only ----
    #
    # Each is used once, at construction: the file opened, the embedder
    # named, the corpus downloaded. Setting one afterwards would change
    # nothing but the value read back (router.store.path = "b.db" would
    # leave the records going into a.db), so it is refused, saying what
    # to do instead.

    path = _read_only_property(
        "path", """The store file (None: in memory), as given. Read-only.""",
        "QueryStore", "the store file is opened when the QueryStore is made",
        "open another QueryStore(path=...) (and assign it to SmartRouting.store)")
    model_name = _read_only_property(
        "model_name",
        """The embedding model's name given as model_name (AIOS's), or
        None. Read-only.""",
        "QueryStore", "the store's embedder is set when the QueryStore is made",
        "make another QueryStore(model_name=..., embed=...)")
    bootstrap_timeout = _read_only_property(
        "bootstrap_timeout", """The seconds bootstrap_url's download was given. Read-only.""",
        "QueryStore", "bootstrap_url is downloaded when the QueryStore is made",
        "give bootstrap_timeout= to the constructor")

    # The count SmartRouting reads to tell whether its router is current:
    # kept by the store, read-only too.

    generation = _read_only_property(
        "generation",
        """How many times the records routed over have changed through this
        QueryStore (add_data of "train" data, import_file, a refresh that
        found new records): SmartRouting builds its router again when it
        differs from the one the router was built at. Read-only.""",
        "QueryStore",
        "it counts the changes to the store's records, and SmartRouting compares it with "
        "the count its router was built at",
        "change the records (add_data, import_file, refresh), which moves it on")

    def query_similar(self, query, *args, **kwargs):
        """Not available: AIOS's QueryStore.query_similar returns ChromaDB's
        query result (ids, documents, metadatas of the nearest past queries);
        libllmroute's store searches inside the library and hands out no
        neighbours."""
        raise NotImplementedError(
            "QueryStore.query_similar: llmroute's store does not hand out the nearest past "
            "queries (ChromaDB's query result); use QueryStore.predict(query, model_configs) "
            "for AIOS's predictions from them, or SmartRouting.predict() / get_model_idxs()")

    def predict(self, query, model_configs, n_similar=16):
        """AIOS's QueryStore.predict: (performance scores, length scores),
        one row per query and one column per model config (in their order):
        the mean correctness and mean output tokens over the n_similar
        nearest past queries that have an outcome for the model, 0 and 0
        for a model none has (and for every model when the store is empty).
        numpy arrays, as AIOS returns, when numpy can be imported; else
        lists of rows. query: a str or a list of str. One difference: a
        fractional correctness (0.9) counts as itself here, where AIOS
        counts int(0.9), which is 0."""
        where = "QueryStore.predict"
        self._check_open(where)
        if isinstance(query, str):
            texts = [query]
        elif isinstance(query, (bytes, bytearray, Mapping)) or not _iterable(query):
            raise _wrong_type(where + ": query", "a str or a list of str", query)
        else:
            texts = list(query)
            for i, t in enumerate(texts):
                if not isinstance(t, str):
                    raise _wrong_type("%s: query[%d]" % (where, i), "a str", t)
        selected = _selection(model_configs, where, "model_configs")
        names = list(_names(selected, where, "model_configs") or [])
        if not names:
            raise _bad("%s: model_configs: give the models to predict for" % where)
        seen = set()
        for n in names:
            if n in seen:
                raise _bad("%s: model_configs: model '%s' is listed twice" % (where, n))
            seen.add(n)
        n_similar = _whole(n_similar, where + ": n_similar", 1, _lib.LR_MAX_N_SIMILAR)
        for i, t in enumerate(texts):
            if t == "":
                # Refused over an empty store too, as over one with data, and
                # over a dense store before embed is called.
                raise _bad("%s: query[%d]: smart routing needs the query text: an empty "
                           "query has nothing to find similar past queries by" % (where, i))
        perf = [[0.0] * len(names) for _ in texts]
        length = [[0.0] * len(names) for _ in texts]
        if texts and self._count(where) > 0:
            try:
                self._settle()
                # A close() from another thread meanwhile is refused here.
                router = self._predictor(names, n_similar, where)
                res = router.route_batch(texts, models=names, input_tokens=[0] * len(texts),
                                         ranking=True)
            except Error as e:
                raise _renamed(e, where, "Router.route_batch")
            for i, d in enumerate(res.decisions):
                by_name = {c.name: c for c in d.ranking}
                perf[i] = [by_name[n].predicted_quality for n in names]
                length[i] = [by_name[n].predicted_output_tokens for n in names]
        try:
            import numpy
        except ImportError:
            return perf, length
        return numpy.array(perf, dtype=float), numpy.array(length, dtype=float)

    def _predictor(self, names, n_similar, where):
        """A Router with AIOS's predictor over this store, for these models
        (priced 0: predictions do not depend on prices)."""
        key = (tuple(names), n_similar)
        with self._lock:
            cached = self._predictors.get(key)
            if cached is not None and cached[1] == self._generation:
                return cached[0]
            gen = self._generation
        cfg = Config({"models": [{"name": n, "cost_per_input_token": 0,
                                  "cost_per_output_token": 0} for n in names],
                      "router": {"strategy": "smart", "predictor": "aios",
                                 "n_similar": n_similar}})
        router = Router(cfg, strategy="smart", store=self._store, n_similar=n_similar,
                        predictor="aios")
        with self._lock:
            if len(self._predictors) >= 16:
                self._predictors.clear()
            self._predictors[key] = (router, gen)
        return router

    def add_data(self, data, split="train"):
        """Add records; all or nothing. Returns the ImportReport for "train"
        data, None for held-out splits. A malformed record raises ValueError
        naming its index and field."""
        where = "QueryStore.add_data"
        if not isinstance(split, str):
            raise _wrong_type(where + ": split", "one of %s" % ", ".join(self.SPLITS), split)
        if split not in self.SPLITS:
            raise _bad("%s: split: expected one of %s, got %r"
                       % (where, ", ".join(self.SPLITS), split))
        if isinstance(data, (str, bytes, Mapping)) or not _iterable(data):
            raise _bad_type("%s: data: expected a list of records (dicts), got %s"
                            % (where, type(data).__name__))
        data = list(data)
        for i, rec in enumerate(data):
            if not isinstance(rec, Mapping):
                raise _bad_type("%s: data[%d]: expected a record (a dict with \"query\", "
                                "\"input_token_length\", \"outputs\"), got %s"
                                % (where, i, type(rec).__name__))
        # A closed store refuses every add in this method's name: held-out
        # data, no record at all, and one record, whose path below asks the
        # store what it is before anything could name the method.
        self._check_open(where)
        if split != "train":
            with self._lock:
                self.held_out[split].extend(data)
            return None
        if not data:
            return None
        # One record is appended, in time of its own, rather than imported,
        # which builds the store's copy whole (the size of the store); the
        # build is left to the next route over the store (_settle()), which
        # then routes as after an import. A dense store's record is embedded
        # first, by one call of its embed function, once the store knows its
        # dimension (its first import learns it). Several records go in one
        # import, all or nothing, as do a dense store's first, and a dense
        # store's from inside its own import's embed function, which the
        # library then refuses at once, before embed is called again.
        # Into a capped store a record is appended only when the store has
        # room for it (_room()); at the cap it goes to the import, which
        # refuses it in its own words (TooBig "data[0]: the history
        # store's cap of N records is reached") before embed is called.
        appended = False
        try:
            # Inside the try: a close() from another thread since the check
            # above is refused here, in this method's name.
            single = (len(data) == 1
                      and (not self._store.dense or (self._store.embed is not None
                                                     and self._store.dim > 0
                                                     and not self._store._in_own_import()))
                      and self._room(where))
            if single:
                try:
                    report = self._store._append_record(data[0])
                    appended = True
                except TooBig:
                    # The library found the store full all the same: another
                    # handle on its file, or an import of several records
                    # through this one, filled it since _room() read count().
                    # The import refuses the record as it refuses it at the
                    # cap, having written nothing.
                    report = self._store.import_records(data, strict=True)
                finally:
                    self._room_given_back()
            else:
                report = self._store.import_records(data, strict=True)
        except Error as e:
            # "import_records: records[3]: query: ..." is data[3] here.
            m = re.sub(r"\brecords(?=\[)", "data", e.message)
            if m.startswith("records: "):
                m = "data: " + m[len("records: "):]
            for lower in ("Store.import_records: ", "import_records: "):
                if m.startswith(lower):
                    m = m[len(lower):]
            e.message = "%s: %s" % (where, m)
            e.args = (e.message,)
            raise
        with self._lock:
            self._generation += 1
            if appended:
                self._unbuilt = True
        return report

    def _room(self, where):
        """Whether a lone record may be appended: always into a store
        without a cap; into a capped one when its records and the appends
        in flight leave room for one more, which is then taken (counted in
        _appending until _room_given_back()). Checked and taken under
        _lock. When only the appends in flight fill the store, their
        outcome is waited for: one that fails gives its room back, and one
        that commits leaves the store full, when the record goes to the
        import, which refuses it in its words before embed is called. So
        adds from several threads into room for one append one record and
        embed one query. A thread that adds from inside its own append
        (its embed function) does not wait on itself: its record goes to
        the import."""
        if not self._max_records:
            return True
        with self._lock:
            while self._count(where) + self._appending >= self._max_records:
                if not self._appending or getattr(self._own, "appending", 0):
                    return False
                self._appended.wait()
            self._appending += 1
        self._own.appending = getattr(self._own, "appending", 0) + 1
        return True

    def _room_given_back(self):
        """The end of an append that _room() let go (committed or not)."""
        if not self._max_records:
            return
        self._own.appending -= 1
        with self._lock:
            self._appending -= 1
            self._appended.notify_all()

    def _settle(self):
        """Build the store's copy whole again (Store.rebuild()) when
        add_data has appended a record to it since the last build, so that
        what routes over the store is what an import of each record, which
        builds it whole, left: called before anything routes on it (predict,
        SmartRouting's routing). A run of single adds so costs one build
        at the next route, not one each. The flag is cleared before the
        build, and set by an add after its record is committed, so a record
        committed after the build's snapshot makes the next route build
        again."""
        if not self._unbuilt:
            return
        with self._settle_lock:
            if not self._unbuilt:
                return
            self._unbuilt = False
            try:
                self._store.rebuild()
            except BaseException:
                self._unbuilt = True
                raise

    def import_file(self, path, split=None, strict=True):
        """Import a JSON or JSONL file in the same format (split: keep only
        records whose "split" field is this)."""
        try:
            report = self._store.import_file(path, split=split, strict=strict)
        except Error as e:
            raise _renamed(e, "QueryStore.import_file", "Store.import_file")
        with self._lock:
            self._generation += 1
        return report

    def refresh(self):
        """Read records other processes have added to the file since (see
        Store.refresh). True when there were any."""
        try:
            changed = self._store.refresh()
        except Error as e:
            raise _renamed(e, "QueryStore.refresh", "Store.refresh")
        if changed:
            with self._lock:
                self._generation += 1
        return changed

    @property
    def embed(self):
        """The store's embed function, or None (the built-in embedder)."""
        return self._store.embed

    def count(self):
        return self._count("QueryStore.count")

    def _count(self, where):
        """The number of records; `where` names the method in messages."""
        try:
            return len(self._store)
        except Error as e:
            raise _renamed(e, where, "Store.count")

    def _check_open(self, where):
        """InvalidInput "`where`: the store is closed" after close()."""
        try:
            self._store.handle
        except Error as e:
            raise _renamed(e, where, "Store")

    __len__ = count

    def close(self):
        self._store.close()


def _caller_level():
    """The stacklevel of warnings.warn() that points at the first caller
    outside this module, for a warning its caller's caller gives."""
    f = sys._getframe(1)
    level = 1
    while f is not None and f.f_code.co_filename == __file__:
        f = f.f_back
        level += 1
    return level


def _known(x):
    """A prediction as AIOS gives it: 0 where the library has none (NaN)."""
    return 0.0 if x != x else x


# Numbers SmartRouting instances, for the empty store's warning.
_ROUTER_SERIALS = itertools.count(1)


class _SmartModels(_Models):
    """A SmartRouting's _Models: the config (prices filled in), its
    candidates without both prices ({name: why}), and the router over the
    store, built at first use for each store and generation (current)."""

    def __init__(self, source):
        super().__init__(source)
        self.unpriced = {}
        self.current = None


class SmartRouting(_ModelsOwner):
    """Cost- and quality-aware routing (AIOS SmartRouting, the ECCOS method).

    Per query: the cheapest candidate whose predicted quality is at least
    performance_requirement, else the one with the highest predicted
    quality; predictions come from the n_similar nearest past queries in
    `store`. predictor="aios" predicts exactly as AIOS does (plain means over
    the neighbours); the default is the library's better-calibrated mode.

    The second positional argument is bootstrap_url when it is a str, an
    os.PathLike or None (current AIOS: SmartRouting(llm_configs,
    bootstrap_url, performance_requirement, n_similar)), and
    performance_requirement when it is a number (earlier AIOS:
    SmartRouting(llm_configs, performance_requirement, n_similar)); None
    followed by an int is earlier AIOS's form (None, n_similar): an int
    there is n_similar, a float performance_requirement.

    Prices: each llm_config's cost_per_input_token and cost_per_output_token;
    one it lacks is taken from litellm's price table (litellm.model_cost)
    when litellm can be imported, as AIOS takes all of them, under
    backend + "/" + name, then the name as given, then the name without
    its provider prefix (with a warning: it may be another provider's).
    A model on a local backend (LOCAL_BACKENDS: ollama, vllm, sglang,
    huggingface, llama.cpp, ...) found in neither is priced 0, with one
    RuntimeWarning per router and model; any other candidate still without
    both is refused by name when routed.

    llm_configs may change after construction, and may be empty at first
    (models registered at runtime, as AIOS's adapter does): each call routes
    over llm_configs as it is then.

    store_path: a SQLite file for the history (None: in memory).
    bootstrap_url: AIOS's history corpus (JSON or JSONL in its data format),
    imported when the store is empty: a local path, a file:// URL, or an
    http(s) URL (a Google Drive share link, as AIOS's config gives, in its
    direct-download form), downloaded once, within bootstrap_timeout
    seconds, into a cache file beside the store file (for a store in
    memory, in a folder of the user's own in the temporary directory).

    With an empty store, get_model_idxs() and predict() do what AIOS does
    with no neighbours (all predictions 0: the first candidate of each
    query when performance_requirement is above 0, else the one with the
    lowest input cost), warning once per router; route_batch() and
    get_model_idxs_global() raise EmptyInput.

    Neighbours come from the built-in embedder unless one of these is given:
    embed: a function from a list of texts to one vector per text (the
        model AIOS's ChromaDB uses, all-MiniLM-L6-v2, say), with embedder
        naming that model ("all-MiniLM-L6-v2"): the store is dense and
        every query, added or routed, is embedded through it (a batch in
        one call);
    embedding: an OpenAI-compatible embeddings server, as the config's
        router.embedding object ({"base_url", "model"} and optionally
        "api_key_env", "dimensions", "batch_size", "timeout_ms"); the
        queries are embedded through it (an OpenAIEmbedder), the store's
        id is "openai:" + model, as the gateway's.
    """

    # The positional arguments after llm_configs, in the two orders AIOS
    # has had: its current SmartRouting(llm_configs, bootstrap_url,
    # performance_requirement=0.7, n_similar=16), and its earlier
    # SmartRouting(llm_configs, performance_requirement=0.7, n_similar=16)
    # (then this binding's store_path). The type of the second argument
    # tells them apart: a str, an os.PathLike or None is a bootstrap_url,
    # a number a performance_requirement. None followed by a whole number
    # (an int, not a float) is the earlier order too:
    # SmartRouting(llm_configs, None, 4) is performance_requirement=None (the
    # default) and n_similar=4, as it was in earlier AIOS.
    _POSITIONAL_NOW = ("bootstrap_url", "performance_requirement", "n_similar", "store_path")
    _POSITIONAL_EARLIER = ("performance_requirement", "n_similar", "store_path")
    _DEFAULTS = {"bootstrap_url": None, "performance_requirement": 0.7, "n_similar": 16,
                 "store_path": None}

    def __init__(self, llm_configs, *args, performance_requirement=_UNSET, n_similar=_UNSET,
                 store_path=_UNSET, bootstrap_url=_UNSET, predictor=None, alpha=None,
                 embedder=None, embed=None, embedding=None, bootstrap_timeout=60.0):
        where = "SmartRouting"
        given = {"bootstrap_url": bootstrap_url, "performance_requirement": performance_requirement,
                 "n_similar": n_similar, "store_path": store_path}
        if args:
            first = args[0]
            if (first is None and len(args) >= 2 and isinstance(args[1], numbers.Integral)
                    and not isinstance(args[1], bool) and len(args) <= 3):
                # SmartRouting(llm_configs, None, 4): earlier AIOS's
                # (performance_requirement=None, n_similar=4); a whole
                # number there is a count of neighbours, while current
                # AIOS's performance_requirement is a fraction (0.9).
                order = self._POSITIONAL_EARLIER
            elif first is None or isinstance(first, (str, os.PathLike)):
                order = self._POSITIONAL_NOW
            elif isinstance(first, numbers.Real):
                order = self._POSITIONAL_EARLIER
            else:
                raise _bad_type("%s: the argument after llm_configs: expected bootstrap_url (a "
                                "str or None, as current AIOS passes it) or "
                                "performance_requirement (a number, as earlier AIOS did), got %s"
                                % (where, _got(first)))
            if len(args) > len(order):
                raise TypeError("%s() takes at most %d positional arguments after llm_configs "
                                "(%s), but %d were given"
                                % (where, len(order), ", ".join(order), len(args)))
            for name, value in zip(order, args):
                if given[name] is not _UNSET:
                    raise TypeError("%s() got multiple values for argument '%s'"
                                    % (where, name))
                given[name] = value
        given = {k: (self._DEFAULTS[k] if v is _UNSET else v) for k, v in given.items()}
        bootstrap_url = given["bootstrap_url"]
        performance_requirement = given["performance_requirement"]
        n_similar = given["n_similar"]
        store_path = given["store_path"]
        # Checked here for their types, so that a message names the argument
        # (the library's configuration checks their ranges).
        if performance_requirement is not None:
            performance_requirement = _config_number(performance_requirement,
                                                     where + ": performance_requirement")
        if n_similar is not None:
            n_similar = _whole(n_similar, where + ": n_similar", 1, _lib.LR_MAX_N_SIMILAR)
        if predictor is not None and not isinstance(predictor, str):
            raise _wrong_type(where + ": predictor", "a str or None", predictor)
        if alpha is not None:
            alpha = _config_number(alpha, where + ": alpha")
        self._performance_requirement = performance_requirement
        self._n_similar = n_similar
        self._predictor = predictor
        self._alpha = alpha
        router = {"strategy": "smart", "performance_requirement": performance_requirement,
                  "n_similar": n_similar, "predictor": predictor, "alpha": alpha}
        if embedding is not None:
            if embed is not None:
                raise _bad("%s: give embed (a function) or embedding (a server for one), not "
                           "both" % where)
            if not isinstance(embedding, Mapping):
                raise _bad_type("%s: embedding: expected an object like {\"base_url\": ..., "
                                "\"model\": ...}, got %s" % (where, type(embedding).__name__))
            router["embedding"] = dict(embedding)
        self._router_doc = router
        self._warned_empty = False
        self._warned_free = set()
        self._serial = next(_ROUTER_SERIALS)
        self._lock = threading.Lock()
        self._models = None
        self.llm_configs = llm_configs
        m = self._state()
        # The router's settings, checked with the models when there are
        # any, else over one stand-in model.
        self._settings = m.config or _config([{"name": "llmroute-settings-check"}], router,
                                             where)
        if embedding is not None:
            try:
                embed = OpenAIEmbedder.from_config(self._settings)
            except EmbedError as e:
                # The key from api_key_env: named as this argument's.
                raise _renamed(e, where + ": embedding", "OpenAIEmbedder") from None
        _bootstrap_source(bootstrap_url, where)
        timeout = _bootstrap_timeout(bootstrap_timeout, where)
        self._bootstrap_url = bootstrap_url
        try:
            self.store = QueryStore(path=store_path, embedder=embedder, embed=embed)
        except Error as e:
            raise _renamed(e, where, "QueryStore", {"path": "store_path"})
        _bootstrap(self.store, bootstrap_url, store_path, timeout, where)

    # AIOS's SmartRouting.QueryStore, the class of `store`.
    QueryStore = QueryStore

    _WHERE = "SmartRouting"
    _copy_hint = ("share this one (it may be called from several threads at once), or build "
                  "a new SmartRouting(llm_configs, ...), with the same store_path to route on "
                  "the same history")

    def _build(self, configs, previous):
        """llm_configs' prices filled in (litellm's, or 0 for a local model),
        its Config, and its candidates still without both prices."""
        where = self._WHERE
        priced, why_unpriced, free = _priced_configs(configs, where)
        if not isinstance(configs, (list, tuple)) or configs:
            config = _config(priced, self._router_doc, where)
        m = _SmartModels(configs)
        if not m.entries:
            return m
        m.config = config
        # Smart routing prices every candidate; one without both prices,
        # from its llm_config or litellm's table, is refused by name when it
        # is a candidate, rather than treated as free (AIOS's default of 0),
        # but for a model served locally, which costs 0.
        m.unpriced = {mi.name: why_unpriced.get(mi.name, "")
                      for mi in config.models
                      if math.isnan(mi.cost_per_input_token)
                      or math.isnan(mi.cost_per_output_token)}
        for name, (backend, why) in free.items():
            if name not in self._warned_free:
                self._warned_free.add(name)
                warnings.warn(
                    "%s (router #%d): model '%s' has no cost_per_input_token or "
                    "cost_per_output_token in its llm_config%s; its backend '%s' serves it "
                    "locally, so it is priced 0 per token. To set a price, give "
                    "cost_per_input_token and cost_per_output_token in its llm_config. This "
                    "warning is given once per router and model."
                    % (where, self._serial, name, ", and " + why if why else "", backend),
                    RuntimeWarning, stacklevel=_caller_level())
        return m

    # ---- AIOS's settings, which it reads at each call ----

    @property
    def performance_requirement(self):
        """The quality a candidate must be predicted to reach (None: the
        configuration's default). May be set, as AIOS's attribute may: the
        next call routes on the new value."""
        return self._performance_requirement

    @performance_requirement.setter
    def performance_requirement(self, value):
        where = self._WHERE
        if value is not None:
            value = _config_number(value, where + ": performance_requirement")
        self._set_router_setting("performance_requirement", value)

    @property
    def n_similar(self):
        """How many nearest past queries predict from (None: the
        configuration's default). May be set, as AIOS's attribute may: the
        next call predicts with the new value."""
        return self._n_similar

    @n_similar.setter
    def n_similar(self, value):
        if value is not None:
            value = _whole(value, self._WHERE + ": n_similar", 1, _lib.LR_MAX_N_SIMILAR)
        self._set_router_setting("n_similar", value)

    # ---- The binding's own settings, read at each call as AIOS's are ----

    @property
    def predictor(self):
        """The predictor: "aios" (AIOS's plain means over the neighbours),
        "default" or None (the library's default). May be set: the next
        call predicts with the new one."""
        return self._predictor

    @predictor.setter
    def predictor(self, value):
        if value is not None and not isinstance(value, str):
            raise _wrong_type(self._WHERE + ": predictor", "a str or None", value)
        self._set_router_setting("predictor", value)

    @property
    def alpha(self):
        """The mean quality route_batch() and get_model_idxs_global()
        assign for when given no alpha (None: the configuration's default,
        performance_requirement). May be set: the next call assigns for
        the new value."""
        return self._alpha

    @alpha.setter
    def alpha(self, value):
        if value is not None:
            value = _config_number(value, self._WHERE + ": alpha")
        self._set_router_setting("alpha", value)

    def _set_router_setting(self, key, value):
        """Sets performance_requirement, n_similar, predictor or alpha:
        checked as the constructor checks it (the configuration's range,
        in its words), then the configuration and router are built again
        at the next call, as for a new llm_configs, so that no call routes
        on the old value after this returns."""
        doc = dict(self._router_doc)
        doc[key] = value
        settings = _config([{"name": "llmroute-settings-check"}], doc, self._WHERE)
        with self._lock:
            self._router_doc = doc
            self._settings = settings
            setattr(self, "_" + key, value)
            self._models = None

    def _routable(self, where):
        """The current _Models; EmptyInput while llm_configs is empty."""
        m = self._state()
        if m.config is None:
            raise _no_models(where)
        return m

    def _requirement(self):
        if self.performance_requirement is not None:
            return self.performance_requirement
        return self._settings.router_defaults["performance_requirement"]

    def optimize_model_selection_local(self, model_configs, perf_scores, cost_scores):
        """Earlier AIOS's per-query choice from given scores: the position
        (in model_configs) of the cheapest model whose score is at least
        performance_requirement (the first on equal cost), else of the one
        with the highest score (the first on a tie); None for no models.
        get_model_idxs() makes the same choice from the store's predictions
        inside the library."""
        perf, cost = self._scores("SmartRouting.optimize_model_selection_local", perf_scores,
                                  cost_scores)
        if not perf:
            return None
        return self._select(perf, cost)

    def _select_model_single(self, model_cfgs, perf, cost):
        """Current AIOS's name for optimize_model_selection_local(), with
        its one difference: 0, not None, for no models."""
        perf, cost = self._scores("SmartRouting._select_model_single", perf, cost)
        if not perf:
            return 0
        return self._select(perf, cost)

    def _select(self, perf, cost):
        requirement = self._requirement()
        qualified = [i for i, p in enumerate(perf) if p >= requirement]
        if qualified:
            return min(qualified, key=lambda i: cost[i])
        return perf.index(max(perf))

    @staticmethod
    def _scores(where, perf_scores, cost_scores):
        """Two equal-length lists of floats from two sequences (numpy rows)."""
        out = []
        for arg, xs in (("perf_scores", perf_scores), ("cost_scores", cost_scores)):
            if isinstance(xs, (str, bytes, Mapping)) or not _iterable(xs):
                raise _wrong_type("%s: %s" % (where, arg), "a sequence of numbers", xs)
            out.append([_number(x, "%s: %s[%d]" % (where, arg, i)) for i, x in enumerate(xs)])
        if len(out[0]) != len(out[1]):
            raise _bad("%s: %d perf_scores but %d cost_scores" % (where, len(out[0]),
                                                                  len(out[1])))
        return out[0], out[1]

    def optimize_model_selection_global(self, perf_scores, cost_scores):
        """Not available: AIOS solves its global assignment from score
        matrices with CBC; libllmroute solves the same problem from the
        queries themselves."""
        raise NotImplementedError(
            "SmartRouting.optimize_model_selection_global: llmroute solves the global "
            "assignment from the queries, not from score matrices; use "
            "get_model_idxs_global(selected_llms, queries) for the indices, or "
            "route_batch(selected_llms, queries, alpha=...) for the whole result")

    @property
    def available_models(self):
        """The model names of llm_configs, in order (current AIOS's
        SmartRouting.available_models, which maps a chosen name back to its
        index): a new list at each read, of llm_configs as it is then (AIOS
        takes its list once, at construction); [] while it is empty.
        Read-only."""
        config = self._state().config
        return [] if config is None else config.names

    @property
    def router(self):
        """The C router over the current llm_configs, rebuilt after the
        store gains data or llm_configs changes. A thread keeps the Router
        it took until its call returns, so a rebuild never frees a router
        in use."""
        return self._router_for(self._routable("SmartRouting.router"))

    bootstrap_url = _read_only_property(
        "bootstrap_url",
        """The history corpus given, imported at construction into an
        empty store (None: none). Read-only.""",
        "SmartRouting", "the corpus is imported when the SmartRouting is made",
        "import a file now with router.store.import_file(path), or assign a "
        "QueryStore(bootstrap_url=...) to router.store")

    @property
    def store(self):
        """The QueryStore routed over. May be replaced by another
        QueryStore, as AIOS's may: the next call routes over it."""
        return self._query_store

    @store.setter
    def store(self, value):
        if not isinstance(value, QueryStore):
            raise _wrong_type(self._WHERE + ": store", "a QueryStore", value)
        self._query_store = value

    def _router_for(self, m):
        """The C router over m's config and the store as it is now."""
        store = self.store
        if store._store._h is None:
            raise _bad("the store is closed")
        store._settle()
        gen = store.generation
        # (router, store, generation), replaced as one object: another
        # store assigned to `store` may have the same generation.
        current = m.current
        if current is not None and current[1] is store and current[2] == gen:
            return current[0]
        with self._lock:
            current = m.current
            if current is None or current[1] is not store or current[2] != gen:
                router = Router(m.config, strategy="smart", store=store._store,
                                performance_requirement=self.performance_requirement,
                                n_similar=self.n_similar, predictor=self.predictor)
                current = m.current = (router, store, gen)
            return current[0]

    def _inputs(self, where, selected_llms, queries, input_token_lengths, arg="selected_llms",
                lone_unpriced=False):
        """(models, texts, input token counts, the _Models routed over) for
        the Router; `where` names the method in messages, `arg` the
        candidates' argument. Queries given as chat messages without a
        count are counted over all their messages. A candidate without
        both prices is refused, but for the only candidate of a request
        when lone_unpriced is true: the library then returns it without
        pricing it (get_model_idxs)."""
        if queries is None:
            raise _bad("%s: queries: smart routing needs the query texts (one per decision)"
                       % where)
        if isinstance(queries, str):
            queries = [queries]
        elif isinstance(queries, (bytes, bytearray)) or not _iterable(queries):
            raise _bad_type("%s: queries: expected a list of queries (strings or chat message "
                            "lists), got %s" % (where, type(queries).__name__))
        queries = list(queries)
        # A chat with no query text (only a system message, a last user
        # message of image parts or "") is routed as a blank text, on the
        # priors with no vector fetched, as the gateway serves it; a str
        # query "" stays refused, as the library refuses it.
        texts = [_query_text(q, i, where) for i, q in enumerate(queries)]
        texts = [" " if t == "" and q is not None and not isinstance(q, str) else t
                 for t, q in zip(texts, queries)]
        if not texts:
            raise EmptyInput("%s: queries is empty" % where, code=_lib.LR_EEMPTY)
        m = self._routable(where)
        input_token_lengths = _length_list(where, input_token_lengths)
        if input_token_lengths is not None:
            input_token_lengths = [
                n if n is None else _tokens(n, "%s: input_token_lengths[%d]" % (where, i))
                for i, n in enumerate(input_token_lengths)]
            if len(input_token_lengths) != len(texts):
                raise _bad("%s: Number of queries must match number of input token lengths "
                           "(%d queries, %d lengths)"
                           % (where, len(texts), len(input_token_lengths)))
        if input_token_lengths is None or None in input_token_lengths:
            # A chat's input is all its messages, though its query text is
            # the last user message alone.
            given = input_token_lengths or [None] * len(queries)
            counted = [n if n is not None else _chat_tokens(q) for n, q in zip(given, queries)]
            if any(n is not None for n in counted):
                input_token_lengths = counted
        models, per_query = _candidate_lists(_selection(selected_llms, where, arg), len(texts),
                                             where, arg)
        if m.unpriced:
            for names in (models if per_query else [models]):
                names = m.config._names if names is None else names
                if lone_unpriced and len(names) == 1:
                    continue
                for name in names:
                    if name in m.unpriced:
                        why = m.unpriced[name]
                        raise _bad("%s: model '%s' has no cost_per_input_token or "
                                   "cost_per_output_token in llm_configs%s: smart routing "
                                   "needs both prices of every candidate; give them in its "
                                   "llm_config, or install litellm, whose price table AIOS "
                                   "uses" % (where, name, ", and " + why if why else ""))
        return models, texts, input_token_lengths, m

    # ---- An empty store: AIOS's choice without predictions ----

    @staticmethod
    def _store_is_empty(e):
        """Whether e, an EmptyInput from the router, is the empty store's.
        Decided from the error alone: the store may have gained data since
        the router raised, and the caller then still gets the fallback for
        this call (never the error)."""
        return e.code == _lib.LR_EEMPTY and "history store is empty" in e.message

    def _refreshed(self):
        """Whether the store file has gained records from another process
        since (read them in, if so): then routing is tried again rather
        than falling back. Nothing for a store in memory."""
        if self.store.path is None:
            return False
        try:
            return self.store.refresh()
        except Error:
            return False

    def _warn_empty(self, where, stacklevel):
        """The empty store's warning, once per router; stacklevel: that of
        the caller of the public method, counted from here. The message
        names the router, so that Python's warning filters, which show a
        message once per place, show each router's."""
        if not self._warned_empty:
            self._warned_empty = True
            warnings.warn(
                "%s (router #%d, store %s): the history store is empty, so every predicted "
                "quality and length is 0, as in AIOS: each query goes to the first of its "
                "candidates (when performance_requirement <= 0, to the one with the lowest "
                "input cost). Add data (store.add_data(), bootstrap_url) to route on "
                "predictions. This warning is given once per router."
                % (where, self._serial, "in memory" if self.store.path is None
                   else repr(os.fsdecode(self.store.path))),
                RuntimeWarning, stacklevel=stacklevel)

    def _empty_store_rows(self, where, models, texts, lengths, m):
        """Per query: (candidate names, input tokens, input price per
        candidate), the candidates checked as the library checks them."""
        config = m.config
        rows = []
        for i, text in enumerate(texts):
            names = models[i] if isinstance(models, list) else models
            if names is None:
                names = tuple(config._names)
            seen = set()
            for n in names:
                if n not in config._index:
                    raise UnknownModel("%s: query %d: unknown model '%s'" % (where, i, n),
                                       code=_lib.LR_ENOMODEL)
                if n in seen:
                    raise _bad("%s: query %d: model '%s' is listed twice among the candidates"
                               % (where, i, n))
                seen.add(n)
            tokens = lengths[i] if lengths is not None and lengths[i] is not None else \
                estimate_tokens(text or "")
            prices = [config._models[config._index[n]].cost_per_input_token for n in names]
            rows.append((names, tokens, prices))
        return rows

    def _empty_store_indices(self, where, models, texts, lengths, m):
        """What AIOS picks with no neighbours: every predicted quality is 0,
        so when performance_requirement > 0 no candidate meets it and
        argmax over equal qualities gives the first listed; when it is <= 0
        every candidate meets it and the cheapest by estimated cost (input
        tokens x input price, the predicted output being 0) wins, the first
        listed on a tie."""
        rows = self._empty_store_rows(where, models, texts, lengths, m)
        self._warn_empty(where, 4)
        requirement = self._requirement()
        out = []
        for names, tokens, prices in rows:
            pick = 0
            if requirement <= 0 and len(names) > 1:
                costs = [tokens * p for p in prices]
                pick = costs.index(min(costs))
            out.append(m.config._index[names[pick]])
        return out

    def get_model_idxs(self, selected_llms=_UNSET, queries=None, input_token_lengths=None, *,
                       selected_llm_lists=_UNSET):
        """Per-query choices: indices into llm_configs, one per query.

        selected_llms: one candidate list for every query, a list of lists
        (one per query), or None for every configured model; AIOS's current
        name for it, selected_llm_lists=, is taken too. queries: strings or
        chat message lists. input_token_lengths: counts, or None to estimate
        them (about 4 bytes per token: of the query text, or of all the
        messages of a chat). No queries ([] and [], as AIOS's adapter may
        pass, or an empty generator) is no choices: [], while counts given
        must still be one per query.
        """
        where = "SmartRouting.get_model_idxs"
        arg = "selected_llm_lists" if selected_llm_lists is not _UNSET else "selected_llms"
        selected_llms = _alias(where, "selected_llms", selected_llms, "selected_llm_lists",
                               selected_llm_lists, None)
        if (queries is not None and not isinstance(queries, (str, bytes, bytearray, list, tuple))
                and _iterable(queries)):
            queries = list(queries)  # a generator, read once
        if isinstance(queries, (list, tuple)) and not queries:
            # No queries: no choices, as AIOS's loop over them makes none.
            # One candidate list and one count per query must still be one
            # per query.
            selected = _selection(selected_llms, where, arg)
            if _is_per_query(selected):
                _candidate_lists(selected, 0, where, arg)
            lengths = _length_list(where, input_token_lengths)
            if lengths:
                raise _bad("%s: Number of queries must match number of input token lengths "
                           "(0 queries, %d lengths)" % (where, len(lengths)))
            return []
        models, texts, lengths, m = self._inputs(where, selected_llms, queries,
                                                 input_token_lengths, arg, lone_unpriced=True)
        got = self._over_store(where, "Router.route_indices", lambda: self._router_for(
            m).route_indices(texts, models=models, input_tokens=lengths))
        if got is not None:
            return got
        return self._empty_store_indices(where, models, texts, lengths, m)

    def _over_store(self, where, callee, call):
        """call()'s answer, its errors renamed for `where`; None when the
        store is empty even after one refresh (data another process added is
        routed on), so the caller falls back as AIOS does."""
        for attempt in (0, 1):
            try:
                return call()
            except EmptyInput as e:
                if not self._store_is_empty(e):
                    raise _renamed(e, where, callee)
            except Error as e:
                raise _renamed(e, where, callee)
            if attempt or not self._refreshed():
                return None
        return None

    def predict(self, queries, selected_llms=None, input_token_lengths=None):
        """Per query, per candidate (in the order given): predicted quality,
        predicted output tokens and estimated cost, as three lists of rows
        (AIOS's QueryStore.predict gives the first two). A candidate none
        of the neighbours has an outcome for is predicted quality 0, as in
        AIOS (the default predictor leaves it unknown, and the router ranks
        it after every candidate with data), never NaN."""
        where = "SmartRouting.predict"
        models, texts, lengths, m = self._inputs(where, selected_llms, queries,
                                                 input_token_lengths)
        res = self._over_store(where, "Router.route_batch", lambda: self._router_for(
            m).route_batch(texts, models=models, input_tokens=lengths, ranking=True))
        if res is None:
            # AIOS's predictions with no neighbours: 0 and 0 for every
            # candidate; the estimated cost is then the input's alone.
            rows = self._empty_store_rows(where, models, texts, lengths, m)
            self._warn_empty(where, 3)
            return ([[0.0] * len(n) for n, _, _ in rows], [[0.0] * len(n) for n, _, _ in rows],
                    [[t * p for p in prices] for _, t, prices in rows])
        perf, out_len, cost = [], [], []
        for i, d in enumerate(res.decisions):
            by_name = {c.name: c for c in d.ranking}
            order = models[i] if isinstance(models, list) else models
            if order is None:
                order = m.config._names
            perf.append([_known(by_name[n].predicted_quality) for n in order])
            out_len.append([_known(by_name[n].predicted_output_tokens) for n in order])
            cost.append([by_name[n].estimated_cost for n in order])
        return perf, out_len, cost

    def route_batch(self, selected_llms=None, queries=None, input_token_lengths=None,
                    alpha=None, budget=None, capacities=None, ranking=False):
        """The global assignment AIOS's optimize_model_selection_global
        attempts: minimum total estimated cost with mean predicted quality >=
        alpha (default: the config's, i.e. performance_requirement) and at
        most capacities[name] queries per model (default: each llm_config's
        "capacity"; 0 = unlimited). With budget, the other form: maximum mean
        quality with total cost <= budget. Returns a BatchResult; when no
        assignment meets the constraints, feasible is False and message says
        what was reached."""
        return self._route_batch("SmartRouting.route_batch", selected_llms, queries,
                                 input_token_lengths, alpha, budget, capacities, ranking)

    def _route_batch(self, where, selected_llms, queries, input_token_lengths, alpha, budget,
                     capacities, ranking):
        models, texts, lengths, m = self._inputs(where, selected_llms, queries,
                                                 input_token_lengths)
        mode = "quality" if budget is None else "budget"
        try:
            return self._router_for(m).route_batch(texts, models=models, input_tokens=lengths,
                                           mode=mode, alpha=alpha, budget=budget,
                                           capacities=capacities, ranking=ranking)
        except Error as e:
            raise _renamed(e, where, "Router.route_batch")

    def get_model_idxs_global(self, selected_llms=None, queries=None, input_token_lengths=None,
                              alpha=None, capacities=None):
        """route_batch()'s assignment as indices into llm_configs. Raises
        Infeasible (a ValueError) when the constraints cannot all be met;
        its .result holds the best reachable assignment."""
        res = self._route_batch("SmartRouting.get_model_idxs_global", selected_llms, queries,
                                input_token_lengths, alpha, None, capacities, False)
        if not res.feasible:
            e = Infeasible(res.message or "no assignment meets the constraints",
                           code=_lib.LR_EINFEASIBLE)
            e.result = res
            raise e
        return res.indices
