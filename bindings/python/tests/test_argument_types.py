"""An argument of the wrong Python type, given to any public method or
constructor, raises InvalidType: an InvalidInput, as the AIOS classes raise,
and a TypeError, as these methods raised before. The message names the
method, the argument and the type received."""
import os
import tempfile
import unittest

import support  # noqa: F401  (puts the package on the path)
from support import MODELS

import llmroute
from llmroute import Config, Router, Store


class WrongTypeTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.data = os.path.join(self.dir.name, "data.json")
        with open(self.data, "w") as f:
            f.write("[]")
        self.cfg = Config({"models": MODELS})
        self.store = Store()
        self.router = Router(self.cfg, strategy="sequential")

    def tearDown(self):
        self.router.close()
        self.store.close()
        self.cfg.close()
        self.dir.cleanup()

    def refused(self, where, got, fn, *args, **kw):
        """fn(*args, **kw) raises InvalidType naming `where` ("Store.add:
        query") and the type received (`got`, e.g. "got int")."""
        with self.assertRaises(llmroute.InvalidType) as cm:
            fn(*args, **kw)
        e = cm.exception
        self.assertIsInstance(e, llmroute.InvalidInput)
        self.assertIsInstance(e, TypeError)
        self.assertIsInstance(e, ValueError)
        self.assertEqual(e.code, -1)
        self.assertTrue(str(e).startswith(where + ": "), str(e))
        self.assertIn(got, str(e))
        return e

    def test_config(self):
        self.refused("Config: doc", "got int", Config, 5)
        self.refused("Config.from_file: path", "got int", Config.from_file, 5)
        self.refused("Config.index: name", "got int", self.cfg.index, 5)
        self.refused("Config.index: name", "got NoneType", self.cfg.index, None)
        self.refused("config_from_llm_configs: llm_configs", "got int",
                     llmroute.config_from_llm_configs, 5)
        self.refused("config_from_llm_configs: router", "got int",
                     llmroute.config_from_llm_configs, MODELS, router=5)
        self.refused("config_from_llm_configs: llm_configs[1]", "got int",
                     llmroute.config_from_llm_configs, ["a", 5])
        self.refused("config_from_llm_configs: llm_configs[0]", "got NoneType",
                     llmroute.config_from_llm_configs, [None])

    def test_store_constructor(self):
        self.refused("Store: path", "got int", Store, 5)
        self.refused("Store: embedder", "got int", Store, embedder=5)
        self.refused("Store: embed", "got int", Store, embedder="mini", embed=5)
        self.refused("Store: dense_dim", "got str '4'", Store, dense_dim="4")
        self.refused("Store: max_records", "got str '9'", Store, max_records="9")
        self.refused("Store: key_ttl_s", "got str '60'", Store, key_ttl_s="60")

    def test_store_methods(self):
        s = self.store
        with self.assertRaises(llmroute.InvalidType) as cm:
            s.key_ttl_s = "60"
        self.assertIn("Store.key_ttl_s: expected a whole number, got str '60'",
                      str(cm.exception))
        self.refused("Store.import_file: path", "got int", s.import_file, 5)
        self.refused("Store.import_file: split", "got int", s.import_file, self.data, split=5)
        self.refused("Store.import_records: records", "got int", s.import_records, 5)
        self.refused("Store.import_records: records[1]", "got int", s.import_records,
                     [{"query": "q"}, 5])
        self.refused("Store.import_records: split", "got int", s.import_records, [], split=5)
        ok = [("a", 1, 3)]
        self.refused("Store.add: query", "got int", s.add, 5, ok)
        self.refused("Store.add: outcomes", "got int", s.add, "q", 5)
        self.refused("Store.add: outcomes[0]", "got int", s.add, "q", [5])
        self.refused("Store.add: outcomes[0].model", "got int", s.add, "q", [(5, 1, 3)])
        self.refused("Store.add: outcomes[0].correctness", "got str", s.add, "q",
                     [("a", "yes", 3)])
        self.refused("Store.add: outcomes[0].output_tokens", "got str", s.add, "q",
                     [("a", 1, "ten")])
        self.refused("Store.add: input_tokens", "got str", s.add, "q", ok, input_tokens="3")
        self.refused("Store.add: task", "got int", s.add, "q", ok, task=5)
        self.refused("Store.add_outcome: query", "got int", s.add_outcome, 5, "a", 1, 3)
        self.refused("Store.add_outcome: model", "got int", s.add_outcome, "q", 5, 1, 3)
        self.refused("Store.add_outcome: correctness", "got str", s.add_outcome, "q", "a",
                     "x", 3)
        self.refused("Store.add_outcome: output_tokens", "got list", s.add_outcome, "q", "a",
                     1, [3])
        self.refused("Store.add_outcome: input_tokens", "got str", s.add_outcome, "q", "a", 1,
                     3, input_tokens="3")
        self.refused("Store.add_outcome: idempotency_key", "got int", s.add_outcome, "q", "a",
                     1, 3, idempotency_key=7)
        self.assertEqual(len(s), 0)

    def test_a_vector_of_the_wrong_type_is_an_embed_error_naming_the_method(self):
        # Vectors given as arguments are checked as those an embed returns.
        dense = Store(embedder="mini", embed=lambda texts: [[1.0, 0.5]] * len(texts))
        try:
            with self.assertRaises(llmroute.EmbedError) as cm:
                dense.add("q", [("a", 1, 3)], embedding=5)
            self.assertIn("Store.add: embedding: vector 0: expected a sequence of numbers, "
                          "got int", str(cm.exception))
            with self.assertRaises(llmroute.EmbedError) as cm:
                dense.add_outcome("q", "a", 1, 3, embedding="v")
            self.assertIn("Store.add_outcome: embedding:", str(cm.exception))
            dense.add("q", [("a", 1, 3)])
            r = Router(self.cfg, strategy="smart", store=dense)
            with self.assertRaises(llmroute.EmbedError) as cm:
                r.route(query="q", embedding=5)
            self.assertIn("Router.route: embedding: vector 0:", str(cm.exception))
            with self.assertRaises(llmroute.EmbedError) as cm:
                r.route_batch(["q"], embeddings=5)
            self.assertIn("Router.route_batch: embeddings: expected a list of vectors, got int",
                          str(cm.exception))
            r.close()
        finally:
            dense.close()

    def test_router_constructor(self):
        self.refused("Router: config", "got int", Router, 5)
        self.refused("Router: strategy", "got int", Router, self.cfg, strategy=5)
        self.refused("Router: store", "got str", Router, self.cfg, store="h.db")
        self.refused("Router: performance_requirement", "got str 'high'", Router, self.cfg,
                     performance_requirement="high")
        self.refused("Router: n_similar", "got str", Router, self.cfg, n_similar="4")
        # A str that spells a number, and True for 1, are refused too.
        self.refused("Router: performance_requirement", "got str '0.9'", Router, self.cfg,
                     performance_requirement="0.9")
        self.refused("Router: performance_requirement", "got bytes", Router, self.cfg,
                     performance_requirement=b"0.9")
        self.refused("Router: n_similar", "got bool", Router, self.cfg, n_similar=True)
        self.refused("Router: predictor", "got int", Router, self.cfg, predictor=5)
        self.refused("Router: embed", "got int", Router, self.cfg, store=self.store, embed=5)

    def test_route(self):
        r = self.router
        self.refused("Router.route: models", "got int", r.route, 5)
        self.refused("Router.route: models[1]", "got int", r.route, ["a", 5])
        self.refused("Router.route: query", "got int", r.route, query=5)
        self.refused("Router.route: input_tokens", "got str", r.route, input_tokens="3")
        self.refused("Router.route: input_tokens", "got bool", r.route, input_tokens=True)
        self.refused("Router.route: performance_requirement", "got str '0.5'", r.route,
                     query="hi", performance_requirement="0.5")
        self.refused("Router.route: performance_requirement", "got list", r.route,
                     performance_requirement=[1])
        self.refused("Router.route_index: models", "got int", r.route_index, 5)
        self.refused("Router.route_index: models[0]", "got int", r.route_index, [5])

    def test_route_batch(self):
        for name in ("route_batch", "route_indices"):
            fn = getattr(self.router, name)
            where = "Router." + name
            self.refused(where + ": queries", "got int", fn, 5)
            self.refused(where + ": queries[1]", "got int", fn, ["q", 5])
            self.refused(where + ": models", "got int", fn, ["q"], models=5)
            self.refused(where + ": models[0]", "got int", fn, ["q"], models=[5])
            self.refused(where + ": input_tokens", "got int", fn, ["q"], input_tokens=5)
            self.refused(where + ": input_tokens[0]", "got str", fn, ["q"], input_tokens=["3"])
            self.refused(where + ": n", "got str", fn, n="2")
        fn = self.router.route_batch
        where = "Router.route_batch"
        self.refused(where + ": mode", "got int", fn, ["q"], mode=5)
        self.refused(where + ": alpha", "got str", fn, ["q"], mode="quality", alpha="x")
        self.refused(where + ": alpha", "got str '0.5'", fn, ["q"], mode="quality", alpha="0.5")
        self.refused(where + ": budget", "got str '1'", fn, ["q"], mode="budget", budget="1")
        self.refused(where + ": input_tokens[0]", "got bool", fn, ["q"], input_tokens=[True])
        self.refused(where + ": capacities['a']", "got bool", fn, ["q"], capacities={"a": True})
        self.refused(where + ": budget", "got list", fn, ["q"], mode="budget", budget=[1])
        self.refused(where + ": capacities", "got int", fn, ["q"], capacities=5)
        self.refused(where + ": capacities", "got int", fn, ["q"], capacities={5: 1})
        self.refused(where + ": capacities[0]", "got str", fn, ["q"], capacities=["x", 1, 1])
        self.refused(where + ": capacities['a']", "got str", fn, ["q"], capacities={"a": "x"})

    def test_functions_and_the_embedder(self):
        self.refused("estimate_tokens: text", "got int", llmroute.estimate_tokens, 5)
        e = llmroute.openai_embedder("http://127.0.0.1:9/v1", "m")
        self.refused("OpenAIEmbedder: texts", "got int", e, 5)
        self.refused("OpenAIEmbedder: texts[0]", "got int", e, [5])

    def test_the_embedder_constructor(self):
        E, url = llmroute.OpenAIEmbedder, "http://127.0.0.1:9/v1"
        self.refused("OpenAIEmbedder: base_url", "got int", E, 5, "m")
        self.refused("OpenAIEmbedder: base_url", "got int", llmroute.openai_embedder, 5, "m")
        self.refused("OpenAIEmbedder: model", "got int", E, url, 5)
        self.refused("OpenAIEmbedder: model", "got NoneType", E, url, None)
        self.refused("OpenAIEmbedder: api_key", "got int", E, url, "m", api_key=5)
        self.refused("OpenAIEmbedder: api_key_env", "got bytes", E, url, "m", api_key_env=b"K")
        self.refused("OpenAIEmbedder: dimensions", "got str", E, url, "m", dimensions="384")
        self.refused("OpenAIEmbedder: dimensions", "got bool", E, url, "m", dimensions=True)
        self.refused("OpenAIEmbedder: batch_size", "got str", E, url, "m", batch_size="8")
        self.refused("OpenAIEmbedder: batch_size", "got NoneType", E, url, "m", batch_size=None)
        self.refused("OpenAIEmbedder: timeout", "got str", E, url, "m", timeout="5")
        self.refused("OpenAIEmbedder: timeout", "got list", E, url, "m", timeout=[5])
        self.refused("OpenAIEmbedder.from_config: config", "got dict", E.from_config,
                     {"models": MODELS})
        # A bad value of the right type is an EmbedError (an InvalidInput, no
        # TypeError) that names the argument too.
        for args, kw, where in ((("ftp://h/v1", "m"), {}, "base_url"), ((url, ""), {}, "model"),
                                ((url, "m"), {"dimensions": 0}, "dimensions"),
                                ((url, "m"), {"batch_size": 4096}, "batch_size"),
                                ((url, "m"), {"timeout": -1}, "timeout")):
            with self.assertRaises(llmroute.EmbedError) as cm:
                E(*args, **kw)
            self.assertNotIsInstance(cm.exception, TypeError)
            self.assertTrue(str(cm.exception).startswith("OpenAIEmbedder: %s: " % where),
                            str(cm.exception))
        self.assertEqual(E(url, "m", dimensions=384, batch_size=8, timeout=2).timeout, 2.0)

    def test_the_aios_classes_raise_the_same_class(self):
        # Each message names the public method and its argument; some named
        # the lower-level method they passed the argument on to
        # ("Router.route_index: models[0]", "Router.route_indices:
        # input_tokens[0]", "Store: path"), others no method at all.
        seq = llmroute.SequentialRouting(MODELS)
        where = "SequentialRouting.get_model_idxs"
        self.refused(where + ": selected_llms", "got int", seq.get_model_idxs, 5)
        self.refused(where + ": selected_llms[1]", "got int", seq.get_model_idxs, ["a", 5])
        self.refused(where + ": selected_llms[0]", "got dict", seq.get_model_idxs,
                     [{"name": 5}])
        self.refused(where + ": selected_llms[1][0]", "got int", seq.get_model_idxs,
                     [["a"], [5]], ["q", "r"])
        self.refused(where + ": n_queries", "got object", seq.get_model_idxs, ["a"], object())
        self.refused("SequentialRouting: llm_configs", "got int", llmroute.SequentialRouting, 5)
        self.refused("SequentialRouting: llm_configs[1]", "got int", llmroute.SequentialRouting,
                     ["a", 5])
        smart = llmroute.SmartRouting(MODELS)
        smart.store.add_data([{"query": "q", "input_token_length": 3, "outputs": [
            {"model_name": "a", "correctness": 1, "output_token_length": 3}]}])
        for name in ("get_model_idxs", "predict", "route_batch", "get_model_idxs_global"):
            where = "SmartRouting." + name
            fn = getattr(smart, name)
            if name == "predict":  # predict(queries, selected_llms, input_token_lengths)
                call = (lambda sel, q, n=None, fn=fn: fn(q, sel, n))
            else:
                call = (lambda sel, q, n=None, fn=fn: fn(sel, q, n))
            self.refused(where + ": selected_llms", "got int", call, 5, ["q"])
            self.refused(where + ": selected_llms[0]", "got int", call, [5], ["q"])
            self.refused(where + ": selected_llms[0][0]", "got int", call, [[5]], ["q"])
            self.refused(where + ": queries", "got int", call, ["a"], 5)
            self.refused(where + ": queries[0]", "got int", call, ["a"], [5])
            self.refused(where + ": input_token_lengths", "got str", call, ["a"], ["q"], "3")
            self.refused(where + ": input_token_lengths[0]", "got str '3'", call, ["a"], ["q"],
                         ["3"])
        for name in ("route_batch", "get_model_idxs_global"):
            where = "SmartRouting." + name
            fn = getattr(smart, name)
            self.refused(where + ": alpha", "got str '0.5'", fn, ["a"], ["q"], alpha="0.5")
            self.refused(where + ": capacities", "got int", fn, ["a"], ["q"], capacities=5)
            self.refused(where + ": capacities['a']", "got str", fn, ["a"], ["q"],
                         capacities={"a": "x"})
        self.refused("SmartRouting.route_batch: budget", "got str", smart.route_batch, ["a"],
                     ["q"], budget="1")
        S = llmroute.SmartRouting
        self.refused("SmartRouting: llm_configs", "got int", S, 5)
        self.refused("SmartRouting: performance_requirement", "got str 'high'", S, MODELS,
                     performance_requirement="high")
        self.refused("SmartRouting: n_similar", "got str", S, MODELS, n_similar="4")
        self.refused("SmartRouting: predictor", "got int", S, MODELS, predictor=5)
        self.refused("SmartRouting: alpha", "got bool", S, MODELS, alpha=True)
        self.refused("SmartRouting: store_path", "got int", S, MODELS, store_path=5)
        self.refused("SmartRouting: embedder", "got int", S, MODELS, embedder=5)
        self.refused("SmartRouting: embed", "got int", S, MODELS, embedder="m", embed=5)
        self.refused("SmartRouting: embedding", "got int", S, MODELS, embedding=5)
        self.refused("SmartRouting: bootstrap_url", "got int", S, MODELS, bootstrap_url=5)
        Q = llmroute.QueryStore
        self.refused("QueryStore: path", "got int", Q, 5)
        self.refused("QueryStore: embedder", "got int", Q, embedder=5)
        self.refused("QueryStore: max_records", "got str", Q, max_records="9")
        self.refused("QueryStore: embed", "got int", Q, embedder="m", embed=5)
        q = Q()
        try:
            self.refused("QueryStore.add_data: data", "got int", q.add_data, 5)
            self.refused("QueryStore.add_data: data[0]", "got int", q.add_data, [5])
            self.refused("QueryStore.add_data: split", "got int", q.add_data, [], split=5)
            self.refused("QueryStore.import_file: path", "got int", q.import_file, 5)
            self.refused("QueryStore.import_file: split", "got int", q.import_file, self.data,
                         split=5)
        finally:
            q.close()
            smart.store.close()

    def test_a_bad_value_given_to_an_aios_class_names_the_method_and_argument(self):
        def bad(where, fn, *args, **kw):
            with self.assertRaises(llmroute.InvalidInput) as cm:
                fn(*args, **kw)
            self.assertTrue(str(cm.exception).startswith(where), str(cm.exception))

        S, Q = llmroute.SmartRouting, llmroute.QueryStore
        seq = llmroute.SequentialRouting(MODELS)
        where = "SequentialRouting.get_model_idxs: "
        bad(where + "n_queries: expected a count from 0 to 2147483648, got -1",
            seq.get_model_idxs, ["a"], -1)
        bad(where + "selected_llms is empty", seq.get_model_idxs, [])
        bad(where + "selected_llms[0]: 'a\\x00': a NUL byte", seq.get_model_idxs,
            [{"name": "a\0"}])
        bad(where + "selected_llms has 2 candidate lists for 3 queries", seq.get_model_idxs,
            [["a"], ["b"]], 3)
        bad("SequentialRouting: llm_configs[1].cost_per_input_token: expected a non-negative "
            "number", llmroute.SequentialRouting, ["a", {"name": "b", "cost_per_input_token": -1}])
        bad("SequentialRouting.get_model_idxs: llm_configs is empty: there is no model to "
            "route to yet", llmroute.SequentialRouting([]).get_model_idxs, None)
        bad("SmartRouting: performance_requirement: expected a number from 0 to 1", S, MODELS,
            performance_requirement=1.5)
        # Beyond a C int, the bounds quoted were a C int's, not the library's.
        for n in (0, 1025, 2 ** 31, 10 ** 30):
            got = "expected a whole number from 1 to 1024, got %d" % n
            bad("SmartRouting: n_similar: " + got, S, MODELS, n_similar=n)
            bad("Router: n_similar: " + got, llmroute.Router, llmroute.Config({"models": MODELS}),
                strategy="sequential", n_similar=n)
            bad("QueryStore.predict: n_similar: " + got, Q().predict, ["q"], ["a"], n_similar=n)
        bad("SmartRouting: predictor: unknown predictor 'zz'", S, MODELS, predictor="zz")
        bad("SmartRouting: embedder: 'zz' is not an embedder", S, MODELS, embedder="zz")
        bad("SmartRouting: embedding.base_url: missing", S, MODELS, embedding={})
        bad("SmartRouting: bootstrap_url: 'ftp://h/d.json': expected an http://, https:// or "
            "file:// URL", S, MODELS, bootstrap_url="ftp://h/d.json")
        smart = S(MODELS)
        q = Q()
        try:
            smart.store.add_data([{"query": "q", "input_token_length": 3, "outputs": [
                {"model_name": "a", "correctness": 1, "output_token_length": 3}]}])
            where = "SmartRouting.get_model_idxs: "
            bad(where + "input_token_lengths[0]: expected a whole number from 0",
                smart.get_model_idxs, ["a"], ["q"], [-1])
            bad(where + "queries[0]: 'q\\x00': a NUL byte", smart.get_model_idxs, ["a"],
                ["q\0"])
            bad("SmartRouting.route_batch: queries is empty", smart.route_batch, ["a"], [])
            bad("SmartRouting.route_batch: capacities: 1 values for 3 configured models",
                smart.route_batch, ["a"], ["q"], capacities=[1])
            bad("QueryStore.add_data: split: expected one of train, val, test, got 'dev'",
                q.add_data, [], split="dev")
            bad("QueryStore.add_data: data[1]: query: expected a non-empty string", q.add_data,
                [{"query": "q", "outputs": [{"model_name": "a", "correctness": 1,
                                             "output_token_length": 3}]},
                 {"query": "", "outputs": []}])
            bad("QueryStore: max_records: expected a whole number from 0", Q, max_records=-1)
        finally:
            q.close()
            smart.store.close()


