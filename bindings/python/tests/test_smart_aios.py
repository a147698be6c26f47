"""SmartRouting called as AIOS calls it, in each version AIOS has shipped:
its constructor's two positional orders, its keyword names, the argument
types it refuses, prices from litellm (a fake module: litellm is not
needed), routing over an empty store, bootstrap_url downloads (from a
local http.server), and AIOS's QueryStore and optimize methods."""
import itertools
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import types
import unittest
import unittest.mock
import urllib.parse
import warnings
from http.server import BaseHTTPRequestHandler

import support  # noqa: F401  (puts the package on the path)
from support import (CountingEmbed, InTempDir, SmartTestCase, ThreadedServer,
                     assert_read_only, priced)

import llmroute
from llmroute import InvalidType, QueryStore, SmartRouting, routing

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

    def test_none_then_an_int_is_the_earlier_order(self):
        # SmartRouting(cfgs, None, 1) meant n_similar=1 in earlier AIOS and
        # was taken for performance_requirement=1.0.
        r = SmartRouting(CONFIGS, None, 4)
        self.assertEqual((r.performance_requirement, r.n_similar), (None, 4))
        r = SmartRouting(CONFIGS, None, 1, self.boot + ".db")
        self.assertEqual((r.performance_requirement, r.n_similar), (None, 1))
        self.assertEqual(r.store.path, self.boot + ".db")
        r = SmartRouting(CONFIGS, None, 1.0)  # a float: current AIOS's requirement
        self.assertEqual((r.performance_requirement, r.n_similar), (1.0, 16))
        r = SmartRouting(CONFIGS, None, 0.5, 4, self.boot + ".db")
        self.assertEqual((r.performance_requirement, r.n_similar), (0.5, 4))

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

    def test_messages_name_the_method_and_the_callers_argument(self):
        r = SmartRouting(CONFIGS, self.boot, n_similar=4, predictor="aios")
        sel = [{"name": n} for n in NAMES]
        where = "SmartRouting.get_model_idxs: "
        with self.assertRaises(llmroute.UnknownModel) as cm:
            r.get_model_idxs([sel, [{"name": "gpt-5"}]], ["a", "b"])
        self.assertEqual(str(cm.exception), where + "query 1: unknown model 'gpt-5'")
        with self.assertRaises(llmroute.InvalidInput) as cm:
            r.get_model_idxs(selected_llm_lists=[sel, []], queries=["a", "b"])
        self.assertIn(where + "selected_llm_lists[1] is empty", str(cm.exception))


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
    "gpt-4o": {"input_cost_per_token": 2.5e-6, "output_cost_per_token": 1e-5,
               "litellm_provider": "openai"},
    "ollama/llama3": {"input_cost_per_token": 0.0, "output_cost_per_token": 0.0},
}


LLMConfig = support.AiosLLMConfig


