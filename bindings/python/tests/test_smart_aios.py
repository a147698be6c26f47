"""SmartRouting called as AIOS calls it, in each version AIOS has shipped:
its constructor's two positional orders, its keyword names, the argument
types it refuses, prices from litellm (a fake module: litellm is not
needed), and routing over an empty store."""
import dataclasses
import json
import os
import sys
import tempfile
import types
import unittest
import warnings

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


class FakeLitellm:
    """litellm in sys.modules for the duration of a with block: a module
    with the given model_cost, or None (import litellm then raises
    ImportError, as it does where litellm is not installed)."""

    def __init__(self, model_cost):
        if model_cost is None:
            self.module = None
        else:
            self.module = types.ModuleType("litellm")
            self.module.model_cost = model_cost

    def __enter__(self):
        self.saved = sys.modules.get("litellm", _ABSENT)
        sys.modules["litellm"] = self.module
        return self.module

    def __exit__(self, *exc):
        if self.saved is _ABSENT:
            del sys.modules["litellm"]
        else:
            sys.modules["litellm"] = self.saved


_ABSENT = object()

PRICE_TABLE = {
    "gpt-4o-mini": {"input_cost_per_token": 1.5e-7, "output_cost_per_token": 6e-7},
    "gpt-4o": {"input_cost_per_token": 2.5e-6, "output_cost_per_token": 1e-5},
    "ollama/llama3": {"input_cost_per_token": 0.0, "output_cost_per_token": 0.0},
}


@dataclasses.dataclass
class LLMConfig:
    """AIOS's adapter's LLMConfig: no price fields."""
    name: str
    backend: str = None
    max_gpu_memory: str = None
    eval_device: str = None
    hostname: str = None
    api_key: str = None


class PricesFromLitellmTest(SmartTestCase):
    def configs(self):
        return [LLMConfig("openai/gpt-4o", "openai"), LLMConfig("gpt-4o-mini", "openai"),
                LLMConfig("llama3", "ollama", hostname="http://localhost:11434")]

    def test_missing_prices_come_from_litellm(self):
        # AIOS's adapter gives LLMConfig objects without prices; every call
        # raised InvalidInput "model ... has no cost_per_input_token".
        with FakeLitellm(PRICE_TABLE):
            r = SmartRouting(llm_configs=self.configs(), bootstrap_url=None)
        prices = [(m.cost_per_input_token, m.cost_per_output_token) for m in r.config.models]
        self.assertEqual(prices, [(2.5e-6, 1e-5), (1.5e-7, 6e-7), (0.0, 0.0)])
        self.assertEqual(r.config.names, ["openai/gpt-4o", "gpt-4o-mini", "llama3"])
        self.assertEqual(r.config.models[2].base_url, "http://localhost:11434")
        r.store.add_data([{"query": "what is the capital of france", "input_token_length": 7,
                           "outputs": [{"model_name": n, "correctness": 1,
                                        "output_token_length": 10}
                                       for n in ("openai/gpt-4o", "gpt-4o-mini")]}])
        sel = [{"name": "openai/gpt-4o"}, {"name": "gpt-4o-mini"}]
        q = [[{"role": "user", "content": "what is the capital of france"}]]
        self.assertEqual(r.get_model_idxs([sel], q), [1])  # the cheaper, both right

    def test_a_price_in_the_config_comes_first(self):
        cfg = [{"name": "gpt-4o", "cost_per_input_token": 1e-9},
               {"name": "gpt-4o-mini", "cost_per_input_token": 2e-9,
                "cost_per_output_token": 3e-9}]
        with FakeLitellm(PRICE_TABLE):
            r = SmartRouting(cfg)
        prices = [(m.cost_per_input_token, m.cost_per_output_token) for m in r.config.models]
        self.assertEqual(prices, [(1e-9, 1e-5), (2e-9, 3e-9)])

    def test_without_litellm_the_message_says_what_to_do(self):
        with FakeLitellm(None):
            r = SmartRouting(self.configs(), performance_requirement=0.5)
            with self.assertRaises(llmroute.InvalidInput) as cm:
                r.get_model_idxs([{"name": "gpt-4o-mini"}, {"name": "llama3"}], ["q"])
        msg = str(cm.exception)
        self.assertIn("SmartRouting.get_model_idxs: model 'gpt-4o-mini' has no "
                      "cost_per_input_token", msg)
        self.assertIn("litellm is not installed", msg)
        self.assertIn("give them in its llm_config, or install litellm", msg)

    def test_a_model_litellm_does_not_price(self):
        with FakeLitellm(PRICE_TABLE):
            r = SmartRouting([LLMConfig("my-model", "vllm"), LLMConfig("gpt-4o")])
            with self.assertRaises(llmroute.InvalidInput) as cm:
                r.get_model_idxs(None, ["q"])
        msg = str(cm.exception)
        self.assertIn("model 'my-model' has no cost_per_input_token", msg)
        self.assertIn("litellm's price table (litellm.model_cost) has no input_cost_per_token "
                      "and output_cost_per_token for 'my-model' or 'vllm/my-model'", msg)

    def test_litellm_is_not_imported_when_every_price_is_given(self):
        with FakeLitellm(None), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the empty store's
            self.assertEqual(SmartRouting(CONFIGS).get_model_idxs(None, ["q"]), [0])


