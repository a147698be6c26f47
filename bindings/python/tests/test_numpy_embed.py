"""An embed function that returns numpy arrays, as sentence-transformers'
encode() does: a float32 matrix, a list of float64 rows, a Fortran-ordered
or strided view. Stores filled and routed through any of them hold and
predict exactly what the same vectors as lists of floats give; a NaN, a
wrong shape or a wrong count raises EmbedError by name and stores nothing.

Run by ctest as python.numpy, with an interpreter that has numpy (Debian's
python3-numpy, which scripts/deps.sh installs): the binding imports numpy
only for QueryStore.predict's arrays (test_numpy_aios.py), so this is where
arrays given to it are exercised."""
import random
import unittest

import numpy as np

import support
from support import DIM, SmartTestCase, SwitchEmbed, hashed_vector

import llmroute
from llmroute import SmartRouting

MODELS = support.priced(["cheap", "mid", "dear"], [(1e-7, 1e-7), (1e-6, 1e-6), (1e-5, 1e-5)])
WORDS = ["orbit", "planet", "apple", "cherry", "tax", "court", "verb", "noun", "prime",
         "sum", "cell", "gene", "poem", "rhyme", "bond", "stock"]


def records(seed=7, n=60):
    """Records of words from one half of WORDS or the other: "cheap" is
    nearly always right on the first half's, seldom on the second's."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        half = i % 2
        words = rng.sample(WORDS[half * 8:half * 8 + 8], 4)
        rates = (0.95 if half == 0 else 0.1, 0.6, 0.9)
        out.append({"query": " ".join(words) + " case %d" % i, "input_token_length": 30,
                    "outputs": [{"model_name": m["name"], "correctness": int(rng.random() < p),
                                 "output_token_length": rng.randint(10, 400)}
                                for m, p in zip(MODELS, rates)]})
    return out


QUERIES = ["orbit planet tax", "prime sum cell", "apple cherry court verb", "bond stock gene",
           "noun court apple", "poem rhyme"]


def as_lists(texts):
    return [hashed_vector(t) for t in texts]


# The same vectors, as numpy gives them in several ways.
WAYS = {
    "float32 matrix": lambda texts: np.asarray(as_lists(texts), dtype=np.float32),
    "float64 rows": lambda texts: [np.asarray(v, dtype=np.float64) for v in as_lists(texts)],
    "Fortran order": lambda texts: np.asfortranarray(as_lists(texts), dtype=np.float32),
    "strided view": lambda texts: np.repeat(np.asarray(as_lists(texts), dtype=np.float32),
                                            2, axis=1)[:, ::2],
}


class NumpyEmbedTest(SmartTestCase):
    def smart(self, embed):
        sr = SmartRouting(MODELS, performance_requirement=0.7, n_similar=8, embed=embed,
                          embedder="all-MiniLM-L6-v2")
        sr.store.add_data(records())
        return sr

    def test_numpy_vectors_store_and_route_as_the_same_lists(self):
        base = self.smart(as_lists)
        want = base.predict(QUERIES, MODELS)
        want_idxs = base.get_model_idxs(MODELS, QUERIES)
        want_batch = base.route_batch(MODELS, QUERIES, alpha=0.6).indices
        self.assertEqual(len(set(want_idxs)), 2)  # the choices depend on the vectors
        for way, embed in WAYS.items():
            with self.subTest(way=way):
                sr = self.smart(embed)
                self.assertEqual(sr.predict(QUERIES, MODELS), want)
                self.assertEqual(sr.get_model_idxs(MODELS, QUERIES), want_idxs)
                self.assertEqual(sr.route_batch(MODELS, QUERIES, alpha=0.6).indices, want_batch)
                # Vectors given directly, as arrays, route as embedded ones.
                router = sr.router
                mat = WAYS["float32 matrix"](QUERIES)
                self.assertEqual(router.route_batch(["x"] * len(QUERIES), embeddings=mat).indices,
                                 want_idxs)
                for i, q in enumerate(QUERIES):
                    self.assertEqual(router.route(query="x", embedding=mat[i]).index, want_idxs[i])

    def test_bad_arrays_raise_by_name_and_store_nothing(self):
        switch = SwitchEmbed(WAYS["float32 matrix"])
        sr = self.smart(switch)
        store = sr.store._store
        n = len(store)

        def nan_at_5(texts):
            m = np.ones((len(texts), DIM), dtype=np.float32)
            m[:, 5] = np.nan
            return m

        bad = [
            ("a NaN", nan_at_5, "embed: vector 0, number 5: expected a finite number, got nan"),
            ("an infinity", lambda t: np.full((len(t), DIM), -np.inf),
             "number 0: expected a finite number, got -inf"),
            ("a row too many", lambda t: np.ones((len(t) + 1, DIM), dtype=np.float32),
             "embed: returned 2 vectors for 1 text"),
            ("one vector, not a matrix", lambda t: np.ones(DIM, dtype=np.float32),
             "embed: returned 64 vectors for 1 text"),
            ("the wrong dimension", lambda t: np.ones((len(t), DIM - 1)),
             "embed: returned vectors of dimension 63, but the store's are 64"),
            ("a third axis", lambda t: np.ones((len(t), DIM, 2), dtype=np.float32),
             "embed: returned an array of 3 axes"),
            # Each one-number row of a third axis of length 1 was taken as a
            # number: the store took (n, 64, 1) as vectors of dimension 64.
            ("a third axis of length 1", lambda t: np.ones((len(t), DIM, 1), dtype=np.float32),
             "embed: returned an array of 3 axes (shape (1, 64, 1))"),
            ("rows of two axes", lambda t: [np.ones((DIM, 1)) for _ in t],
             "embed: vector 0: expected a sequence of numbers, got an array of 2 axes"),
            ("rows of one-number arrays", lambda t: [[np.ones(1)] * DIM for _ in t],
             "embed: vector 0, number 0: expected a number, got array([1.])"),
            ("a zero row", lambda t: np.zeros((len(t), DIM), dtype=np.float32),
             "embed: vector 0 is all zeros"),
        ]
        for what, embed, message in bad:
            with self.subTest(what=what):
                switch.fn = embed
                with self.assertRaises(llmroute.EmbedError) as cm:
                    store.add("one more query", [("cheap", 1, 3)])
                self.assertIn(message, str(cm.exception))
                with self.assertRaises(llmroute.EmbedError) as cm:
                    sr.get_model_idxs(MODELS, ["orbit planet"])
                self.assertIn(message, str(cm.exception))
                self.assertEqual(len(store), n)
        with self.assertRaises(llmroute.EmbedError) as cm:
            sr.router.route(query="x", embedding=np.full(DIM, np.nan, dtype=np.float32))
        self.assertIn("vector 0, number 0: expected a finite number, got nan",
                      str(cm.exception))


if __name__ == "__main__":
    unittest.main()
