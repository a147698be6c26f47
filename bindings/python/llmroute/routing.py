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
    message is the query text, as AIOS's messages_to_query does by default).

Both return indices into llm_configs. What differs from AIOS on purpose:
unknown model names raise ValueError instead of being skipped (AIOS drops
them, which shortens its result list) or mapped to index 0; a candidate list
shorter than the previous one never fails (AIOS's cursor can run past it);
prices come from llm_configs (cost_per_input_token, cost_per_output_token),
and a smart candidate without them is refused with a message naming it
(AIOS counts a missing price as 0); a model listed twice among one
request's candidates, smart routing over an empty store and (with the
built-in embedder) a query without text raise InvalidInput or EmptyInput;
with predictor="aios", a tie on the highest quality when no candidate
meets the requirement goes to the cheapest (AIOS's argmax: the first).
Arguments of the wrong type raise InvalidType (an InvalidInput, and a
TypeError) naming them; a generator serves as selected_llms, queries or
input_token_lengths as its list does.

Threads: every method may be called from several threads at once.
"""
import enum
import math
import os
import threading
from collections.abc import Mapping

from . import _lib
from .core import Config, Router, Store, _iterable, config_from_llm_configs
from .embed import OpenAIEmbedder
from .errors import EmptyInput, Infeasible, InvalidInput, InvalidType

__all__ = ["RouterStrategy", "SequentialRouting", "SmartRouting", "QueryStore"]


class RouterStrategy(str, enum.Enum):
    """AIOS's strategy names. A str enum, so that RouterStrategy.Smart equals
    both itself (AIOS's Enum form) and "smart" (AIOS's later string form,
    read from its config file)."""
    Sequential = "sequential"
    Smart = "smart"


def _bad(msg):
    return InvalidInput(msg, code=_lib.LR_EINVAL)


def _bad_type(msg):
    """An argument of the wrong Python type: InvalidType, also a TypeError."""
    return InvalidType(msg, code=_lib.LR_EINVAL)


def _name_of(llm, where):
    """The model name of a selected_llms entry: a dict with "name", an object
    with a .name (AIOS's LLMConfig), or a plain name."""
    if isinstance(llm, str):
        return llm
    if isinstance(llm, Mapping):
        name = llm.get("name")
    else:
        name = getattr(llm, "name", None)
    if not isinstance(name, str):
        raise _bad_type("%s: expected a model name (a dict with \"name\"), got %r"
                        % (where, llm))
    return name


def _selection(selected):
    """selected_llms as given, as a list when it is another iterable (a
    generator, say), or InvalidInput naming it when it is no list of models.
    A lone name, dict or object with a .name is one model, as in _names."""
    if selected is None or isinstance(selected, (str, Mapping, list, tuple)):
        return selected
    if not isinstance(selected, (bytes, bytearray)) and _iterable(selected):
        return list(selected)
    if isinstance(getattr(selected, "name", None), str):
        return [selected]
    raise _bad_type("selected_llms: expected a list of models (names, or dicts with \"name\"), "
                    "a list of such lists (one per query), or None for every configured model; "
                    "got %s" % type(selected).__name__)


def _is_per_query(selected):
    """True for AIOS's later form: a list of candidate lists, one per query."""
    return (selected is not None and not isinstance(selected, (str, Mapping))
            and len(selected) > 0 and isinstance(selected[0], (list, tuple)))


def _names(selected, where="selected_llms"):
    """Candidate names for one request; None means every configured model."""
    if selected is None:
        return None
    if isinstance(selected, (str, Mapping)):
        selected = [selected]
    try:  # the usual case, a list of dicts with string names, in one pass
        names = tuple([llm["name"] for llm in selected])
        if all(type(n) is str for n in names):
            if names:
                return names
        else:
            names = None
    except (TypeError, KeyError, IndexError):
        names = None
    if names is None:
        names = tuple(_name_of(llm, "%s[%d]" % (where, i)) for i, llm in enumerate(selected))
    if not names:
        raise EmptyInput("%s is empty: give at least one model, or None for all configured "
                         "models" % where, code=_lib.LR_EEMPTY)
    return names


def _candidate_lists(selected, n):
    """(models argument for Router.route_batch, per_query flag) for n queries."""
    if _is_per_query(selected):
        if len(selected) != n:
            raise _bad("selected_llm_lists has %d candidate lists for %d queries"
                       % (len(selected), n))
        return [_names(s, "selected_llm_lists[%d]" % i) for i, s in enumerate(selected)], True
    return _names(selected), False


def _query_text(q, i):
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
                    content = "\n".join(_part_texts(content, i))
                if content is not None and not isinstance(content, str):
                    raise _bad_type("queries[%d]: the last user message's content: expected a "
                                    "string or a list of content parts, got %s"
                                    % (i, type(content).__name__))
                return (content or "").strip()
        return ""
    raise _bad_type("queries[%d]: expected a string or a list of chat messages, got %s"
                    % (i, type(q).__name__))


def _part_texts(parts, i):
    """The texts of a message's "text" content parts (queries[i]'s)."""
    texts = []
    for j, p in enumerate(parts):
        if isinstance(p, Mapping) and p.get("type") == "text":
            t = p.get("text", "")
            if not isinstance(t, str):
                raise _bad_type("queries[%d]: the last user message's content[%d]: \"text\" "
                                "is %s; expected a string"
                                % (i, j, "None" if t is None else "a " + type(t).__name__))
            texts.append(t)
    return texts


def _n_picks(n_queries):
    """How many picks n_queries asks for: a count, or the queries themselves
    (one pick each; a single string is one query, as in SmartRouting)."""
    if isinstance(n_queries, str):
        return 1
    if isinstance(n_queries, int):
        if n_queries < 0:
            raise _bad("n_queries: expected a count >= 0, got %d" % n_queries)
        return n_queries
    if isinstance(n_queries, float):
        if not n_queries.is_integer() or n_queries < 0:
            raise _bad("n_queries: expected a count >= 0, got %r" % n_queries)
        return int(n_queries)
    try:
        return len(n_queries)
    except TypeError:
        pass
    if _iterable(n_queries):  # the queries as a generator, as SmartRouting takes them
        return sum(1 for _ in n_queries)
    raise _bad_type("n_queries: expected a count or a list of queries, got %s"
                    % type(n_queries).__name__)


class SequentialRouting:
    """Round-robin over the selected models (AIOS SequentialRouting).

    One cursor per instance, advanced once per query and taken modulo the
    current candidate list's length; safe under concurrency (an atomic
    counter in C).
    """

    def __init__(self, llm_configs):
        self.llm_configs = llm_configs
        self.config = Config(config_from_llm_configs(llm_configs, {"strategy": "sequential"}))
        self.router = Router(self.config, strategy="sequential")

    def get_model_idxs(self, selected_llms=None, n_queries=1):
        """Indices into llm_configs, one per query.

        get_model_idxs(selected_llms, n_queries=1): n_queries picks from one
        candidate list. get_model_idxs(selected_llm_lists, queries): one pick
        per query from its own list. selected_llms=None means all models.
        """
        # The usual call, one query over a list of dicts: straight through.
        if (n_queries == 1 and type(selected_llms) is list and selected_llms
                and type(selected_llms[0]) is dict):
            try:
                key = tuple([llm["name"] for llm in selected_llms])
            except (KeyError, TypeError):
                key = None
            if key is not None:
                return [self.router.route_index(key)]
        n_queries = _n_picks(n_queries)
        selected_llms = _selection(selected_llms)
        if _is_per_query(selected_llms):
            models, _ = _candidate_lists(selected_llms, n_queries)
            if n_queries == 1:
                return [self.router.route_index(models[0])]
            return self.router.route_indices(models=models, n=n_queries)
        names = _names(selected_llms)
        if n_queries == 1:
            return [self.router.route_index(names)]
        if n_queries == 0:
            return []
        return self.router.route_indices(models=names, n=n_queries)


class QueryStore:
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

    def __init__(self, path=None, embedder=None, max_records=0, embed=None):
        self.path = path
        self._store = Store(":memory:" if path is None else path, embedder=embedder,
                            max_records=max_records, embed=embed)
        self.held_out = {"val": [], "test": []}
        self.generation = 0
        self._lock = threading.Lock()

    def add_data(self, data, split="train"):
        """Add records; all or nothing. Returns the ImportReport for "train"
        data, None for held-out splits. A malformed record raises ValueError
        naming its index and field."""
        if split not in self.SPLITS:
            raise _bad("split: expected one of %s, got %r" % (", ".join(self.SPLITS), split))
        if isinstance(data, (str, bytes, Mapping)) or not _iterable(data):
            raise _bad_type("data: expected a list of records (dicts), got %s"
                            % type(data).__name__)
        data = list(data)
        for i, rec in enumerate(data):
            if not isinstance(rec, Mapping):
                raise _bad_type("data[%d]: expected a record (a dict with \"query\", "
                                "\"input_token_length\", \"outputs\"), got %s"
                                % (i, type(rec).__name__))
        if split != "train":
            with self._lock:
                self.held_out[split].extend(data)
            return None
        if not data:
            return None
        report = self._store.import_records(data, strict=True)
        with self._lock:
            self.generation += 1
        return report

    def import_file(self, path, split=None, strict=True):
        """Import a JSON or JSONL file in the same format (split: keep only
        records whose "split" field is this)."""
        report = self._store.import_file(path, split=split, strict=strict)
        with self._lock:
            self.generation += 1
        return report

    def refresh(self):
        """Read records other processes have added to the file since (see
        Store.refresh). True when there were any."""
        changed = self._store.refresh()
        if changed:
            with self._lock:
                self.generation += 1
        return changed

    @property
    def embed(self):
        """The store's embed function, or None (the built-in embedder)."""
        return self._store.embed

    def count(self):
        return len(self._store)

    __len__ = count

    def close(self):
        self._store.close()


class SmartRouting:
    """Cost- and quality-aware routing (AIOS SmartRouting, the ECCOS method).

    Per query: the cheapest candidate whose predicted quality is at least
    performance_requirement, else the one with the highest predicted
    quality; predictions come from the n_similar nearest past queries in
    `store`. predictor="aios" predicts exactly as AIOS does (plain means over
    the neighbours); the default is the library's better-calibrated mode.

    store_path: a SQLite file for the history (None: in memory).
    bootstrap_url: a local JSON/JSONL file in AIOS's data format, imported
    when the store is empty (AIOS downloads its corpus; this binding does no
    network I/O for it, so fetch the file first).

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

    def __init__(self, llm_configs, performance_requirement=0.7, n_similar=16, store_path=None,
                 *, bootstrap_url=None, predictor=None, alpha=None, embedder=None, embed=None,
                 embedding=None):
        self.llm_configs = llm_configs
        self.performance_requirement = performance_requirement
        self.n_similar = n_similar
        self.predictor = predictor
        self.alpha = alpha
        router = {"strategy": "smart", "performance_requirement": performance_requirement,
                  "n_similar": n_similar, "predictor": predictor, "alpha": alpha}
        if embedding is not None:
            if embed is not None:
                raise _bad("give embed (a function) or embedding (a server for one), not both")
            if not isinstance(embedding, Mapping):
                raise _bad_type("embedding: expected an object like {\"base_url\": ..., "
                                "\"model\": ...}, got %s" % type(embedding).__name__)
            router["embedding"] = dict(embedding)
        self.config = Config(config_from_llm_configs(llm_configs, router))
        if embedding is not None:
            embed = OpenAIEmbedder.from_config(self.config)
        # Smart routing prices every candidate; one without both prices is
        # refused by name rather than treated as free (AIOS's default of 0).
        self._unpriced = {m.name for m in self.config.models
                          if math.isnan(m.cost_per_input_token)
                          or math.isnan(m.cost_per_output_token)}
        self.store = QueryStore(store_path, embedder=embedder, embed=embed)
        self._lock = threading.Lock()
        self._current = None
        if bootstrap_url is not None and not isinstance(bootstrap_url, (str, os.PathLike)):
            raise _bad_type("bootstrap_url: expected a path to a local file, got %s"
                            % type(bootstrap_url).__name__)
        if bootstrap_url and self.store.count() == 0:
            path = os.fspath(bootstrap_url)
            if path.startswith("file://"):
                path = path[len("file://"):]
            elif "://" in path:
                raise _bad("bootstrap_url: %r is remote; download it and give the local file "
                           "(llmroute does no network I/O)" % bootstrap_url)
            self.store.import_file(path)

    @property
    def router(self):
        """The C router, rebuilt after the store gains data. A thread keeps
        the Router it took until its call returns, so a rebuild never frees
        a router in use."""
        if self.store._store._h is None:
            raise _bad("the store is closed")
        gen = self.store.generation
        current = self._current  # (router, generation), replaced as one object
        if current is not None and current[1] == gen:
            return current[0]
        with self._lock:
            current = self._current
            if current is None or current[1] != gen:
                router = Router(self.config, strategy="smart", store=self.store._store,
                                performance_requirement=self.performance_requirement,
                                n_similar=self.n_similar, predictor=self.predictor)
                current = self._current = (router, gen)
            return current[0]

    def _inputs(self, selected_llms, queries, input_token_lengths):
        if queries is None:
            raise _bad("queries: smart routing needs the query texts (one per decision)")
        if isinstance(queries, str):
            queries = [queries]
        elif isinstance(queries, (bytes, bytearray)) or not _iterable(queries):
            raise _bad_type("queries: expected a list of queries (strings or chat message "
                            "lists), got %s" % type(queries).__name__)
        texts = [_query_text(q, i) for i, q in enumerate(queries)]
        if not texts:
            raise EmptyInput("queries is empty", code=_lib.LR_EEMPTY)
        if input_token_lengths is not None:
            if isinstance(input_token_lengths, int):
                input_token_lengths = [input_token_lengths]
            elif (isinstance(input_token_lengths, (str, bytes, bytearray, Mapping))
                  or not _iterable(input_token_lengths)):
                raise _bad_type("input_token_lengths: expected one count per query (a list), "
                                "or None to estimate them, got %s"
                                % type(input_token_lengths).__name__)
            input_token_lengths = list(input_token_lengths)
            if len(input_token_lengths) != len(texts):
                raise _bad("Number of queries must match number of input token lengths "
                           "(%d queries, %d lengths)" % (len(texts), len(input_token_lengths)))
        models, per_query = _candidate_lists(_selection(selected_llms), len(texts))
        if self._unpriced:
            for names in (models if per_query else [models]):
                for name in (self.config.names if names is None else names):
                    if name in self._unpriced:
                        raise _bad("model '%s' has no cost_per_input_token or "
                                   "cost_per_output_token in llm_configs: smart routing "
                                   "needs both prices of every candidate" % name)
        return models, texts, input_token_lengths

    def get_model_idxs(self, selected_llms=None, queries=None, input_token_lengths=None):
        """Per-query choices: indices into llm_configs, one per query.

        selected_llms: one candidate list for every query, a list of lists
        (one per query), or None for every configured model. queries:
        strings or chat message lists. input_token_lengths: counts, or None
        to estimate them from the text (about 4 bytes per token).
        """
        models, texts, lengths = self._inputs(selected_llms, queries, input_token_lengths)
        return self.router.route_indices(texts, models=models, input_tokens=lengths)

    def predict(self, queries, selected_llms=None, input_token_lengths=None):
        """Per query, per candidate (in the order given): predicted quality,
        predicted output tokens and estimated cost, as three lists of rows
        (AIOS's QueryStore.predict gives the first two)."""
        models, texts, lengths = self._inputs(selected_llms, queries, input_token_lengths)
        res = self.router.route_batch(texts, models=models, input_tokens=lengths, ranking=True)
        perf, out_len, cost = [], [], []
        for i, d in enumerate(res.decisions):
            by_name = {c.name: c for c in d.ranking}
            order = models[i] if isinstance(models, list) else models
            if order is None:
                order = self.config.names
            perf.append([by_name[n].predicted_quality for n in order])
            out_len.append([by_name[n].predicted_output_tokens for n in order])
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
        models, texts, lengths = self._inputs(selected_llms, queries, input_token_lengths)
        mode = "quality" if budget is None else "budget"
        return self.router.route_batch(texts, models=models, input_tokens=lengths, mode=mode,
                                       alpha=alpha, budget=budget, capacities=capacities,
                                       ranking=ranking)

    def get_model_idxs_global(self, selected_llms=None, queries=None, input_token_lengths=None,
                              alpha=None, capacities=None):
        """route_batch()'s assignment as indices into llm_configs. Raises
        Infeasible (a ValueError) when the constraints cannot all be met;
        its .result holds the best reachable assignment."""
        res = self.route_batch(selected_llms, queries, input_token_lengths, alpha=alpha,
                               capacities=capacities)
        if not res.feasible:
            e = Infeasible(res.message or "no assignment meets the constraints",
                           code=_lib.LR_EINFEASIBLE)
            e.result = res
            raise e
        return res.indices
