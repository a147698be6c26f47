"""Shared by the binding's tests: puts the package in this checkout on the
path, and says whether the loaded libllmroute has smart routing."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE_ROOT = os.path.dirname(HERE)
if PACKAGE_ROOT not in sys.path:
    sys.path.insert(0, PACKAGE_ROOT)

import llmroute  # noqa: E402
from llmroute import _lib  # noqa: E402

MODELS = [
    {"name": "a", "backend": "openai", "cost_per_input_token": 1e-6,
     "cost_per_output_token": 2e-6},
    {"name": "b", "backend": "ollama", "hostname": "http://localhost:11434",
     "cost_per_input_token": 0, "cost_per_output_token": 0},
    {"name": "c", "backend": "vllm", "base_url": "http://localhost:8000/v1",
     "cost_per_input_token": 5e-6, "cost_per_output_token": 1.5e-5},
]


def smart_missing():
    """None when the library has the smart strategy and the store, else why not."""
    need = ("lr_store_open", "lr_store_import_file", "lr_store_count")
    absent = [n for n in need if not _lib.has(n)]
    if absent:
        return ("%s does not export %s: smart routing has not landed in this build"
                % (_lib.library_path, ", ".join(absent)))
    try:
        llmroute.Config({"models": [{"name": "m"}], "router": {"strategy": "smart"}})
    except llmroute.ConfigError as e:
        if "unknown strategy" in str(e):
            return "%s: %s" % (_lib.library_path, e)
        raise
    return None


import tempfile  # noqa: E402
import unittest  # noqa: E402


class StoreFileTestCase(unittest.TestCase):
    """A test with a history store file of its own: self.path, in a
    temporary directory removed after the test."""

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.dir.name, "h.db")

    def tearDown(self):
        self.dir.cleanup()


class InTempDir:
    """Mixin: the test runs in a temporary directory of its own as the
    working directory, removed after it."""

    def setUp(self):
        super().setUp()
        self.dir = tempfile.TemporaryDirectory()
        self.cwd = os.getcwd()
        os.chdir(self.dir.name)

    def tearDown(self):
        os.chdir(self.cwd)
        self.dir.cleanup()
        super().tearDown()


class SmartTestCase(unittest.TestCase):
    """Base of the smart-routing tests: they fail, with the reason, on a
    library without smart routing, which is a part of every libllmroute."""

    @classmethod
    def setUpClass(cls):
        why = smart_missing()
        if why:
            raise AssertionError("smart routing is missing: " + why)


# ==== Fixtures for smart routing ====
#
# Records fall into groups whose words use disjoint letters (group 0 only
# a-e, group 1 only f-j, ...), so no word or character n-gram of one group
# occurs in another. Every record of a group has the group's sentence as its
# text, and a query is some of the group's words: its nearest neighbours
# are exactly its group's records (the only ones sharing a feature with it).
# With n_similar equal to the group size the neighbour set is known, which
# is what the parity test needs.

import random  # noqa: E402

ALPHABETS = ["abcde", "fghij", "klmno", "pqrst", "uvwxy"]


def group_words(rng, g, n_words=8):
    letters = ALPHABETS[g]
    return ["".join(rng.choice(letters) for _ in range(rng.randint(4, 8)))
            for _ in range(n_words)]


def group_fixture(seed, models, group_size, n_groups=4, outcome_p=0.85, queries_per_group=6,
                  outcome=None):
    """(records, queries, groups): records in AIOS's data format, queries as
    (text, group, input_tokens). outcome(rng, g, model) gives (correctness,
    output_tokens); by default 0/1 and 10..900."""
    rng = random.Random(seed)
    if outcome is None:
        def outcome(rng, g, m):
            return float(rng.random() < rng.uniform(0.2, 0.95)), float(rng.randint(10, 900))
    groups = []
    records = []
    for g in range(n_groups):
        words = group_words(rng, g)
        text = " ".join(words)
        recs = []
        for _ in range(group_size):
            outs = []
            for m in models:
                if rng.random() < outcome_p:
                    c, n = outcome(rng, g, m)
                    outs.append({"model_name": m, "correctness": c, "output_token_length": n})
            recs.append({"query": text, "input_token_length": len(words) * 2, "outputs": outs})
        records.extend(recs)
        groups.append({"words": words, "records": recs})
    queries = []
    for g in range(n_groups):
        words = groups[g]["words"]
        for _ in range(queries_per_group):
            q = rng.sample(words, rng.randint(3, len(words)))
            queries.append((" ".join(q), g, rng.randint(5, 3000)))
    return records, queries, groups


def priced(names, prices):
    """llm_configs with the given (price_in, price_out) per name."""
    return [{"name": n, "backend": "openai", "cost_per_input_token": pi,
             "cost_per_output_token": po} for n, (pi, po) in zip(names, prices)]


# ==== Dense stores: a deterministic embed function and a fake server ====

import json  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import zlib  # noqa: E402
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # noqa: E402

DIM = 64


def hashed_vector(text, dim=DIM):
    """A hashed bag of words: each word adds +1 or -1 (from its CRC-32) to
    one of dim places. The same on every run and in every process (Python's
    own hash() is salted), so a fake server gives the same vectors."""
    v = [0.0] * dim
    for w in text.lower().split():
        h = zlib.crc32(w.encode("utf-8"))
        v[h % dim] += 1.0 if (h >> 16) & 1 else -1.0
    if not any(v):
        v[0] = 1.0
    return v


class CountingEmbed:
    """hashed_vector over a list of texts, counting calls and texts."""

    def __init__(self, dim=DIM, table=None):
        self.dim = dim
        self.table = table or {}  # text -> vector, before hashing
        self.calls = []

    def __call__(self, texts):
        self.calls.append(list(texts))
        return [list(self.table[t]) if t in self.table else hashed_vector(t, self.dim)
                for t in texts]


class SwitchEmbed:
    """An embed function that calls fn, which a test may replace. A
    Store's embed is read-only: a test that has the store's embedding go
    wrong after it is open (a server going down, vectors of the wrong
    shape) opens it with one of these."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, texts):
        return self.fn(texts)