class RuntimeModelsTest(SmartTestCase):
    """llm_configs after construction, as AIOS's adapter changes it, and
    the other calls its adapter makes."""

    CHAT = [{"role": "user", "content": "easy sum of small numbers 1"}]

    def test_a_model_registered_as_aios_does_is_routed_to(self):
        # AIOS's _dynamic_register_ollama_model appends to its list and sets
        # router.llm_configs to it. Raised UnknownModel: the list was read
        # once, at construction.
        llm_configs = list(CONFIGS)
        r = SmartRouting(llm_configs, None)
        r.store.add_data(records())
        llm_configs.append({"name": "new", "cost_per_input_token": 0,
                            "cost_per_output_token": 0})
        r.llm_configs = llm_configs
        self.assertEqual(r.get_model_idxs([[{"name": "new"}]], [self.CHAT]), [2])
        self.assertEqual(r.config.names, ["cheap", "strong", "new"])
        # An append alone, and a new list, are seen too.
        llm_configs.append({"name": "newer", "cost_per_input_token": 0,
                            "cost_per_output_token": 0})
        self.assertEqual(r.get_model_idxs([[{"name": "newer"}]], [self.CHAT]), [3])
        r.llm_configs = [CONFIGS[1], CONFIGS[0]]
        self.assertEqual(r.get_model_idxs([["cheap"], ["strong"]], [self.CHAT] * 2), [1, 0])
        reference = SmartRouting(CONFIGS)
        reference.store.add_data(records())
        self.assertEqual(r.predict([self.CHAT], ["cheap", "strong"]),
                         reference.predict([self.CHAT], ["cheap", "strong"]))

    def test_empty_llm_configs_until_a_model_is_registered(self):
        # AIOS's adapter builds its router even when no model started. It
        # was ConfigError "expected at least one model" at construction.
        llm_configs = []
        r = SmartRouting(llm_configs=llm_configs, bootstrap_url=None)
        self.assertIsNone(r.config)
        self.assertEqual(r.get_model_idxs([], []), [])
        for where, call in (("get_model_idxs", lambda: r.get_model_idxs([None], [self.CHAT])),
                            ("predict", lambda: r.predict(["q"])),
                            ("route_batch", lambda: r.route_batch(None, ["q"]))):
            with self.assertRaises(llmroute.EmptyInput) as cm:
                call()
            self.assertIn("SmartRouting.%s: llm_configs is empty: there is no model to route "
                          "to yet" % where, str(cm.exception))
        llm_configs.extend(CONFIGS)
        r.store.add_data(records())
        reference = SmartRouting(CONFIGS)
        reference.store.add_data(records())
        self.assertEqual(r.get_model_idxs([None], [self.CHAT]),
                         reference.get_model_idxs(None, [self.CHAT]))

    def test_no_queries_is_no_choices(self):
        # AIOS returns []; this was EmptyInput "queries is empty".
        r = SmartRouting(CONFIGS)
        self.assertEqual(r.get_model_idxs([], []), [])
        self.assertEqual(r.get_model_idxs(selected_llm_lists=[], queries=[]), [])
        self.assertEqual(r.get_model_idxs(CONFIGS, [], []), [])
        with self.assertRaises(llmroute.InvalidInput):  # still one list per query
            r.get_model_idxs([CONFIGS], [])
        # A generator serves as its list does: none in it is no choices.
        self.assertEqual(r.get_model_idxs(CONFIGS, iter([])), [])
        self.assertEqual(r.get_model_idxs(CONFIGS, (q for q in [])), [])
        # One count per query still: AIOS raises "Number of queries must
        # match number of input token lengths" before it routes anything.
        with self.assertRaisesRegex(llmroute.InvalidInput, "0 queries, 2 lengths"):
            r.get_model_idxs(CONFIGS, [], [1, 2])
        with self.assertRaisesRegex(llmroute.InvalidInput, "0 queries, 1 lengths"):
            r.get_model_idxs(CONFIGS, iter([]), 7)
        with self.assertRaises(llmroute.InvalidType):
            r.get_model_idxs(CONFIGS, [], "abc")
        self.assertEqual(r.get_model_idxs(CONFIGS, [], []), [])
        self.assertEqual(r.get_model_idxs(CONFIGS, [], iter([])), [])

    def test_none_is_every_model_for_a_lone_query_too(self):
        # [None] was InvalidType, while [None, [...]] took None as every model.
        r = SmartRouting(CONFIGS)
        r.store.add_data(records())
        every = r.get_model_idxs(None, [self.CHAT])
        self.assertEqual(r.get_model_idxs([None], [self.CHAT]), every)
        self.assertEqual(r.get_model_idxs(selected_llm_lists=[None, None],
                                          queries=[self.CHAT, self.CHAT]), every * 2)
        self.assertEqual(len(r.predict([self.CHAT], [None])[0][0]), 2)
        with self.assertRaises(llmroute.EmptyInput):
            r.get_model_idxs([[]], [self.CHAT])

    def test_a_chats_input_tokens_are_all_its_messages(self):
        # AIOS counts the whole conversation; only the last user message
        # was counted. The query text is still the last user message.
        system = "You are a careful assistant. " * 20  # 580 bytes
        chat = [{"role": "system", "content": system},
                {"role": "user", "content": [{"type": "text", "text": "hello"},
                                             {"type": "image_url", "image_url": {"url": "x"}}]},
                {"role": "assistant", "content": "hi"},
                {"role": "user", "content": "easy sum of small numbers 1"}]
        expected = llmroute.estimate_tokens("\n".join(
            [system, "hello", "hi", "easy sum of small numbers 1"]))
        self.assertEqual(expected, 155)  # 617 bytes
        r = SmartRouting(CONFIGS)
        r.store.add_data(records())
        res = r.route_batch(["cheap"], [chat, "easy sum of small numbers 1"])
        self.assertEqual([d.input_tokens for d in res.decisions], [expected, 7])
        _, _, cost = r.predict([chat], ["cheap"])
        _, out, _ = r.predict(["easy sum of small numbers 1"], ["cheap"])
        self.assertAlmostEqual(cost[0][0], expected * 1e-7 + out[0][0] * 2e-7)
        # A count given stands; None among them is estimated.
        res = r.route_batch(["cheap"], [chat, chat], input_token_lengths=[5, None])
        self.assertEqual([d.input_tokens for d in res.decisions], [5, expected])
        # The neighbours are the last user message's: the same choice and
        # predictions as for that text alone.
        self.assertEqual(r.predict([chat], None)[0], r.predict([chat[-1]["content"]], None)[0])

    def test_a_chat_without_query_text_is_routed_on_the_priors(self):
        # AIOS routes the empty string; its adapter gives chats and catches
        # nothing, so one chat with no user text raised InvalidInput "smart
        # routing needs the query text" and failed the whole batch. As the
        # gateway serves such a chat: ranked on each candidate's store-wide
        # prior (here cheap right on 4 of 8, strong on 8; 20 and 40 output
        # tokens), with no vector fetched over a dense store.
        chats = [[{"role": "system", "content": "x"}],
                 [{"role": "user", "content": ""}],
                 [{"role": "user", "content": " \n\t"}],
                 [{"role": "user", "content": [{"type": "image_url",
                                                "image_url": {"url": "x"}}]}],
                 [self.CHAT[0], {"role": "assistant", "content": "hi"},
                  {"role": "user", "content": None}]]
        embed = CountingEmbed()
        dense = QueryStore(embed=embed, embedder="e")
        dense.add_data(records())
        for store in (None, dense):
            r = SmartRouting(CONFIGS)
            if store is None:
                r.store.add_data(records())
            else:
                r.store = store
            before = len(embed.calls)
            for q in chats:
                self.assertEqual(r.get_model_idxs([NAMES, NAMES], [q, self.CHAT])[0], 1)
                perf, out, _ = r.predict([q], NAMES)
                self.assertEqual((perf, out), ([[0.5, 1.0]], [[20.0, 40.0]]))
                res = r.route_batch(NAMES, [q])
                self.assertEqual(res.decisions[0].name, "strong")
                self.assertEqual(r.get_model_idxs_global([NAMES], [q]), [1])
            # A blank text given as a string is ranked the same way.
            self.assertEqual(r.predict([" \n"], NAMES)[:2], ([[0.5, 1.0]], [[20.0, 40.0]]))
            # Only the chat with text was embedded (once per call that had it).
            self.assertEqual([t for call in embed.calls[before:] for t in call],
                             [self.CHAT[0]["content"]] * (len(chats) if store else 0))
        # A query given as the string "" is still refused, as the library
        # and `llmroute route` refuse it.
        r = SmartRouting(CONFIGS)
        r.store.add_data(records())
        with self.assertRaises(llmroute.InvalidInput) as cm:
            r.get_model_idxs([NAMES], [""])
        self.assertIn("smart routing needs the query text", str(cm.exception))

    def test_the_string_empty_is_refused_over_a_dense_store_without_embedding_it(self):
        # Over a store of embed= the empty string was embedded and routed
        # (to "strong" here), where over the built-in embedder's it is
        # refused; now it is refused there too, in the same words, with
        # no call to embed, on every method that routes queries.
        def errors(store):
            r = SmartRouting(CONFIGS)
            r.store = store
            calls = [lambda: r.get_model_idxs([NAMES, NAMES], ["easy sum", ""]),
                     lambda: r.get_model_idxs(NAMES, [""]),
                     lambda: r.predict(["easy sum", ""], NAMES),
                     lambda: r.route_batch(NAMES, ["easy sum", ""]),
                     lambda: r.get_model_idxs_global([NAMES, NAMES], ["easy sum", ""]),
                     lambda: r.router.route(NAMES, ""),
                     lambda: store.predict(["easy sum", ""], NAMES)]
            out = []
            for call in calls:
                with self.assertRaises(llmroute.InvalidInput) as cm:
                    call()
                out.append(str(cm.exception))
            return out
        builtin = QueryStore()
        builtin.add_data(records())
        embed = CountingEmbed()
        dense = QueryStore(embed=embed, embedder="e")
        dense.add_data(records())
        before = len(embed.calls)
        got = errors(dense)
        self.assertEqual(embed.calls[before:], [])
        self.assertEqual(got, errors(builtin))
        self.assertIn("query 1: smart routing needs the query text", got[0])
        # A single candidate is still given, as over the built-in store.
        r = SmartRouting(CONFIGS)
        r.store = dense
        self.assertEqual(r.get_model_idxs([["strong"]], [""]), [1])
        self.assertEqual(embed.calls[before:], [])

    def test_no_history_for_a_model_predicts_0_not_nan(self):
        # The default predictor leaves a model without outcomes among the
        # neighbours unknown; predict() gave NaN for it, which np.argmax
        # takes for the highest score.
        r = SmartRouting(CONFIGS + [{"name": "unseen", "cost_per_input_token": 0,
                                     "cost_per_output_token": 0}])
        r.store.add_data(records())
        perf, out, _ = r.predict(["easy sum of small numbers 1"], None)
        self.assertEqual(perf[0][2], 0.0)
        self.assertFalse(any(x != x for x in perf[0] + out[0]))


