"""numpy's scalars where the binding takes a number or a yes-or-no: a
numpy.bool_ is True or False (a correctness), never a number (it is
refused where True is), and numpy's integers and floats count as the
Python numbers they hold. Run by ctest as python.numpy."""
import unittest

import numpy as np

import support
from support import SmartTestCase

import llmroute
from llmroute import Config, Router, Store

MODELS = support.priced(["cheap", "dear"], [(1e-7, 1e-7), (1e-5, 1e-5)])
QUERIES = ["prove the prime gap bound", "what is the capital of france",
           "sum of the first n squares"]


def predictions(store):
    """Each model's predicted quality for each query, over store."""
    router = Router(Config({"models": MODELS}), strategy="smart", store=store)
    return [[c.predicted_quality for c in router.route(query=q, ranking=True).ranking]
            for q in QUERIES]


class NumpyBoolTest(SmartTestCase):
    def test_a_numpy_bool_correctness_is_recorded_as_the_bool(self):
        plain, numpy = Store(), Store()
        for i, q in enumerate(QUERIES):
            plain.add(q, [("cheap", i % 2 == 0, 10), ("dear", True, 20)], input_tokens=5)
            numpy.add(q, [("cheap", np.bool_(i % 2 == 0), 10), ("dear", np.bool_(True), 20)],
                      input_tokens=5)
            self.assertTrue(plain.add_outcome(q, "cheap", False, 30))
            self.assertTrue(numpy.add_outcome(q, "cheap", np.bool_(False), 30))
        self.assertEqual(len(numpy), len(plain))
        self.assertEqual(predictions(numpy), predictions(plain))

    def test_a_numpy_bool_is_no_number_as_true_is_none(self):
        cfg = Config({"models": MODELS})
        store = Store()
        store.add(QUERIES[0], [("cheap", 1, 10)])
        router = Router(cfg, strategy="smart", store=store)
        calls = {
            "Router.route: input_tokens": lambda b: router.route(query="q", input_tokens=b),
            "Router.route: performance_requirement":
                lambda b: router.route(query="q", performance_requirement=b),
            "Router: n_similar": lambda b: Router(cfg, strategy="smart", store=store,
                                                  n_similar=b),
            "Store.add_outcome: input_tokens":
                lambda b: store.add_outcome("q", "cheap", 1, 5, input_tokens=b),
            "Store: key_ttl_s": lambda b: Store(key_ttl_s=b),
            "SmartRouting: performance_requirement":
                lambda b: llmroute.SmartRouting(MODELS, performance_requirement=b),
        }
        for where, call in calls.items():
            for b in (True, np.bool_(True)):
                with self.subTest(where=where, value=type(b).__name__):
                    with self.assertRaises(llmroute.InvalidType) as cm:
                        call(b)
                    self.assertIn(where + ": expected", str(cm.exception))
                    self.assertIn(type(b).__name__ + " True", str(cm.exception))


if __name__ == "__main__":
    unittest.main()