class ThreadedServer:
    """A local HTTP server on 127.0.0.1 (port 0) served by a thread, closed by
    close() or at the end of a with block. Subclasses build their handler
    class and call _serve(handler); `url` is the server's http://host:port."""

    def _serve(self, handler):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.url = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class EmbedServer(ThreadedServer):
    """A fake OpenAI-compatible embeddings server on 127.0.0.1 (port 0) in a
    thread: POST /v1/embeddings answers hashed_vector of each input, in
    reverse order with their "index" (as a server may), unless `fault`
    says otherwise. `requests` keeps (path, headers, body) of each."""

    DRIP_BYTES = 40
    DRIP_SECONDS = 0.1

    def __init__(self):
        self.requests = []
        self.fault = None
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                try:
                    doc = json.loads(body)
                except ValueError:
                    doc = None
                outer.requests.append((self.path, dict(self.headers), doc))
                status, answer, headers = outer.answer(self.path, doc)
                if isinstance(answer, (dict, list)):
                    answer = json.dumps(answer).encode()
                head = ("HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
                        "Content-Length: %d\r\n%s\r\n"
                        % (status, len(answer), "".join("%s: %s\r\n" % kv
                                                        for kv in headers.items()))).encode()
                # "drip head", "drip body", "drip error" (a 500's body): the
                # first DRIP_BYTES bytes of the head or the body one at a
                # time, DRIP_SECONDS apart (a server alive but too slow), then
                # the rest at once.
                drip = {"drip head": 0, "drip body": len(head),
                        "drip error": len(head)}.get(outer.fault)
                out = head + answer
                if outer.fault == "cut body":
                    # Half the body its Content-Length promises, then the
                    # connection closes.
                    out = head + answer[:len(answer) // 2]
                elif outer.fault == "cut chunked":
                    # One chunk announced whole and sent by half.
                    out = (head.replace(b"Content-Length: %d\r\n" % len(answer),
                                        b"Transfer-Encoding: chunked\r\n")
                           + b"%x\r\n" % len(answer) + answer[:len(answer) // 2])
                try:
                    if drip is not None:
                        self.wfile.write(out[:drip])
                        for i in range(drip, drip + outer.DRIP_BYTES):
                            self.wfile.write(out[i:i + 1])
                            self.wfile.flush()
                            time.sleep(outer.DRIP_SECONDS)
                        out = out[drip + outer.DRIP_BYTES:]
                    self.wfile.write(out)
                except OSError:  # the client gave up
                    pass

        self._serve(Handler)
        self.base_url = self.url + "/v1"

    def answer(self, path, doc):
        if path != "/v1/embeddings":
            return 404, {"error": {"message": "no route %s" % path}}, {}
        texts = doc["input"]
        dim = doc.get("dimensions") or DIM
        data = [{"object": "embedding", "index": i, "embedding": hashed_vector(t, dim)}
                for i, t in enumerate(texts)]
        data.reverse()
        fault = self.fault
        if fault == "drip error":
            return 500, {"error": {"message": "the model is loading" + " ." * 40}}, {}
        if fault == "500":
            return 500, {"error": {"message": "the model is loading"}}, {}
        if fault == "500 control":
            return 500, {"error": {"message": "bad \x1b[31mred\x07 text\r\nX-Injected: 1"}}, {}
        if fault == "error 200":  # as some proxies answer a quota or a rate limit
            return 200, {"error": {"message": "quota exceeded", "code": 402}}, {}
        if fault == "not json":
            return 200, b"<html>gateway</html>", {}
        if fault == "no data":
            return 200, {"object": "list"}, {}
        if fault == "one short":
            data = data[1:]
        if fault == "index twice":
            for d in data:
                d["index"] = 0
        if fault == "nan":
            data[0]["embedding"][3] = float("nan")  # json.dumps writes NaN
        if fault == "string":
            data[0]["embedding"][3] = "0.5"
        if fault == "huge int":  # JSON's integers have no bound; a double's do
            return 200, (b'{"data": [' + b", ".join(
                b'{"index": %d, "embedding": [1%s, 2, 3]}' % (i, b"0" * 400)
                for i in range(len(texts))) + b"]}"), {}
        if fault == "deep":
            return 200, b'{"data": ' + b"[" * 100000 + b"]" * 100000 + b"}", {}
        if fault == "short vector":
            data[0]["embedding"] = data[0]["embedding"][:-1]
        if fault == "redirect":
            return 307, b"", {"Location": "http://example.invalid/v1/embeddings"}
        return 200, {"object": "list", "data": data, "model": doc["model"]}, {}


def cli_path():
    """The llmroute command of this build (LLMROUTE_CLI, else next to the
    library), or None."""
    p = os.environ.get("LLMROUTE_CLI")
    if p:
        return p
    p = os.path.join(os.path.dirname(llmroute.library_path), "llmroute")
    return p if os.path.exists(p) else None


import dataclasses  # noqa: E402


@dataclasses.dataclass
class AiosLLMConfig:
    """AIOS's adapter's LLMConfig (aios/llm_core/adapter.py): no price
    fields."""
    name: str
    backend: str = None
    max_gpu_memory: str = None
    eval_device: str = None
    hostname: str = None
    api_key: str = None


def assert_read_only(test, obj, attrs):
    """For each attr of obj, with the tail of the message setting it raises
    (the part after "<class>: <attr>: read-only"): setting it and deleting
    it both raise AttributeError, setting it with that whole message, and
    the value read back is the one read before (for a list, which such an
    attribute hands out as a new copy at each read, an equal one)."""
    for attr, tail in attrs:
        with test.subTest(attr=attr):
            before = getattr(obj, attr)
            with test.assertRaises(AttributeError) as cm:
                setattr(obj, attr, "other")
            test.assertEqual(str(cm.exception),
                             "%s: %s: read-only %s" % (type(obj).__name__, attr, tail))
            with test.assertRaises(AttributeError):
                delattr(obj, attr)
            if isinstance(before, list):
                test.assertEqual(getattr(obj, attr), before)
            else:
                test.assertIs(getattr(obj, attr), before)