class LocalPricesTest(SmartTestCase):
    """A model served locally, with no price in its config or litellm."""

    def configs(self):
        return [LLMConfig("gpt-4o-mini", "openai"),
                LLMConfig("qwen2.5:7b", "ollama", hostname="http://localhost:11434"),
                LLMConfig("mistral-7b", "huggingface", max_gpu_memory="12GiB"),
                LLMConfig("llama-3-8b", "vllm", hostname="http://localhost:8000/v1")]

    def test_a_local_model_is_priced_0_with_one_warning(self):
        # It was refused as a candidate, so a batch with one default
        # request (every model) failed whole.
        cfgs = self.configs()
        with FakeLitellm(PRICE_TABLE), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            r = SmartRouting(cfgs, None)
            r.store.add_data([{"query": "what is %d plus %d" % (i, i), "input_token_length": 8,
                               "outputs": [{"model_name": c.name, "correctness": 1,
                                            "output_token_length": 50} for c in cfgs]}
                              for i in range(8)])
            q = [[{"role": "user", "content": "what is 3 plus 3"}]]
            self.assertEqual(r.get_model_idxs([None, [{"name": "gpt-4o-mini"}]], q * 2), [1, 0])
            self.assertEqual(r.get_model_idxs(None, q), [1])
            cfgs.append(LLMConfig("phi3", "sglang"))  # a rebuild warns only for the new one
            _, _, cost = r.predict(q, ["phi3", "gpt-4o-mini"])
            self.assertEqual(cost[0][0], 0.0)
        prices = [(m.cost_per_input_token, m.cost_per_output_token) for m in r.config.models]
        self.assertEqual(prices, [(1.5e-7, 6e-7), (0.0, 0.0), (0.0, 0.0), (0.0, 0.0),
                                  (0.0, 0.0)])
        msgs = [str(w.message) for w in caught]
        self.assertEqual(len(msgs), 4, msgs)
        for w, (name, backend) in zip(caught, [("qwen2.5:7b", "ollama"),
                                               ("mistral-7b", "huggingface"),
                                               ("llama-3-8b", "vllm"), ("phi3", "sglang")]):
            self.assertIs(w.category, RuntimeWarning)
            self.assertEqual(w.filename, __file__)
            msg = str(w.message)
            self.assertIn("model '%s' has no cost_per_input_token or cost_per_output_token"
                          % name, msg)
            self.assertIn("its backend '%s' serves it locally, so it is priced 0 per token"
                          % backend, msg)
            self.assertIn("To set a price, give cost_per_input_token and "
                          "cost_per_output_token in its llm_config", msg)

    def test_a_price_given_or_in_litellm_comes_first(self):
        table = dict(PRICE_TABLE)
        table["ollama/qwen2.5:7b"] = {"input_cost_per_token": 1e-9, "output_cost_per_token": 2e-9}
        with FakeLitellm(table), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            r = SmartRouting([LLMConfig("qwen2.5:7b", "ollama"),
                              {"name": "llama3", "backend": "vllm",
                               "cost_per_input_token": 3e-9}])
        prices = [(m.cost_per_input_token, m.cost_per_output_token) for m in r.config.models]
        self.assertEqual(prices, [(1e-9, 2e-9), (3e-9, 0.0)])
        self.assertEqual(len(caught), 1)  # llama3's output price
        self.assertIn("model 'llama3'", str(caught[0].message))

    def test_without_litellm_too_and_a_hosted_model_is_still_refused(self):
        with FakeLitellm(None), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            r = SmartRouting(self.configs(), None)
            with self.assertRaises(llmroute.InvalidInput) as cm:
                r.get_model_idxs(None, ["q"])
        self.assertIn("model 'gpt-4o-mini' has no cost_per_input_token", str(cm.exception))
        self.assertEqual(len([w for w in caught if "priced 0" in str(w.message)]), 3)
        self.assertIn("litellm is not installed", str(caught[0].message))
        self.assertIn("ollama", routing.LOCAL_BACKENDS)


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
            r = SmartRouting([LLMConfig("my-model", "novita"), LLMConfig("gpt-4o")])
            with self.assertRaises(llmroute.InvalidInput) as cm:
                r.get_model_idxs(None, ["q"])
        msg = str(cm.exception)
        self.assertIn("model 'my-model' has no cost_per_input_token", msg)
        self.assertIn("litellm's price table (litellm.model_cost) has no input_cost_per_token "
                      "and output_cost_per_token for 'novita/my-model' or 'my-model'", msg)

    def test_a_lone_unpriced_candidate_is_routed_to(self):
        # A request with one candidate gets it in every case, as the library
        # and the README have it; a model without prices was refused even
        # alone. With another candidate it is still refused, and so it is
        # by the methods that report its cost. (llama3 on a hosted backend:
        # on a local one it is priced 0.)
        configs = self.configs()[:2] + [LLMConfig("llama3", "groq")]
        with FakeLitellm(None):
            r = SmartRouting(configs, performance_requirement=0.5)
            q = [[{"role": "user", "content": "what is the capital of france"}]]
            for _ in range(2):  # over an empty store, then over one with data
                self.assertEqual(r.get_model_idxs([[configs[2]]], q), [2])
                self.assertEqual(r.get_model_idxs([{"name": "gpt-4o-mini"}], q * 2), [1, 1])
                self.assertEqual(r.get_model_idxs([["llama3"], ["openai/gpt-4o"]], q * 2),
                                 [2, 0])
                with self.assertRaises(llmroute.InvalidInput) as cm:
                    r.get_model_idxs([["llama3"], ["llama3", "gpt-4o-mini"]], q * 2)
                self.assertIn("model 'llama3' has no cost_per_input_token", str(cm.exception))
                for call in (lambda: r.predict(q, ["llama3"]),
                             lambda: r.route_batch(["llama3"], q)):
                    with self.assertRaises(llmroute.InvalidInput) as cm:
                        call()
                    self.assertIn("model 'llama3' has no cost_per_input_token",
                                  str(cm.exception))
                r.store.add_data([{"query": "what is the capital of france",
                                   "input_token_length": 7,
                                   "outputs": [{"model_name": "llama3", "correctness": 1,
                                                "output_token_length": 10}]}])
            r = SmartRouting([LLMConfig("solo")])
            self.assertEqual(r.get_model_idxs(None, ["q"]), [0])

    def test_litellm_is_not_imported_when_every_price_is_given(self):
        # This passed with litellm imported every time: litellm was absent.
        tried = []

        class Finder:
            def find_spec(self, name, path=None, target=None):
                if name == "litellm" or name.startswith("litellm."):
                    tried.append(name)
                    raise ImportError("no litellm in this test")
                return None

        saved = sys.modules.pop("litellm", _ABSENT)
        sys.meta_path.insert(0, Finder())
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the empty store's
                self.assertEqual(SmartRouting(CONFIGS).get_model_idxs(None, ["q"]), [0])
            self.assertEqual(tried, [])
            SmartRouting([{"name": "unpriced"}])  # the finder does see an import
            self.assertEqual(tried, ["litellm"])
        finally:
            del sys.meta_path[0]
            if saved is not _ABSENT:
                sys.modules["litellm"] = saved

    def test_the_backend_names_the_price_first(self):
        # ("gpt-4", backend="azure") took gpt-4's price, though litellm has
        # azure/gpt-4's; ("llama3", "ollama") took a bare "llama3" entry.
        table = {"gpt-4": {"input_cost_per_token": 3e-5, "output_cost_per_token": 6e-5},
                 "azure/gpt-4": {"input_cost_per_token": 1e-5, "output_cost_per_token": 2e-5},
                 "llama3": {"input_cost_per_token": 9e-6, "output_cost_per_token": 9e-6},
                 "ollama/llama3": {"input_cost_per_token": 0.0, "output_cost_per_token": 0.0}}
        with FakeLitellm(table), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            r = SmartRouting([LLMConfig("gpt-4", "azure"), LLMConfig("llama3", "ollama")])
            bare = SmartRouting([LLMConfig("gpt-4")])
        prices = [(m.cost_per_input_token, m.cost_per_output_token)
                  for m in r.config.models + bare.config.models]
        self.assertEqual(prices, [(1e-5, 2e-5), (0.0, 0.0), (3e-5, 6e-5)])
        self.assertEqual(caught, [])

    def test_a_price_without_the_provider_prefix_warns(self):
        # "bedrock/claude-3" silently took "claude-3"'s price.
        table = {"claude-3": {"input_cost_per_token": 3e-6, "output_cost_per_token": 1.5e-5,
                              "litellm_provider": "anthropic"}}
        with FakeLitellm(table), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            r = SmartRouting([LLMConfig("bedrock/claude-3")])
        self.assertEqual(r.config.models[0].cost_per_input_token, 3e-6)
        self.assertEqual(len(caught), 1)
        msg = str(caught[0].message)
        self.assertIn("no entry 'bedrock/claude-3'; the price of 'claude-3' (litellm_provider "
                      "'anthropic') is used", msg)
        self.assertEqual(caught[0].filename, __file__)
        # The provider's own entry under the bare name: no warning.
        with FakeLitellm(PRICE_TABLE), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            SmartRouting([LLMConfig("openai/gpt-4o")])
        self.assertEqual(caught, [])


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
        with self.assertRaises(llmroute.UnknownModel) as cm:
            r.get_model_idxs([["cheap"], ["gpt-5"]], ["a", "b"])
        self.assertEqual(str(cm.exception),
                         "SmartRouting.get_model_idxs: query 1: unknown model 'gpt-5'")
        with self.assertRaises(llmroute.InvalidInput):
            r.get_model_idxs(["cheap", "cheap"], ["a"])

    def test_the_router_still_raises(self):
        r = SmartRouting(CONFIGS)
        with self.assertRaises(llmroute.EmptyInput):
            r.router.route_indices(["a"])
        with self.assertRaises(llmroute.EmptyInput):
            r.get_model_idxs_global(None, ["a"])

    def test_each_router_warns_under_the_default_filters(self):
        # The same message from the same place was shown once per process:
        # Python's default filter drops repeats.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")  # a fresh registry, the default action
            for _ in range(3):
                r = SmartRouting(CONFIGS)
                r.get_model_idxs(None, ["a"])
                r.get_model_idxs(None, ["a"])
        self.assertEqual(len(caught), 3, [str(w.message) for w in caught])
        self.assertIn("(router #", str(caught[0].message))
        self.assertIn("store in memory", str(caught[0].message))

    def test_threads_get_the_fallback_or_routing_never_the_error(self):
        # Emptiness was checked again after the router raised: with data
        # added in between, the caller got EmptyInput.
        failures = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for run in range(80):
                r = SmartRouting(CONFIGS, n_similar=4)
                start = threading.Barrier(5)

                def route():
                    start.wait()
                    try:
                        for _ in range(4):
                            r.get_model_idxs(None, ["hard proof about prime gaps"])
                            r.predict(["hard proof about prime gaps"])
                    except Exception as e:
                        failures.append(repr(e))

                def add():
                    start.wait()
                    r.store.add_data(records(1))

                threads = [threading.Thread(target=route) for _ in range(4)]
                threads.append(threading.Thread(target=add))
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(30)
        self.assertEqual(failures, [])

    def test_data_another_connection_adds_is_read_before_falling_back(self):
        # The fallback stayed until store.refresh() was called.
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "h.db")
            r = SmartRouting(CONFIGS, n_similar=4, predictor="aios", store_path=path)
            other = QueryStore(path=path)
            other.add_data(records())
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                self.assertEqual(r.get_model_idxs(None, ["hard proof about prime gaps"]), [1])
                perf, _, _ = r.predict(["hard proof about prime gaps"])
            self.assertEqual(perf, [[0.0, 1.0]])
            self.assertEqual(caught, [])
            other.close()
            r.store.close()

    def test_data_added_later_is_routed_on(self):
        r = SmartRouting(CONFIGS, n_similar=4, predictor="aios")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.assertEqual(r.get_model_idxs(None, ["hard proof about prime gaps"]), [0])
        r.store.add_data(records())
        self.assertEqual(r.get_model_idxs(None, ["hard proof about prime gaps"]), [1])