class StrictArgumentsTest(unittest.TestCase):
    """Arguments that were taken loosely, or refused in another method's
    words or with a bare Python error."""

    def setUp(self):
        self.cfg = Config({"models": MODELS})
        self.router = Router(self.cfg, strategy="sequential")

    def tearDown(self):
        self.router.close()
        self.cfg.close()

    def refused(self, cls, message, fn, *args, **kw):
        with self.assertRaises(cls) as cm:
            fn(*args, **kw)
        self.assertEqual(str(cm.exception), message)
        return cm.exception

    def test_an_aios_class_names_its_own_count_argument(self):
        # It said "n: expected a whole number from 0 to 2147483648", naming
        # Router.route_indices' argument.
        seq = llmroute.SequentialRouting(MODELS)
        where = "SequentialRouting.get_model_idxs: "
        for n in (10 ** 30, 2 ** 31 + 1):
            self.refused(llmroute.InvalidInput, where + "n_queries: expected a count from 0 to "
                         "2147483648, got %d" % n, seq.get_model_idxs, ["a", "b"], n_queries=n)
        self.refused(llmroute.InvalidInput, where + "n_queries: expected a count from 0 to "
                     "2147483648, got %d" % 10 ** 30, seq.get_model_idxs,
                     selected_llm_lists=[["a"], ["b"]], queries=10 ** 30)

    def test_a_lone_surrogate_is_invalid_input_naming_the_argument(self):
        # Each raised a bare UnicodeEncodeError.
        bad = "\udcff"
        why = ": '\\udcff': not valid Unicode text: '\\udcff' at position 0 is a lone " \
              "surrogate, which UTF-8 cannot encode"
        seq = llmroute.SequentialRouting(MODELS)
        for n in (1, 2):
            self.refused(llmroute.InvalidInput, "SequentialRouting.get_model_idxs: "
                         "selected_llms[1]" + why, seq.get_model_idxs,
                         [{"name": "a"}, {"name": bad}], n)
        self.refused(llmroute.InvalidInput, "SequentialRouting: llm_configs[1].name" + why,
                     llmroute.SequentialRouting, ["a", bad])
        smart = llmroute.SmartRouting(MODELS)
        smart.store.add_data([{"query": "q", "input_token_length": 3, "outputs": [
            {"model_name": "a", "correctness": 1, "output_token_length": 3}]}])
        self.refused(llmroute.InvalidInput, "SmartRouting.get_model_idxs: queries[1]" + why,
                     smart.get_model_idxs, ["a", "b"], ["q", bad])
        self.refused(llmroute.InvalidInput, "SmartRouting.get_model_idxs: selected_llms[0]" +
                     why, smart.get_model_idxs, [bad], ["q"])
        self.refused(llmroute.InvalidInput, "SmartRouting.predict: queries[0]" + why,
                     smart.predict, [bad], ["a"])
        self.refused(llmroute.InvalidInput, "QueryStore.predict: queries[0]" + why,
                     smart.store.predict, [bad], ["a"])
        # A dict config was written as JSON with the surrogate escaped, and
        # the C parser's ParseError gave a line and column in that text.
        self.refused(llmroute.InvalidInput, "Config: doc: models[0].name" + why,
                     llmroute.Config, {"models": [{"name": bad}]})
        self.refused(llmroute.InvalidInput, "Config: doc: router.strategy" + why,
                     llmroute.Config, {"models": [{"name": "a"}], "router": {"strategy": bad}})
        self.refused(llmroute.InvalidInput, "Config: doc: models[0]" + why,
                     llmroute.Config, {"models": [{bad: 1}]})
        self.refused(llmroute.InvalidInput, "QueryStore.add_data: data[0]: "
                     "outputs[0].model_name" + why, smart.store.add_data,
                     [{"query": "q", "outputs": [{"model_name": bad, "correctness": 1,
                                                  "output_token_length": 3}]}])
        self.refused(llmroute.InvalidInput, "Router.route: query" + why, self.router.route,
                     query=bad)
        self.refused(llmroute.InvalidInput, "Router.route: models[0]" + why, self.router.route,
                     [bad])
        self.refused(llmroute.InvalidInput, "estimate_tokens: text" + why,
                     llmroute.estimate_tokens, bad)
        with Store() as st:
            self.refused(llmroute.InvalidInput, "Store.add: query" + why, st.add, bad,
                         [("a", 1, 3)])
        smart.store.close()

    def test_a_config_field_of_the_wrong_type_is_named(self):
        # It was InvalidInput "configuration: cannot be written as JSON:
        # Object of type bytes is not JSON serializable".
        self.refused(llmroute.InvalidType, "SequentialRouting: llm_configs[0].name: expected a "
                     "str, got bytes b'a'", llmroute.SequentialRouting, [{"name": b"a"}])
        self.refused(llmroute.InvalidType, "SmartRouting: llm_configs[1].hostname: expected a "
                     "str, got bytes b'h'", llmroute.SmartRouting,
                     [MODELS[0], {"name": "b", "cost_per_input_token": 0,
                                  "cost_per_output_token": 0, "hostname": b"h"}])
        self.refused(llmroute.InvalidType, "SequentialRouting: llm_configs[0]: cannot be "
                     "written as JSON: Object of type bytes is not JSON serializable",
                     llmroute.SequentialRouting, [{"name": "a", "headers": {"X": b"y"}}])

    def test_flags_take_only_true_or_false(self):
        # read_only="yes" (and "no") opened the store read-only.
        for v in ("yes", "no", 1, None):
            self.refused(llmroute.InvalidType, "Store: read_only: expected True or False, got "
                         + llmroute.core._got(v), Store, read_only=v)
        with Store() as st:
            self.refused(llmroute.InvalidType, "Store.import_records: strict: expected True or "
                         "False, got str 'no'", st.import_records, [], strict="no")
        self.refused(llmroute.InvalidType, "Router.route: ranking: expected True or False, "
                     "got int 1", self.router.route, ["a"], ranking=1)
        self.refused(llmroute.InvalidType, "Router.route_batch: ranking: expected True or "
                     "False, got str 'yes'", self.router.route_batch, n=1, ranking="yes")

    def test_candidate_lists_are_lists_of_names(self):
        # A dict was taken for the list of its keys.
        self.refused(llmroute.InvalidType, "Router.route: models: expected a list of model "
                     "names, got dict", self.router.route, {"a": 1})
        self.refused(llmroute.InvalidType, "Router.route_index: models: expected a list of "
                     "model names, got dict", self.router.route_index, {"a": 1})
        self.refused(llmroute.InvalidType, "Router.route_batch: models[0]: expected a list of "
                     "model names or None (one list per query, as the others are), got set",
                     self.router.route_batch, n=2,
                     models=[{"a"}, ["b"]])
        # A list per query is told by any entry, not by the first alone: None
        # first was refused as a name, None second taken for every model.
        for models in ([None, ["a"]], [["a"], None]):
            res = self.router.route_batch(n=2, models=models)
            self.assertEqual(res.decisions[models.index(["a"])].name, "a")
        self.refused(llmroute.InvalidType, "Router.route_batch: models[1]: expected a list of "
                     "model names or None (one list per query, as the others are), got str",
                     self.router.route_batch, n=2, models=[["a"], "b"])
        self.refused(llmroute.InvalidType, "Router.route_batch: models[1][0]: expected a model "
                     "name, got int 5", self.router.route_batch, n=2, models=[["a"], [5]])
        seq = llmroute.SequentialRouting(MODELS)
        for sel in ([None, ["a"]], [["a"], None]):
            got = seq.get_model_idxs(sel, 2)
            self.assertEqual(got[sel.index(["a"])], 0)

    def test_capacities_take_the_bounds_of_a_configured_capacity(self):
        # -5 was taken (and meant no cap), 2e9 too; a config's "capacity"
        # is a whole number from 0 to 1e9.
        smart = llmroute.SmartRouting(MODELS)
        smart.store.add_data([{"query": "q", "input_token_length": 3, "outputs": [
            {"model_name": "a", "correctness": 1, "output_token_length": 3}]}])
        where = "SmartRouting.route_batch: "
        for caps, name in (({"a": -5}, "['a']"), ({"a": 2000000000}, "['a']"),
                           ([0, -1, 0], "[1]"), ([0, 0, 10 ** 12], "[2]")):
            v = caps["a"] if isinstance(caps, dict) else [c for c in caps if c][0]
            self.refused(llmroute.InvalidInput, where + "capacities%s: expected a whole number "
                         "from 0 to 1000000000, got %d" % (name, v), smart.route_batch,
                         ["a", "b"], ["q"], capacities=caps)
        res = smart.route_batch(["a", "b"], ["q"], capacities={"a": 10 ** 9, "b": 0})
        self.assertTrue(res.feasible)
        smart.store.close()

    def test_input_token_counts_name_the_real_cap(self):
        # It said "expected a whole number from 0 to 9223372036854775807".
        self.refused(llmroute.InvalidInput, "Router.route: input_tokens: %d is over the cap of "
                     "1000000000" % 10 ** 30, self.router.route, ["a"], "q",
                     input_tokens=10 ** 30)
        self.refused(llmroute.InvalidInput, "Router.route: input_tokens: expected a whole "
                     "number from 0 to 1000000000, got -1", self.router.route, ["a"], "q",
                     input_tokens=-1)
        self.refused(llmroute.InvalidInput, "Router.route: input_tokens: 2000000000 is over "
                     "the cap of 1000000000", self.router.route, ["a"], "q",
                     input_tokens=2 * 10 ** 9)
        smart = llmroute.SmartRouting(MODELS)
        self.refused(llmroute.InvalidInput, "SmartRouting.get_model_idxs: input_token_lengths"
                     "[0]: %d is over the cap of 1000000000" % 10 ** 30, smart.get_model_idxs,
                     ["a"], ["q"], [10 ** 30])

    def test_a_count_over_the_cap_names_the_callers_argument(self):
        # Within a C long but over the cap, the library's message named its
        # own field and the query by its place: "query 1: input_tokens:
        # ...", where the caller gave input_tokens[1] or input_token_lengths[1].
        over = 10 ** 9 + 1
        for fn in (self.router.route_batch, self.router.route_indices):
            self.refused(llmroute.InvalidInput, "Router.%s: input_tokens[1]: 1000000001 is over "
                         "the cap of 1000000000" % fn.__name__, fn, ["q", "r"], models=["a"],
                         input_tokens=[3, over])
        smart = llmroute.SmartRouting(MODELS)
        smart.store.add_data([{"query": "q", "input_token_length": 3, "outputs": [
            {"model_name": "a", "correctness": 1, "output_token_length": 3}]}])
        for fn in (smart.get_model_idxs, smart.route_batch, smart.get_model_idxs_global):
            self.refused(llmroute.InvalidInput, "SmartRouting.%s: input_token_lengths[1]: "
                         "1000000001 is over the cap of 1000000000" % fn.__name__, fn,
                         ["a", "b"], ["q", "r"], [3, over])
        self.assertEqual(smart.get_model_idxs(["a", "b"], ["q", "r"], [3, 10 ** 9]), [0, 0])
        smart.store.close()


if __name__ == "__main__":
    unittest.main()
