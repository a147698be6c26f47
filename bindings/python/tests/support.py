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