class FileServer(ThreadedServer):
    """A local HTTP server on 127.0.0.1 (port 0) in a thread: GET answers
    routes[path] = (status, content type, body bytes, delay in seconds),
    or calls routes[path](handler) to write the answer itself; 404 for
    any other path. `hits` counts the requests per path."""

    def __init__(self, routes):
        self.routes = routes
        self.hits = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                path = self.path.split("?", 1)[0]
                outer.hits[path] = outer.hits.get(path, 0) + 1
                route = outer.routes.get(path, (404, "text/plain", b"no such file", 0))
                if callable(route):  # writes the whole answer itself
                    try:
                        route(self)
                    except OSError:
                        pass
                    return
                status, ctype, body, delay = route
                if delay:
                    time.sleep(delay)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:  # the client gave up (the timeout test)
                    pass

        self._serve(Handler)


BOOT = json.dumps(records()).encode()


class BootstrapDownloadTest(SmartTestCase):
    """bootstrap_url over http: raised "bootstrap_url ... is remote"."""

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.store_path = os.path.join(self.dir.name, "h.db")

    def tearDown(self):
        self.dir.cleanup()

    def cache_files(self):
        return [f for f in os.listdir(self.dir.name) if f.startswith("llmroute-bootstrap-")]

    def test_downloads_imports_and_caches_beside_the_store(self):
        with FileServer({"/boot.json": (200, "application/json", BOOT, 0)}) as srv:
            r = SmartRouting(CONFIGS, srv.url + "/boot.json", store_path=self.store_path)
            self.assertEqual(r.store.count(), len(records()))
            self.assertEqual(len(self.cache_files()), 1)
            # Another empty store in the folder reads the cached file.
            r2 = SmartRouting(CONFIGS, srv.url + "/boot.json",
                              store_path=os.path.join(self.dir.name, "h2.db"))
            self.assertEqual(r2.store.count(), len(records()))
            self.assertEqual(srv.hits, {"/boot.json": 1})
            # A store that has data downloads nothing.
            os.unlink(os.path.join(self.dir.name, self.cache_files()[0]))
            SmartRouting(CONFIGS, srv.url + "/boot.json", store_path=self.store_path)
            self.assertEqual(srv.hits, {"/boot.json": 1})

    def test_in_memory_store_caches_in_the_temporary_directory(self):
        with FileServer({"/b.jsonl": (200, "application/octet-stream",
                                      b"\n".join(json.dumps(x).encode() for x in records()),
                                      0)}) as srv:
            url = srv.url + "/b.jsonl"
            cache = routing._bootstrap_cache(url, None)
            folder = os.path.dirname(cache)
            self.assertEqual(os.path.dirname(folder), tempfile.gettempdir())
            st = os.stat(folder)
            self.assertEqual((st.st_uid, st.st_mode & 0o777), (os.getuid(), 0o700))
            try:
                r = SmartRouting(llm_configs=CONFIGS, bootstrap_url=url)
                self.assertEqual(r.store.count(), len(records()))
                self.assertTrue(os.path.exists(cache))
            finally:
                if os.path.exists(cache):
                    os.unlink(cache)

    def test_http_error_names_the_url_and_the_reason(self):
        with FileServer({}) as srv:
            with self.assertRaises(llmroute.IOFailure) as cm:
                SmartRouting(CONFIGS, srv.url + "/missing.json", store_path=self.store_path)
        self.assertEqual(str(cm.exception), "SmartRouting: bootstrap_url: downloading "
                         "%s/missing.json failed: HTTP 404 Not Found" % srv.url)
        self.assertEqual(self.cache_files(), [])

    def test_unreachable_server(self):
        srv = FileServer({})
        url = srv.url + "/boot.json"
        srv.close()  # nothing listens there now
        with self.assertRaises(llmroute.IOFailure) as cm:
            SmartRouting(CONFIGS, url, store_path=self.store_path)
        self.assertIn("SmartRouting: bootstrap_url: downloading %s failed: " % url,
                      str(cm.exception))
        self.assertIn("refused", str(cm.exception))

    def test_timeout(self):
        with FileServer({"/slow.json": (200, "application/json", BOOT, 3)}) as srv:
            t0 = time.monotonic()
            with self.assertRaises(llmroute.IOFailure) as cm:
                SmartRouting(CONFIGS, srv.url + "/slow.json", store_path=self.store_path,
                             bootstrap_timeout=0.3)
            self.assertLess(time.monotonic() - t0, 2.5)
        self.assertIn("failed: no answer within 0.3 s", str(cm.exception))
        self.assertEqual(self.cache_files(), [])

    def test_download_that_is_no_data(self):
        with FileServer({"/boot.json": (200, "application/json", b"[{\"query\": 5}]", 0)}) as srv:
            with self.assertRaises(llmroute.InvalidInput) as cm:
                SmartRouting(CONFIGS, srv.url + "/boot.json", store_path=self.store_path)
        self.assertTrue(str(cm.exception).startswith(
            "SmartRouting: bootstrap_url: the data downloaded from %s/boot.json: "
            % srv.url), str(cm.exception))
        self.assertEqual(self.cache_files(), [])  # removed: the next try downloads again

    def test_google_drive_share_link_is_made_a_download_link(self):
        conv = routing.bootstrap_download_url
        want = "https://drive.google.com/uc?export=download&id=1SF7MAvtnsED7KMeMdW3JDIWYNGPwIwL7"
        self.assertEqual(conv("https://drive.google.com/file/d/1SF7MAvtnsED7KMeMdW3JDIWYNGPwIwL7"
                              "/view"), want)
        self.assertEqual(conv("https://drive.google.com/file/d/1SF7MAvtnsED7KMeMdW3JDIWYNGPwIwL7"
                              "/view?usp=sharing"), want)
        self.assertEqual(conv("https://drive.google.com/open?id=1SF7MAvtnsED7KMeMdW3JDIWYNGPwIwL7"),
                         want)
        self.assertEqual(conv("http://127.0.0.1:8/b.json"), "http://127.0.0.1:8/b.json")

    def drive_page(self, action):
        return (b'<html><body><form id="download-form" action="%s" method="get">'
                b'<input type="hidden" name="id" value="XYZ">'
                b'<input type="hidden" name="export" value="download">'
                b'<input type="hidden" name="confirm" value="t"></form></body></html>'
                % action.encode())

    def test_past_a_virus_scan_page(self):
        # Google Drive puts a form before a file too large to scan; the
        # download follows it once, with its hidden fields. The local
        # server stands for Drive (its host and http taken as Drive's).
        routes = {"/uc": (200, "text/html; charset=utf-8", self.drive_page("/download"), 0),
                  "/download": (200, "application/octet-stream", BOOT, 0)}
        with FileServer(routes) as srv, \
                unittest.mock.patch.object(routing, "_DRIVE_HOSTS", ("127.0.0.1",)), \
                unittest.mock.patch.object(routing, "_DRIVE_FORM_SCHEMES", ("http", "https")):
            r = SmartRouting(CONFIGS, srv.url + "/uc?id=XYZ", store_path=self.store_path)
            self.assertEqual(r.store.count(), len(records()))
            self.assertEqual(srv.hits, {"/uc": 1, "/download": 1})

    def test_a_form_is_followed_only_on_drive_and_to_https(self):
        # Any server's form was followed, through urlopen, whatever its
        # action: file:// and ftp:// too.
        routes = {"/uc": (200, "text/html", self.drive_page("/download"), 0),
                  "/file": (200, "text/html", self.drive_page("file://" + self.store_path), 0),
                  "/download": (200, "application/octet-stream", BOOT, 0)}
        with FileServer(routes) as srv:
            cases = [("/uc", ()), ("/file", ("127.0.0.1",)), ("/uc", ("127.0.0.1",))]
            for path, hosts in cases:  # not Drive's page; no https action
                with self.subTest(path=path, hosts=hosts), \
                        unittest.mock.patch.object(routing, "_DRIVE_HOSTS", hosts):
                    with self.assertRaises(llmroute.IOFailure) as cm:
                        SmartRouting(CONFIGS, srv.url + path, store_path=self.store_path)
                    self.assertIn("is the file shared for anyone", str(cm.exception))
            self.assertNotIn("/download", srv.hits)
        self.assertEqual(self.cache_files(), [])

    def test_a_redirect_to_another_scheme_is_refused(self):
        # urllib follows a redirect to ftp://.
        def to_ftp(h):
            h.send_response(302)
            h.send_header("Location", "ftp://127.0.0.1:1/boot.json")
            h.send_header("Content-Length", "0")
            h.end_headers()

        with FileServer({"/boot.json": to_ftp}) as srv:
            with self.assertRaises(llmroute.IOFailure) as cm:
                SmartRouting(CONFIGS, srv.url + "/boot.json", store_path=self.store_path)
        self.assertIn("HTTP 302 redirects to ftp://127.0.0.1:1/boot.json, which is no http(s) "
                      "URL", str(cm.exception))

    def test_a_body_cut_short_is_neither_imported_nor_cached(self):
        # A body shorter than its Content-Length counted as the download,
        # and became the cache that later stores trusted.
        def short(h):
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(BOOT)))
            h.end_headers()
            h.wfile.write(BOOT[:len(BOOT) // 2])
            h.close_connection = True

        def short_chunked(h):
            h.protocol_version = "HTTP/1.1"
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            h.wfile.write(b"%x\r\n" % len(BOOT) + BOOT[:100])
            h.close_connection = True

        routes = {"/short.json": short, "/chunked.json": short_chunked}
        with FileServer(routes) as srv:
            for path, why in (("/short.json", "the connection closed after %d of the %d bytes"
                               % (len(BOOT) // 2, len(BOOT))),
                              ("/chunked.json", "the body was cut short")):
                with self.subTest(path=path):
                    with self.assertRaises(llmroute.IOFailure) as cm:
                        SmartRouting(CONFIGS, srv.url + path, store_path=self.store_path)
                    self.assertIn("downloading %s%s failed: %s" % (srv.url, path, why),
                                  str(cm.exception))
                    self.assertEqual([f for f in os.listdir(self.dir.name)
                                      if "llmroute-bootstrap-" in f], [])
                    self.assertEqual(SmartRouting(CONFIGS, store_path=self.store_path)
                                     .store.count(), 0)
            # The whole file now: downloaded again, not read from a cache.
            srv.routes["/short.json"] = (200, "application/json", BOOT, 0)
            r = SmartRouting(CONFIGS, srv.url + "/short.json", store_path=self.store_path)
            self.assertEqual(r.store.count(), len(records()))
            self.assertEqual(srv.hits["/short.json"], 2)
            self.assertEqual(len(self.cache_files()), 1)

    def assertTimesOutInOneSecond(self, answer):
        """A download of /drip.json, answered by answer(handler), with
        bootstrap_timeout=1: IOFailure within 3 s, naming the URL, and no
        cache file left."""
        with FileServer({"/drip.json": answer}) as srv:
            t0 = time.monotonic()
            with self.assertRaises(llmroute.IOFailure) as cm:
                SmartRouting(CONFIGS, srv.url + "/drip.json", store_path=self.store_path,
                             bootstrap_timeout=1)
            self.assertLess(time.monotonic() - t0, 3)
        self.assertEqual(str(cm.exception), "SmartRouting: bootstrap_url: downloading "
                         "%s/drip.json failed: no answer within 1 s" % srv.url)
        self.assertEqual(self.cache_files(), [])

    def test_the_timeout_bounds_the_whole_download(self):
        # bootstrap_timeout bounded each read: a server sending a byte every
        # 0.1 s held the download for as long as it kept sending.
        def drip(h):
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(BOOT)))
            h.end_headers()
            for i in range(len(BOOT)):
                h.wfile.write(BOOT[i:i + 1])
                h.wfile.flush()
                time.sleep(0.1)

        self.assertTimesOutInOneSecond(drip)

    def test_the_timeout_bounds_a_head_sent_slowly(self):
        # Each read of the response's head had the whole timeout: a server
        # sending its head a byte every 0.1 s held the download as long.
        head = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"X-Padding: %s\r\nContent-Length: %d\r\n\r\n" % (b"x" * 60, len(BOOT)))

        def drip_head(h):
            for i in range(len(head)):
                h.wfile.write(head[i:i + 1])
                h.wfile.flush()
                time.sleep(0.1)
            h.wfile.write(BOOT)

        self.assertTimesOutInOneSecond(drip_head)

    def test_the_timeout_bounds_the_name_lookup_too(self):
        # The host's name was looked up (socket.getaddrinfo) in the
        # caller's thread without a bound: a resolver that took 5 s held
        # the download 5 s past a bootstrap_timeout of 1.
        real = socket.getaddrinfo
        release = threading.Event()

        def slow(host, *args, **kw):
            release.wait(5)
            return real(host, *args, **kw)

        with FileServer({"/boot.json": (200, "application/json", BOOT, 0)}) as srv:
            url = "http://localhost:%d/boot.json" % urllib.parse.urlsplit(srv.url).port
            socket.getaddrinfo = slow
            try:
                t0 = time.monotonic()
                with self.assertRaises(llmroute.IOFailure) as cm:
                    SmartRouting(CONFIGS, url, store_path=self.store_path, bootstrap_timeout=1)
                took = time.monotonic() - t0
            finally:
                socket.getaddrinfo = real
                release.set()
            self.assertLess(took, 3)
            self.assertEqual(str(cm.exception), "SmartRouting: bootstrap_url: downloading "
                             "%s failed: no answer within 1 s" % url)
            self.assertEqual(self.cache_files(), [])
            time.sleep(0.3)  # the late answer of the lookup opens nothing
            self.assertEqual(srv.hits, {})

    def test_a_malformed_answer_is_an_io_failure(self):
        # http.client's BadStatusLine escaped as it was.
        def garbage(h):
            h.wfile.write(b"HTTP/1.1 abc\r\n\r\n")
            h.close_connection = True

        with FileServer({"/boot.json": garbage}) as srv:
            with self.assertRaises(llmroute.IOFailure) as cm:
                SmartRouting(CONFIGS, srv.url + "/boot.json", store_path=self.store_path)
        self.assertIn("downloading %s/boot.json failed: BadStatusLine" % srv.url,
                      str(cm.exception))

    def test_timeouts_and_urls_that_cannot_be_used(self):
        # inf and 1e300 raised OverflowError from the socket; a lone
        # surrogate UnicodeEncodeError from the cache file's name.
        for t in (float("inf"), 1e300, 86401, 0, -1):
            with self.subTest(t=t):
                with self.assertRaises(llmroute.InvalidInput) as cm:
                    SmartRouting(CONFIGS, "http://127.0.0.1:1/b.json", bootstrap_timeout=t)
                self.assertIn("SmartRouting: bootstrap_timeout: expected a number of seconds "
                              "> 0 and at most 86400", str(cm.exception))
                with self.assertRaises(llmroute.InvalidInput) as cm:
                    QueryStore(bootstrap_url="http://127.0.0.1:1/b.json", bootstrap_timeout=t)
                self.assertIn("QueryStore: bootstrap_timeout:", str(cm.exception))
        with self.assertRaises(llmroute.InvalidInput) as cm:
            SmartRouting(CONFIGS, "http://127.0.0.1:1/\udc80.json")
        self.assertIn("SmartRouting: bootstrap_url: 'http://127.0.0.1:1/\\udc80.json': a URL "
                      "cannot hold a lone surrogate", str(cm.exception))

    def test_bootstrap_url_is_checked_over_a_store_with_data(self):
        # Its type and scheme were checked only when the store was empty.
        q = QueryStore(path=self.store_path)
        q.add_data(records())
        q.close()
        with self.assertRaises(InvalidType):
            QueryStore(path=self.store_path, bootstrap_url=5)
        with self.assertRaises(llmroute.InvalidInput) as cm:
            QueryStore(path=self.store_path, bootstrap_url="ftp://x/y")
        self.assertIn("expected an http://, https:// or file:// URL", str(cm.exception))
        with self.assertRaises(InvalidType):
            SmartRouting(CONFIGS, store_path=self.store_path, bootstrap_url=5)

    def test_a_cache_folder_others_could_write_in_is_refused(self):
        # A folder llmroute-<uid> that another user made, or that others
        # may write in, is refused, naming it.
        saved = tempfile.tempdir
        tempfile.tempdir = self.dir.name
        try:
            folder = os.path.join(self.dir.name, "llmroute-%d" % os.getuid())
            os.mkdir(folder)
            os.chmod(folder, 0o777)
            with self.assertRaises(llmroute.IOFailure) as cm:
                SmartRouting(CONFIGS, "http://127.0.0.1:1/b.json")
            self.assertIn("the cache folder %s is refused: others may use it (mode 777)"
                          % folder, str(cm.exception))
            if os.getuid() == 0:
                os.chmod(folder, 0o700)
                os.chown(folder, 65534, -1)
                with self.assertRaises(llmroute.IOFailure) as cm:
                    SmartRouting(CONFIGS, "http://127.0.0.1:1/b.json")
                self.assertIn("the cache folder %s is refused: it belongs to another user "
                              "(uid 65534)" % folder, str(cm.exception))
        finally:
            tempfile.tempdir = saved

    def test_a_web_page_is_no_data(self):
        with FileServer({"/boot": (200, "text/html", b"<html>sign in</html>", 0)}) as srv:
            with self.assertRaises(llmroute.IOFailure) as cm:
                SmartRouting(CONFIGS, srv.url + "/boot", store_path=self.store_path)
        self.assertIn("is the file shared for anyone with the link?", str(cm.exception))


CHILD = """
import sys, time
sys.path.insert(0, sys.argv[1])
from llmroute import QueryStore
start, path, url = float(sys.argv[2]), sys.argv[3], sys.argv[4]
time.sleep(max(0.0, start - time.time()))
QueryStore(path=path, bootstrap_url=url)
"""


class BootstrapTogetherTest(SmartTestCase):
    """Processes bootstrapping one store at once: each found it empty and
    imported, so 3 processes gave 3 times the records."""

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.store_path = os.path.join(self.dir.name, "h.db")

    def tearDown(self):
        self.dir.cleanup()

    def bootstrap_together(self, url, n=3):
        start = time.time() + 1.0
        procs = [subprocess.Popen([sys.executable, "-c", CHILD, support.PACKAGE_ROOT,
                                   repr(start), self.store_path, url],
                                  stderr=subprocess.PIPE)
                 for _ in range(n)]
        for p in procs:
            _, err = p.communicate(timeout=60)
            self.assertEqual(p.returncode, 0, err.decode())
        q = QueryStore(path=self.store_path)
        try:
            return q.count()
        finally:
            q.close()

    def test_a_local_file_is_imported_once(self):
        boot = os.path.join(self.dir.name, "boot.json")
        with open(boot, "w") as f:
            json.dump(records(), f)
        self.assertEqual(self.bootstrap_together(boot), len(records()))

    def test_a_store_path_given_as_bytes(self):
        # The lock file's and the cache file's names were made by adding a
        # str to the path: TypeError for a path given as bytes.
        boot = os.path.join(self.dir.name, "boot.json")
        with open(boot, "w") as f:
            json.dump(records(), f)
        q = QueryStore(path=os.fsencode(self.store_path), bootstrap_url=boot)
        self.assertEqual(q.count(), len(records()))
        q.close()
        with FileServer({"/boot.json": (200, "application/json", BOOT, 0)}) as srv:
            path = os.fsencode(os.path.join(self.dir.name, "h2.db"))
            q = QueryStore(path=path, bootstrap_url=srv.url + "/boot.json")
            self.assertEqual(q.count(), len(records()))
            q.close()

    def test_a_download_is_imported_once(self):
        with FileServer({"/boot.json": (200, "application/json", BOOT, 0.3)}) as srv:
            self.assertEqual(self.bootstrap_together(srv.url + "/boot.json"), len(records()))
            self.assertEqual(srv.hits, {"/boot.json": 1})


class AiosQueryStoreTest(InTempDir, SmartTestCase):
    def test_a_model_name_makes_no_store_file(self):
        # QueryStore("all-MiniLM-L6-v2") made a SQLite file of that name here.
        for args, kw in ((("all-MiniLM-L6-v2",), {}), (("BAAI/bge-small-en-v1.5",), {}),
                         ((), {"model_name": "all-MiniLM-L6-v2"})):
            with self.subTest(args=args, kw=kw):
                with self.assertRaises(llmroute.InvalidInput) as cm:
                    QueryStore(*args, **kw)
                msg = str(cm.exception)
                self.assertIn("cannot load a sentence-transformers model", msg)
                self.assertIn("embed=", msg)
                self.assertEqual(os.listdir("."), [])

    def test_model_name_with_embed_names_the_embedder(self):
        q = QueryStore(model_name="all-MiniLM-L6-v2", embed=CountingEmbed())
        self.assertEqual(q._store.embedder, "all-MiniLM-L6-v2")
        q = QueryStore("all-MiniLM-L6-v2", embed=CountingEmbed())
        self.assertEqual(q._store.embedder, "all-MiniLM-L6-v2")
        self.assertIsNone(q.path)
        self.assertEqual(os.listdir("."), [])

    def files(self):
        return sorted(f for f in os.listdir(".") if not f.endswith(("-wal", "-shm")))

    def test_paths_stay_paths(self):
        QueryStore("h.db").close()
        QueryStore(path="history").close()
        self.assertEqual(self.files(), ["h.db", "history"])
        QueryStore("history").close()  # it exists now

    def test_a_first_positional_is_a_path_unless_an_aios_model_name(self):
        # QueryStore("history", embed=f) gave a store in memory; ("history",
        # "my-embedder", 0, f) raised "model_name ... name different models".
        # A bare name that is no file is refused now (it may be a model's:
        # test_smart_guards.py), so the new file is named with its folder.
        q = QueryStore("./history", embed=CountingEmbed(), embedder="my-embedder")
        self.assertEqual(q.path, "./history")
        q.add_data(records())
        q.close()
        q = QueryStore("history", "my-embedder", 0, CountingEmbed())
        self.assertEqual((q.path, q.count()), ("history", len(records())))
        q.close()
        os.mkdir("sub")
        q = QueryStore("sub/x", embed=CountingEmbed(), embedder="e")
        self.assertEqual(q.path, "sub/x")
        q.close()
        self.assertEqual(self.files(), ["history", "sub"])
        # AIOS's positional form: one of its model names first.
        q = QueryStore("all-MiniLM-L6-v2", "llm_router", None, embed=CountingEmbed())
        self.assertEqual(q.path, os.path.join("llm_router", QueryStore.PERSIST_FILE))
        self.assertEqual(q._store.embedder, "all-MiniLM-L6-v2")
        q.close()
        q = QueryStore("sentence-transformers/all-MiniLM-L6-v2", embed=CountingEmbed())
        self.assertIsNone(q.path)
        self.assertEqual(self.files(), ["history", "llm_router", "sub"])

    def test_persist_directory(self):
        q = QueryStore(persist_directory="llm_router")
        q.add_data(records())
        q.close()
        self.assertTrue(os.path.isfile(os.path.join("llm_router", QueryStore.PERSIST_FILE)))
        self.assertEqual(QueryStore(persist_directory="llm_router").count(), len(records()))
        with self.assertRaises(llmroute.InvalidInput):
            QueryStore("h.db", persist_directory="llm_router")

    def test_bootstrap_url_keyword(self):
        with open("boot.json", "w") as f:
            json.dump(records(), f)
        self.assertEqual(QueryStore(bootstrap_url="boot.json").count(), len(records()))

    def test_settings_used_at_construction_are_refused_after_it(self):
        # The file is opened, the embedder named and the corpus fetched in
        # the constructor: q.path = "b.db" used to be taken and read back
        # while the records went on into a.db.
        q = QueryStore(path="a.db", model_name="mini", embed=CountingEmbed(),
                       bootstrap_timeout=5)
        for attr, value in (("path", "b.db"), ("model_name", "other"),
                            ("bootstrap_timeout", 1)):
            with self.assertRaises(AttributeError) as cm:
                setattr(q, attr, value)
            self.assertIn("QueryStore: %s: read-only" % attr, str(cm.exception))
        self.assertEqual((q.path, q.model_name, q.bootstrap_timeout), ("a.db", "mini", 5))
        q.add_data(records())
        self.assertEqual(self.files(), ["a.db"])

    def test_every_read_only_attribute_refuses_set_and_del(self):
        # Each keeps its value, and setting one says what to do instead, in
        # the words README quotes.
        r = SmartRouting(CONFIGS, store_path="a.db")
        assert_read_only(self, r.store, [
            ("path", "(the store file is opened when the QueryStore is made); to change it, "
                     "open another QueryStore(path=...) (and assign it to SmartRouting.store)"),
            ("model_name", "(the store's embedder is set when the QueryStore is made); to "
                           "change it, make another QueryStore(model_name=..., embed=...)"),
            ("bootstrap_timeout", "(bootstrap_url is downloaded when the QueryStore is made); "
                                  "to change it, give bootstrap_timeout= to the constructor"),
            ("generation", "(it counts the changes to the store's records, and SmartRouting "
                           "compares it with the count its router was built at); to change "
                           "it, change the records (add_data, import_file, refresh), which "
                           "moves it on")])
        assert_read_only(self, r, [
            ("bootstrap_url", "(the corpus is imported when the SmartRouting is made); to "
                              "change it, import a file now with "
                              "router.store.import_file(path), or assign a "
                              "QueryStore(bootstrap_url=...) to router.store")])
        self.assertEqual(r.store.path, "a.db")

    def test_generation_is_refused_to_callers(self):
        # SmartRouting compares generation with the one its router was
        # built at: q.generation = g used to be taken, and the router built
        # before the last add_data was handed out again as current; a
        # generation of "x" made the next add_data raise TypeError after
        # its records were committed.
        r = SmartRouting(CONFIGS)
        r.store.add_data(records())
        before, g = r.router, r.store.generation
        for value in (g - 1, "x"):
            with self.assertRaises(AttributeError) as cm:
                r.store.generation = value
            self.assertIn("QueryStore: generation: read-only", str(cm.exception))
        self.assertEqual(r.store.generation, g)
        self.assertIsNotNone(r.store.add_data(records()))
        self.assertEqual(r.store.generation, g + 1)
        self.assertIsNot(r.router, before)

    def test_smart_routing_has_its_query_store_class(self):
        self.assertIs(SmartRouting.QueryStore, QueryStore)
        self.assertIsInstance(SmartRouting(CONFIGS).store, SmartRouting.QueryStore)
        q = SmartRouting.QueryStore(bootstrap_url=None)  # as current AIOS makes it
        self.assertEqual(q.count(), 0)

    def test_query_similar_is_not_implemented(self):
        with self.assertRaises(NotImplementedError) as cm:
            QueryStore().query_similar("q", n_results=4)
        self.assertIn("use QueryStore.predict", str(cm.exception))


def rows(x):
    return x.tolist() if hasattr(x, "tolist") else x


class AiosPredictTest(SmartTestCase):
    def test_shape_and_values(self):
        q = QueryStore()
        q.add_data(records())
        cfgs = [{"name": "strong"}, {"name": "cheap"}, {"name": "unseen"}]
        perf, length = q.predict(["hard proof about prime gaps", "easy sum of small numbers"],
                                 cfgs, n_similar=4)
        self.assertEqual(rows(perf), [[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
        self.assertEqual(rows(length), [[40.0, 20.0, 0.0], [40.0, 20.0, 0.0]])
        try:
            import numpy
        except ImportError:
            self.assertIsInstance(perf, list)
        else:
            self.assertIsInstance(perf, numpy.ndarray)
            self.assertEqual(perf.shape, (2, 3))
        # A single str is one query, as AIOS's predict takes it.
        perf, _ = q.predict("hard proof about prime gaps", ["cheap"], n_similar=4)
        self.assertEqual(rows(perf), [[0.0]])

    def test_models_twice_and_no_query_text_are_refused_alike(self):
        # Twice-listed models were taken over an empty store and refused
        # over one with data; no text raised "query 0: ..." naming no method.
        for data in ([], records()):
            q = QueryStore()
            q.add_data(data)
            with self.subTest(records=len(data)):
                with self.assertRaises(llmroute.InvalidInput) as cm:
                    q.predict(["q"], ["a", "a"])
                self.assertEqual(str(cm.exception), "QueryStore.predict: model_configs: model "
                                 "'a' is listed twice")
            with self.subTest(records=len(data)):
                with self.assertRaises(llmroute.InvalidInput) as cm:
                    q.predict(["q", ""], ["cheap"])
                self.assertEqual(str(cm.exception), "QueryStore.predict: query[1]: smart "
                                 "routing needs the query text: an empty query has nothing "
                                 "to find similar past queries by")

    def test_a_closed_store_is_refused_in_the_method_s_name(self):
        # predict() said "the store is closed", naming no method; an empty
        # list of queries and held-out data were taken by a closed store.
        # add_data of one record into a closed store without a cap said
        # "the store is closed", naming no method, where several records
        # named it; no record at all was taken.
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "more.json")
            with open(path, "w") as f:
                json.dump(records(1), f)
            stores = {"built-in": lambda: QueryStore(),
                      "capped": lambda: QueryStore(max_records=100),
                      "dense": lambda: QueryStore(embed=CountingEmbed(), embedder="e"),
                      "dense, capped": lambda: QueryStore(embed=CountingEmbed(), embedder="e",
                                                          max_records=100)}
            for kind, data in itertools.product(stores, ([], records())):
                q = stores[kind]()
                q.add_data(data)
                q.close()
                calls = [("predict", lambda: q.predict(["hard proof"], ["cheap"])),
                         ("predict", lambda: q.predict([], ["cheap"])),
                         ("add_data", lambda: q.add_data(records())),
                         ("add_data", lambda: q.add_data(records()[:1])),
                         ("add_data", lambda: q.add_data([])),
                         ("add_data", lambda: q.add_data(records(), split="test")),
                         ("import_file", lambda: q.import_file(path)),
                         ("refresh", q.refresh),
                         ("count", q.count),
                         ("count", lambda: len(q))]
                for i, (method, call) in enumerate(calls):
                    with self.subTest(store=kind, records=len(data), call=i):
                        with self.assertRaises(llmroute.InvalidInput) as cm:
                            call()
                        self.assertEqual(str(cm.exception), "QueryStore.%s: the store is "
                                         "closed" % method)
                self.assertEqual(q.held_out, {"val": [], "test": []})
                q.close()  # a second close is harmless

    def test_empty_store_predicts_zeros(self):
        perf, length = QueryStore().predict(["q", "r"], [{"name": "a"}, {"name": "b"}])
        self.assertEqual(rows(perf), [[0.0, 0.0], [0.0, 0.0]])
        self.assertEqual(rows(length), [[0.0, 0.0], [0.0, 0.0]])


class AiosSettingsTest(SmartTestCase):
    """performance_requirement, n_similar and store set after construction.
    AIOS reads them at each call (aios/llm_core/routing.py, current and
    earlier):
        qualified = [i for i, p in enumerate(perf) if p >= self.performance_requirement]
        perf, out_len = self.store.predict(q, candidate_cfgs, n_similar=self.n_similar)
    so `router.performance_requirement = x` changes the next choice. The
    binding's own settings, predictor and alpha, are read at each call too."""

    HARD = "hard proof about prime gaps 1"

    def test_a_new_requirement_is_routed_on_at_the_next_call(self):
        r = SmartRouting(CONFIGS, performance_requirement=0.9)
        r.store.add_data(records())
        self.assertEqual(r.get_model_idxs(CONFIGS, [self.HARD], [9]), [1])
        r.performance_requirement = 0.0  # every candidate meets it: the cheapest
        self.assertEqual(r.performance_requirement, 0.0)
        self.assertEqual(r.get_model_idxs(CONFIGS, [self.HARD], [9]), [0])
        self.assertEqual(r._select_model_single(CONFIGS, [0.1, 0.2], [1, 2]), 0)
        r.performance_requirement = 0.9
        self.assertEqual(r.get_model_idxs(CONFIGS, [self.HARD], [9]), [1])
        self.assertEqual(r._select_model_single(CONFIGS, [0.1, 0.2], [1, 2]), 1)

    def test_a_new_n_similar_is_predicted_with_at_the_next_call(self):
        r = SmartRouting(CONFIGS, n_similar=16, predictor="aios")
        r.store.add_data(records())
        self.assertEqual(r.predict([self.HARD], NAMES)[0][0][0], 0.5)  # all 8 records
        r.n_similar = 1  # the one nearest record, a hard one
        self.assertEqual(r.n_similar, 1)
        self.assertEqual(r.predict([self.HARD], NAMES)[0][0][0], 0.0)

    def test_a_store_assigned_is_routed_over_at_the_next_call(self):
        # AIOS's get_model_idxs asks self.store at each call:
        #     perf, out_len = self.store.predict(q, candidate_cfgs, n_similar=self.n_similar)
        # so a QueryStore assigned to router.store is the one routed over.
        # The two stores have had one import each: the same generation.
        r = SmartRouting(CONFIGS, performance_requirement=0.9, n_similar=2, predictor="aios")
        r.store.add_data(records())
        easy = "easy sum of small numbers 1"
        self.assertEqual(r.get_model_idxs(CONFIGS, [easy], [8]), [0])
        other = SmartRouting.QueryStore()
        other.add_data([dict(rec, outputs=[dict(o, correctness=o["model_name"] == "strong")
                                           for o in rec["outputs"]]) for rec in records()])
        r.store = other  # here "cheap" is never right
        self.assertIs(r.store, other)
        self.assertEqual(r.get_model_idxs(CONFIGS, [easy], [8]), [1])
        with self.assertRaises(InvalidType) as cm:
            r.store = "history.db"
        self.assertIn("SmartRouting: store: expected a QueryStore", str(cm.exception))
        self.assertIs(r.store, other)

    def test_a_new_predictor_is_predicted_with_at_the_next_call(self):
        # The binding's own setting, set after construction as AIOS's are:
        # over the 4 nearest records (3 hard, 1 easy) AIOS's plain mean for
        # "cheap" is 0/3 on the hard ones; the default shrinks it toward
        # cheap's record over the whole store (half right), so above 0.
        r = SmartRouting(CONFIGS, n_similar=4)
        r.store.add_data(records())
        self.assertGreater(r.predict([self.HARD], NAMES)[0][0][0], 0.0)
        r.predictor = "aios"
        self.assertEqual(r.predictor, "aios")
        self.assertEqual(r.predict([self.HARD], NAMES)[0][0][0], 0.0)
        r.predictor = None
        self.assertGreater(r.predict([self.HARD], NAMES)[0][0][0], 0.0)

    def test_a_new_alpha_is_assigned_for_at_the_next_batch(self):
        # alpha, the mean quality route_batch() assigns for when given
        # none: 0 lets every query go to the cheap model; 1 needs "strong"
        # (right on every record) for both.
        queries = ["easy sum of small numbers 1", self.HARD]
        r = SmartRouting(CONFIGS, predictor="aios", alpha=0.0)
        r.store.add_data(records())
        self.assertEqual(r.route_batch(NAMES, queries, [8, 9]).indices, [0, 0])
        r.alpha = 1.0
        self.assertEqual(r.alpha, 1.0)
        self.assertEqual(r.route_batch(NAMES, queries, [8, 9]).indices, [1, 1])
        self.assertEqual(r.get_model_idxs_global(NAMES, queries, [8, 9]), [1, 1])
        r.alpha = 0.0
        self.assertEqual(r.route_batch(NAMES, queries, [8, 9]).indices, [0, 0])

    def test_bootstrap_url_is_refused_after_construction(self):
        # The corpus is imported by the constructor: router.bootstrap_url =
        # path used to be taken and read back, and imported nothing.
        with tempfile.TemporaryDirectory() as d:
            boot = os.path.join(d, "boot.json")
            with open(boot, "w") as f:
                json.dump(records(), f)
            r = SmartRouting(CONFIGS)
            with self.assertRaises(AttributeError) as cm:
                r.bootstrap_url = boot
            self.assertIn("SmartRouting: bootstrap_url: read-only", str(cm.exception))
            self.assertIn("router.store.import_file(path)", str(cm.exception))
            self.assertIsNone(r.bootstrap_url)
            self.assertEqual(SmartRouting(CONFIGS, boot).bootstrap_url, boot)

    def test_a_bad_setting_is_refused_naming_it_and_changes_nothing(self):
        r = SmartRouting(CONFIGS, performance_requirement=0.9, n_similar=4, predictor="aios",
                         alpha=0.0)
        r.store.add_data(records())
        for attr, bad, cls in (("performance_requirement", 1.5, llmroute.ConfigError),
                               ("performance_requirement", float("nan"), llmroute.ConfigError),
                               ("performance_requirement", "0.5", InvalidType),
                               ("n_similar", 0, llmroute.InvalidInput),
                               ("n_similar", 2.5, llmroute.InvalidInput),
                               ("n_similar", "4", InvalidType),
                               ("predictor", "bogus", llmroute.ConfigError),
                               ("predictor", "", llmroute.ConfigError),
                               ("predictor", 1, InvalidType),
                               ("alpha", 1.5, llmroute.ConfigError),
                               ("alpha", float("nan"), llmroute.ConfigError),
                               ("alpha", "0.5", InvalidType)):
            with self.assertRaises(cls) as cm:
                setattr(r, attr, bad)
            self.assertIn("SmartRouting: %s" % attr, str(cm.exception))
        self.assertEqual((r.performance_requirement, r.n_similar, r.predictor, r.alpha),
                         (0.9, 4, "aios", 0.0))
        self.assertEqual(r.get_model_idxs(CONFIGS, [self.HARD], [9]), [1])
        self.assertEqual(r.predict([self.HARD], NAMES)[0][0][0], 0.0)
        self.assertEqual(r.route_batch(NAMES, [self.HARD], [9]).indices, [0])


class AiosOptimizeTest(SmartTestCase):
    def test_local_choice(self):
        r = SmartRouting(CONFIGS, performance_requirement=0.7)
        cfgs = [{"name": n} for n in "xyz"]
        self.assertEqual(r.optimize_model_selection_local(cfgs, [0.9, 0.8, 0.7], [3, 1, 1]), 1)
        self.assertEqual(r.optimize_model_selection_local(cfgs, [0.1, 0.5, 0.5], [1, 2, 3]), 1)
        self.assertIsNone(r.optimize_model_selection_local([], [], []))
        self.assertEqual(r._select_model_single(cfgs, [0.9, 0.8, 0.7], [3, 1, 1]), 1)
        self.assertEqual(r._select_model_single([], [], []), 0)
        with self.assertRaises(llmroute.InvalidInput):
            r.optimize_model_selection_local(cfgs, [0.1, 0.2], [1, 2, 3])

    def test_global_is_not_implemented(self):
        with self.assertRaises(NotImplementedError) as cm:
            SmartRouting(CONFIGS).optimize_model_selection_global([[1.0]], [[1.0]])
        self.assertIn("get_model_idxs_global", str(cm.exception))


if __name__ == "__main__":
    unittest.main()
