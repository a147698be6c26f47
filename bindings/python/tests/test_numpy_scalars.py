"""numpy's scalars where the binding takes a number or a yes-or-no: a
numpy.bool_ is True or False (a correctness), never a number (it is
refused where True is), and numpy's integers and floats count as the
Python numbers they hold, in a record or a configuration too. Run by
ctest as python.numpy."""
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


def records(cast):
    """Records of QUERIES in AIOS's format, every number passed through
    cast (int and float, or numpy's types for them)."""
    return [{"query": q, "input_token_length": cast["int"](5 + i),
             "outputs": [{"model_name": "cheap", "correctness": cast["bool"](i % 2 == 0),
                          "output_token_length": cast["int"](10 * (i + 1))},
                         {"model_name": "dear", "correctness": cast["float"](0.75),
                          "output_token_length": cast["float"](20.0)}]}
            for i, q in enumerate(QUERIES)]


PLAIN = {"int": int, "float": float, "bool": bool}
NUMPY = [{"int": np.int64, "float": np.float64, "bool": np.bool_},
         {"int": np.int32, "float": np.float32, "bool": np.bool_},
         {"int": np.uint16, "float": np.float16, "bool": np.bool_}]


class NumpyCountTest(SmartTestCase):
    def test_a_numpy_integer_is_one_input_token_count_as_an_int_is(self):
        configs = MODELS
        smart = llmroute.SmartRouting(configs)
        smart.store.add_data([{"query": q, "input_token_length": 5, "outputs": [
            {"model_name": "cheap", "correctness": i % 2, "output_token_length": 10},
            {"model_name": "dear", "correctness": 1, "output_token_length": 20}]}
            for i, q in enumerate(QUERIES)])
        for count in (7, 7000000):
            want = smart.get_model_idxs(configs, [QUERIES[1]], count)
            for kind in (np.int64, np.int32, np.uint16 if count < 65536 else np.uint64):
                self.assertEqual(smart.get_model_idxs(configs, [QUERIES[1]], kind(count)), want,
                                 kind)
        with self.assertRaises(llmroute.InvalidType):
            smart.get_model_idxs(configs, [QUERIES[1]], np.float64(7.5))


class NumpyRecordsTest(SmartTestCase):
    """Records built from numpy data (a DataFrame's rows hold numpy.int64,
    numpy.float64, numpy.bool_) import as the Python numbers they hold, as
    Store.add takes them; they were refused as "cannot be written as
    JSON"."""

    def test_import_records_takes_numpy_scalars_as_their_numbers(self):
        want = Store()
        self.assertEqual(want.import_records(records(PLAIN)).imported, len(QUERIES))
        for cast in NUMPY:
            with self.subTest(int=cast["int"].__name__, float=cast["float"].__name__):
                store = Store()
                rep = store.import_records(records(cast))
                self.assertEqual((rep.imported, rep.bad), (len(QUERIES), 0))
                self.assertEqual(predictions(store), predictions(want))

    def test_add_data_takes_numpy_scalars(self):
        q = llmroute.QueryStore()
        q.add_data(records(NUMPY[0]))
        self.assertEqual(q.count(), len(QUERIES))

    def test_a_numpy_nan_in_a_record_is_named_as_a_float_nan_is(self):
        recs = records(NUMPY[1])
        recs[1]["outputs"][1]["correctness"] = np.float32("nan")
        with self.assertRaises(llmroute.ParseError) as cm:
            Store().import_records(recs)
        self.assertIn("records[1]: outputs[1].correctness: ", str(cm.exception))
        self.assertIn("got NaN", str(cm.exception))

    def test_other_numpy_values_are_still_refused_by_their_record(self):
        recs = records(PLAIN)
        recs[2]["query"] = np.array(["two", "texts"])
        with self.assertRaises(llmroute.InvalidType) as cm:
            Store().import_records(recs)
        self.assertIn("records[2]: cannot be written as JSON", str(cm.exception))

    def test_numpy_prices_configure_as_their_numbers(self):
        want = support.priced(["cheap", "dear"], [(1e-7, 2e-7), (1e-5, 3e-5)])
        for cast in NUMPY[:2]:
            got = [dict(m, cost_per_input_token=cast["float"](m["cost_per_input_token"]),
                        cost_per_output_token=cast["float"](m["cost_per_output_token"]),
                        capacity=cast["int"](7)) for m in want]
            with self.subTest(float=cast["float"].__name__):
                prices = [(m.cost_per_input_token, m.cost_per_output_token, m.capacity)
                          for m in Config({"models": got}).models]
                self.assertEqual(prices, [(float(m["cost_per_input_token"]),
                                           float(m["cost_per_output_token"]), 7) for m in got])
                smart = llmroute.SmartRouting(got)
                self.assertEqual([(m.cost_per_input_token, m.cost_per_output_token)
                                  for m in smart.config.models], [p[:2] for p in prices])


class NumpyWholeNumberTest(SmartTestCase):
    def test_a_whole_numpy_float_is_a_whole_number_as_a_whole_float_is(self):
        store = Store()
        store.add(QUERIES[0], [("cheap", 1, 10)])
        cfg = Config({"models": MODELS})
        for x in (5.0, np.float64(5.0), np.float32(5.0), np.float16(5.0)):
            with self.subTest(type=type(x).__name__):
                router = Router(cfg, strategy="smart", store=store, n_similar=x)
                self.assertEqual(router.route(query="q", input_tokens=x).input_tokens, 5)
                self.assertEqual(router.route_batch(["q"], input_tokens=[x],
                                                    capacities={"cheap": x}).indices, [0])
        for x in (np.float32(5.5), np.float32("nan"), np.float32("inf")):
            with self.subTest(value=repr(x)):
                with self.assertRaises(llmroute.InvalidInput) as cm:
                    Router(cfg, strategy="smart", store=store).route(query="q",
                                                                     input_tokens=x)
                self.assertIn("Router.route: input_tokens: expected a whole number, got "
                              "float32", str(cm.exception))


if __name__ == "__main__":
    unittest.main()
