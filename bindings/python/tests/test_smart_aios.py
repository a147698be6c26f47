"""SmartRouting called as AIOS calls it, in each version AIOS has shipped:
its constructor's two positional orders, its keyword names, and the
argument types it refuses."""
import json
import os
import tempfile
import unittest

import support  # noqa: F401  (puts the package on the path)
from support import SmartTestCase, priced

import llmroute
from llmroute import InvalidType, SmartRouting

NAMES = ["cheap", "strong"]
CONFIGS = priced(NAMES, [(1e-7, 2e-7), (1e-5, 3e-5)])


def records(n=4):
    """AIOS's data format: "cheap" right on "easy" queries, only "strong"
    right on "hard" ones."""
    out = []
    for i in range(n):
        out.append({"query": "easy sum of small numbers %d" % i, "input_token_length": 8,
                    "outputs": [{"model_name": "cheap", "correctness": 1,
                                 "output_token_length": 20},
                                {"model_name": "strong", "correctness": 1,
                                 "output_token_length": 40}]})
        out.append({"query": "hard proof about prime gaps %d" % i, "input_token_length": 9,
                    "outputs": [{"model_name": "cheap", "correctness": 0,
                                 "output_token_length": 20},
                                {"model_name": "strong", "correctness": 1,
                                 "output_token_length": 40}]})
    return out


class BootstrapFileTestCase(SmartTestCase):
    """A test with a bootstrap file in AIOS's format: self.boot."""

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.boot = os.path.join(self.dir.name, "bootstrap.json")
        with open(self.boot, "w") as f:
            json.dump(records(), f)

    def tearDown(self):
        self.dir.cleanup()


class ConstructorTest(BootstrapFileTestCase):
    def test_second_positional_str_is_bootstrap_url(self):
        # Current AIOS: SmartRouting(llm_configs, bootstrap_url, ...). A str
        # second positional was taken for performance_requirement
        # (ConfigError).
        r = SmartRouting(CONFIGS, self.boot)
        self.assertEqual(r.store.count(), len(records()))
        self.assertEqual(r.performance_requirement, 0.7)
        self.assertEqual(r.n_similar, 16)
        r = SmartRouting(CONFIGS, self.boot, 0.5, 4)
        self.assertEqual((r.performance_requirement, r.n_similar), (0.5, 4))
        self.assertEqual(r.store.count(), len(records()))

    def test_second_positional_none_is_bootstrap_url(self):
        # AIOS's adapter passes config.get("bootstrap_url", None).
        r = SmartRouting(CONFIGS, None, 0.9)
        self.assertEqual(r.performance_requirement, 0.9)
        self.assertEqual(r.store.count(), 0)

    def test_second_positional_number_is_performance_requirement(self):
        # Earlier AIOS: SmartRouting(llm_configs, performance_requirement=0.7, n_similar=16).
        r = SmartRouting(CONFIGS, 0.9, 4)
        self.assertEqual((r.performance_requirement, r.n_similar), (0.9, 4))
        r = SmartRouting(CONFIGS, 1, 8)
        self.assertEqual((r.performance_requirement, r.n_similar), (1.0, 8))

    def test_aios_keywords(self):
        r = SmartRouting(llm_configs=CONFIGS, bootstrap_url=self.boot)
        self.assertEqual(r.store.count(), len(records()))
        r = SmartRouting(llm_configs=CONFIGS, performance_requirement=0.6, n_similar=3)
        self.assertEqual((r.performance_requirement, r.n_similar), (0.6, 3))

    def test_second_positional_of_another_type(self):
        with self.assertRaises(InvalidType) as cm:
            SmartRouting(CONFIGS, [0.7])
        self.assertIn("SmartRouting: the argument after llm_configs: expected bootstrap_url",
                      str(cm.exception))
        with self.assertRaises(InvalidType) as cm:
            SmartRouting(CONFIGS, True)
        self.assertIn("SmartRouting: performance_requirement: expected a number, got bool",
                      str(cm.exception))

    def test_argument_given_twice_or_too_many(self):
        with self.assertRaises(TypeError) as cm:
            SmartRouting(CONFIGS, self.boot, bootstrap_url=self.boot)
        self.assertIn("multiple values for argument 'bootstrap_url'", str(cm.exception))
        with self.assertRaises(TypeError) as cm:
            SmartRouting(CONFIGS, 0.7, performance_requirement=0.7)
        self.assertIn("multiple values for argument 'performance_requirement'",
                      str(cm.exception))
        with self.assertRaises(TypeError):
            SmartRouting(CONFIGS, 0.7, 16, None, 5)

    def test_wrong_types_raise_invalid_type(self):
        cases = [
            ({"performance_requirement": "0.7"}, "performance_requirement"),
            ({"performance_requirement": True}, "performance_requirement"),
            ({"n_similar": "16"}, "n_similar"),
            ({"n_similar": True}, "n_similar"),
            ({"alpha": "0.5"}, "alpha"),
            ({"predictor": 5}, "predictor"),
        ]
        for kw, arg in cases:
            with self.subTest(**kw):
                with self.assertRaises(InvalidType) as cm:
                    SmartRouting(CONFIGS, **kw)
                self.assertTrue(str(cm.exception).startswith("SmartRouting: %s: " % arg),
                                str(cm.exception))

    def test_string_price_raises_invalid_type(self):
        # It was a ConfigError from the library's configuration.
        for key in ("cost_per_input_token", "cost_per_output_token"):
            for bad in ("1e-6", True):
                with self.subTest(key=key, bad=bad):
                    cfg = [dict(CONFIGS[0]), dict(CONFIGS[1])]
                    cfg[1][key] = bad
                    with self.assertRaises(InvalidType) as cm:
                        SmartRouting(cfg)
                    self.assertIn("SmartRouting: llm_configs[1].%s: expected a number" % key,
                                  str(cm.exception))


class KeywordNamesTest(BootstrapFileTestCase):
    def test_get_model_idxs_takes_selected_llm_lists(self):
        # Current AIOS's adapter: get_model_idxs(selected_llm_lists, queries),
        # which by keyword raised TypeError.
        r = SmartRouting(CONFIGS, self.boot, n_similar=4, predictor="aios")
        sel = [{"name": n} for n in NAMES]
        queries = [[{"role": "user", "content": "easy sum of small numbers"}],
                   [{"role": "user", "content": "hard proof about prime gaps"}]]
        want = r.get_model_idxs([sel, sel], queries)
        self.assertEqual(want, [0, 1])
        self.assertEqual(r.get_model_idxs(selected_llm_lists=[sel, sel], queries=queries), want)
        self.assertEqual(r.get_model_idxs(selected_llms=sel, queries=queries,
                                          input_token_lengths=[8, 9]), want)
        with self.assertRaises(TypeError) as cm:
            r.get_model_idxs(sel, queries, selected_llm_lists=[sel, sel])
        self.assertIn("selected_llms and selected_llm_lists", str(cm.exception))


if __name__ == "__main__":
    unittest.main()