class EmptyStoreTest(SmartTestCase):
    def test_routes_to_the_first_candidate_and_warns_once(self):
        # AIOS routes on all-zero predictions; this raised EmptyInput.
        r = SmartRouting(CONFIGS)
        lists = [[{"name": "strong"}, {"name": "cheap"}], [{"name": "cheap"}, {"name": "strong"}]]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            self.assertEqual(r.get_model_idxs(lists, ["a", "b"]), [1, 0])
            self.assertEqual(r.get_model_idxs(lists[0], ["a"], [10]), [1])
            self.assertEqual(r.get_model_idxs(None, ["a"]), [0])
        self.assertEqual(len(caught), 1)
        self.assertIn("the history store is empty", str(caught[0].message))
        self.assertIn("first of its candidates", str(caught[0].message))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            SmartRouting(CONFIGS).get_model_idxs(None, ["a"])
        self.assertEqual(len(caught), 1)  # once per router

    def test_requirement_zero_takes_the_lowest_input_cost(self):
        r = SmartRouting(CONFIGS, performance_requirement=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.assertEqual(r.get_model_idxs([{"name": "strong"}, {"name": "cheap"}],
                                              ["a"]), [0])

    def test_predict_gives_zeros(self):
        r = SmartRouting(CONFIGS)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            perf, length, cost = r.predict(["q"], ["strong", "cheap"], [100])
        self.assertEqual(perf, [[0.0, 0.0]])
        self.assertEqual(length, [[0.0, 0.0]])
        self.assertEqual(cost, [[100 * 1e-5, 100 * 1e-7]])

    def test_bad_candidates_still_raise(self):
        r = SmartRouting(CONFIGS)
        with self.assertRaises(llmroute.UnknownModel):
            r.get_model_idxs([["cheap"], ["gpt-5"]], ["a", "b"])
        with self.assertRaises(llmroute.InvalidInput):
            r.get_model_idxs(["cheap", "cheap"], ["a"])

    def test_the_router_still_raises(self):
        r = SmartRouting(CONFIGS)
        with self.assertRaises(llmroute.EmptyInput):
            r.router.route_indices(["a"])
        with self.assertRaises(llmroute.EmptyInput):
            r.get_model_idxs_global(None, ["a"])

    def test_data_added_later_is_routed_on(self):
        r = SmartRouting(CONFIGS, n_similar=4, predictor="aios")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.assertEqual(r.get_model_idxs(None, ["hard proof about prime gaps"]), [0])
        r.store.add_data(records())
        self.assertEqual(r.get_model_idxs(None, ["hard proof about prime gaps"]), [1])


if __name__ == "__main__":
    unittest.main()
