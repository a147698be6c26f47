"""C errors become Python exceptions that carry the library's message."""
import json
import os
import subprocess
import sys
import tempfile
import unittest

import support  # noqa: F401  (puts the package on the path)
from support import MODELS, assert_read_only

import llmroute
from llmroute import Config, Router, SequentialRouting


class ConfigErrorsTest(unittest.TestCase):
    def assertRaisesWith(self, exc, text, fn, *args, **kw):
        with self.assertRaises(exc) as cm:
            fn(*args, **kw)
        self.assertIn(text, str(cm.exception))
        return cm.exception

    def test_negative_price_names_the_field(self):
        e = self.assertRaisesWith(ValueError, "SequentialRouting: llm_configs[1]."
                                  "cost_per_input_token", SequentialRouting,
                                  [{"name": "a"}, {"name": "b", "cost_per_input_token": -1}])
        self.assertIsInstance(e, llmroute.ConfigError)
        self.assertEqual(e.code, -6)

    def test_price_of_the_wrong_type(self):
        # A wrong type, as for any other number argument (it was a
        # ConfigError from the library's configuration).
        self.assertRaisesWith(llmroute.InvalidType, "SequentialRouting: llm_configs[0]."
                              "cost_per_output_token: expected a number, got str '1'",
                              SequentialRouting, [{"name": "a", "cost_per_output_token": "1"}])
        # The library still checks a Config document's own text.
        self.assertRaisesWith(llmroute.ConfigError, "expected a non-negative number, got a "
                              "string", Config, {"models": [{"name": "a",
                                                             "cost_per_output_token": "1"}]})

    def test_duplicate_names(self):
        # The library's models[i] is the argument's llm_configs[i].
        self.assertRaisesWith(ValueError, "SequentialRouting: llm_configs[1].name: 'a' is "
                              "already the name of llm_configs[0]",
                              SequentialRouting, [{"name": "a"}, {"name": "a"}])
        self.assertRaisesWith(ValueError, "'a' is already the name of models[0]",
                              Config, {"models": [{"name": "a"}, {"name": "a"}]})

    def test_missing_name(self):
        self.assertRaisesWith(ValueError, "SequentialRouting: llm_configs[0].name: missing",
                              SequentialRouting, [{"backend": "openai"}])

    def test_no_models_yet(self):
        # Taken, as AIOS's adapter builds its router before any model may
        # have started; a call names the empty llm_configs.
        r = SequentialRouting([])
        self.assertRaisesWith(ValueError, "SequentialRouting.get_model_idxs: llm_configs is "
                              "empty", r.get_model_idxs, None)

    def test_llm_configs_must_be_a_list(self):
        self.assertRaisesWith(ValueError, "llm_configs", SequentialRouting, {"name": "a"})
        # An int raised TypeError: 'int' object is not iterable.
        self.assertRaisesWith(llmroute.InvalidInput, "llm_configs: expected a list of model "
                              "configurations, got int", SequentialRouting, 5)

    def test_a_price_that_is_no_finite_number_names_the_model_and_field(self):
        # It said "configuration: cannot be written as JSON: Out of range
        # float values are not JSON compliant", naming neither.
        for field in ("cost_per_input_token", "cost_per_output_token"):
            for value, shown in ((float("nan"), "NaN"), (float("inf"), "inf"),
                                 (float("-inf"), "-inf")):
                with self.subTest(field=field, value=value):
                    self.assertRaisesWith(
                        llmroute.InvalidInput,
                        "llm_configs[1] ('gpt-4'): %s is %s; expected a finite number >= 0"
                        % (field, shown),
                        SequentialRouting, [{"name": "a"}, {"name": "gpt-4", field: value}])
        self.assertRaisesWith(llmroute.InvalidInput,
                              "llm_configs[0] ('a'): timeouts.connect_ms is NaN; expected a "
                              "finite number", SequentialRouting,
                              [{"name": "a", "timeouts": {"connect_ms": float("nan")}}])

    def test_api_key_is_never_passed_but_refused_in_raw_config(self):
        # Through llm_configs the key is dropped ...
        SequentialRouting([{"name": "a", "api_key": "sk-secret"}])
        # ... while a raw configuration holding one is refused by the library.
        self.assertRaisesWith(ValueError, "models[0].api_key", Config,
                              {"models": [{"name": "a", "api_key": "sk-secret"}]})

    def test_malformed_json_text_gives_its_line(self):
        e = self.assertRaisesWith(ValueError, "", Config, '{"models": [\n {"name": "a",,}]}')
        self.assertIsInstance(e, llmroute.ParseError)
        self.assertEqual(e.line, 2)

    def test_unknown_strategy(self):
        e = self.assertRaisesWith(ValueError, "unknown strategy 'fastest'", Router,
                                  Config({"models": MODELS}), strategy="fastest")
        self.assertIsInstance(e, llmroute.StrategyError)

    def test_requirement_out_of_range(self):
        self.assertRaisesWith(ValueError, "performance requirement", Router,
                              Config({"models": MODELS}), performance_requirement=1.5)

    def test_config_file(self):
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "c.json")
            with open(p, "w") as f:
                json.dump({"models": MODELS, "router": {"strategy": "sequential"}}, f)
            cfg = Config.from_file(p)
            self.assertEqual(cfg.names, ["a", "b", "c"])
            self.assertEqual(cfg.router_defaults["strategy"], "sequential")
            with self.assertRaises(OSError):
                Config.from_file(os.path.join(d, "missing.json"))

    def test_text_with_a_byte_order_mark_loads_as_its_file_does(self):
        # Config.from_file skips the mark; Config(text) of the same file read
        # without "utf-8-sig" said "'[' or '{' expected near" it.
        text = json.dumps({"models": MODELS})
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "c.json")
            with open(p, "w", encoding="utf-8-sig") as f:
                f.write(text)
            self.assertEqual(Config.from_file(p).names, ["a", "b", "c"])
            with open(p, encoding="utf-8") as f:
                self.assertEqual(Config(f.read()).names, ["a", "b", "c"])
            with open(p, "rb") as f:
                self.assertEqual(Config(f.read()).names, ["a", "b", "c"])

    def test_a_file_name_given_as_the_text_points_to_from_file(self):
        # Config("/path/config.json") said only "'[' or '{' expected near '/'".
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "c.json")
            with open(p, "w") as f:
                json.dump({"models": MODELS}, f)
            e = self.assertRaisesWith(llmroute.ParseError, "'[' or '{' expected", Config, p)
            self.assertIn("Config(doc) takes JSON text or a dict, and %r is a file: read it "
                          "with Config.from_file(path)" % p, str(e))
            for text in (os.path.join(d, "missing.json"), "config.json", b"c.json"):
                with self.subTest(text=text):
                    e = self.assertRaisesWith(llmroute.ParseError, "", Config, text)
                    self.assertIn("to read a file, use Config.from_file(path)", str(e))
        # Text that is JSON, however bad, gets no such hint.
        for text in ('{"models": [', "[1]", ' \n {"models": 5}'):
            with self.subTest(text=text):
                e = self.assertRaisesWith(ValueError, "", Config, text)
                self.assertNotIn("from_file", str(e))

    def test_a_price_that_is_no_finite_number_is_a_config_error_as_a_negative_one_is(self):
        # NaN and inf raised InvalidInput, -1 ConfigError, the type for a
        # configuration that fails validation.
        for value in (float("nan"), float("inf"), -1):
            with self.subTest(value=value):
                self.assertRaisesWith(llmroute.ConfigError, "cost_per_input_token",
                                      SequentialRouting,
                                      [{"name": "a", "cost_per_input_token": value}])
                self.assertRaisesWith(llmroute.ConfigError, "models[0].cost_per_input_token",
                                      Config,
                                      {"models": [{"name": "a", "cost_per_input_token": value}]})
        e = self.assertRaisesWith(llmroute.ConfigError, "", Config,
                                  {"models": [{"name": "a", "cost_per_output_token": 1e-6,
                                               "timeouts": {"connect_ms": float("inf")}}]})
        self.assertEqual(str(e), "configuration: models[0].timeouts.connect_ms is inf; "
                         "expected a finite number")
        self.assertRaisesWith(llmroute.ConfigError, "llm_configs[0] ('a'): timeouts.connect_ms "
                              "is NaN", SequentialRouting,
                              [{"name": "a", "timeouts": {"connect_ms": float("nan")}}])

    def test_unknown_keys_are_warnings(self):
        cfg = Config({"models": [{"name": "a", "colour": "blue"}]})
        self.assertEqual(len(cfg.warnings), 1)
        self.assertIn("colour", cfg.warnings[0])

    def test_config_values_round_trip(self):
        cfg = Config(llmroute.config_from_llm_configs(MODELS))
        self.assertEqual(cfg.index("c"), 2)
        self.assertEqual(cfg.models[0].cost_per_output_token, 2e-6)
        self.assertEqual(cfg.models[1].base_url, "http://localhost:11434")
        self.assertRaisesWith(ValueError, "unknown model", cfg.index, "zzz")


class RouterErrorsTest(unittest.TestCase):
    def setUp(self):
        self.router = Router(Config({"models": MODELS}), strategy="sequential")

    def test_unknown_model_is_a_value_error_with_the_c_message(self):
        with self.assertRaises(llmroute.UnknownModel) as cm:
            self.router.route(["a", "gpt-5"])
        self.assertIsInstance(cm.exception, ValueError)
        self.assertEqual(str(cm.exception), "unknown model 'gpt-5'")
        self.assertEqual(cm.exception.code, -3)
        self.assertEqual(cm.exception.c_name, "lr_router_route")

    def test_a_model_name_given_as_bytes_is_shown_as_text(self):
        # A bytes name showed as its repr: "unknown model 'b'gpt-5''".
        cfg = Config({"models": MODELS})
        for name, shown in ((b"gpt-5", "gpt-5"), (b"gpt-\xff5", "gpt-\ufffd5")):
            with self.assertRaises(llmroute.UnknownModel) as cm:
                cfg.index(name)
            self.assertEqual(str(cm.exception), "unknown model '%s'" % shown)
            with self.assertRaises(llmroute.UnknownModel) as cm:
                self.router.route_batch(n=1, mode="quality", capacities={name: 1})
            self.assertEqual(str(cm.exception),
                             "Router.route_batch: capacities: unknown model '%s'" % shown)
        with self.assertRaises(llmroute.InvalidInput) as cm:
            self.router.route_batch(n=1, mode="quality", capacities={b"a": -1})
        self.assertEqual(str(cm.exception), "Router.route_batch: capacities['a']: expected a "
                         "whole number from 0 to 1000000000, got -1")

    def test_unknown_model_in_a_batch_names_the_query(self):
        with self.assertRaises(ValueError) as cm:
            self.router.route_batch(models=[["a"], ["a", "x"]], n=2)
        self.assertIn("query 1", str(cm.exception))
        self.assertIn("'x'", str(cm.exception))

    def test_sequential_cannot_solve_a_batch_assignment(self):
        with self.assertRaises(llmroute.StrategyError) as cm:
            self.router.route_batch(models=["a", "b"], n=3, mode="quality", alpha=0.5)
        self.assertIn("use the smart strategy", str(cm.exception))

    def test_empty_batch(self):
        # The method names itself, as for its other arguments: this read
        # "the batch has no queries" alone.
        for where, fn in (("Router.route_batch", self.router.route_batch),
                          ("Router.route_indices", self.router.route_indices)):
            for kw in ({"queries": []}, {"n": 0}):
                with self.subTest(where=where, kw=kw):
                    with self.assertRaises(llmroute.EmptyInput) as cm:
                        fn(**kw)
                    self.assertEqual(str(cm.exception), where + ": the batch has no queries")

    def test_bad_batch_mode(self):
        with self.assertRaises(ValueError):
            self.router.route_batch(n=2, mode="fastest")

    def test_closed_router(self):
        self.router.close()
        with self.assertRaises(ValueError):
            self.router.route(["a"])

    def test_route_gives_the_ranking(self):
        d = self.router.route(["a", "b", "c"], ranking=True)
        self.assertEqual([c.name for c in d.ranking], ["a", "b", "c"])
        d = self.router.route(["a", "b", "c"], ranking=True)
        self.assertEqual([c.name for c in d.ranking], ["b", "c", "a"])
        self.assertEqual(d.name, "b")

    def test_input_tokens_are_estimated_from_the_text(self):
        d = self.router.route(["a"], query="x" * 40)
        self.assertEqual(d.input_tokens, llmroute.estimate_tokens("x" * 40))
        self.assertEqual(d.input_tokens, 10)
        self.assertEqual(self.router.route(["a"], query="q", input_tokens=77).input_tokens, 77)


def run_apart(code):
    """Runs `code` in a python3 of its own, with this package on the path, so
    that a fault in the C library fails the test instead of the runner."""
    env = dict(os.environ, PYTHONPATH=support.PACKAGE_ROOT)
    prelude = ("import llmroute\nfrom llmroute import *\nM = [{'name': 'a', "
               "'cost_per_input_token': 1e-6, 'cost_per_output_token': 2e-6}, "
               "{'name': 'b', 'cost_per_input_token': 0, 'cost_per_output_token': 0}]\n")
    return subprocess.run([sys.executable, "-c", prelude + code], env=env,
                          capture_output=True, text=True, timeout=60)


class ReadOnlyAttributesTest(unittest.TestCase):
    """What a Config or a Router holds from its construction: read, never
    set (AttributeError naming it and saying what to do instead)."""

    def refused(self, obj, attr, value, words):
        with self.assertRaises(AttributeError) as cm:
            setattr(obj, attr, value)
        self.assertIn(words, str(cm.exception))

    def test_a_configs_models_names_and_text_are_refused(self):
        # config.names = ["b", "a", "c"] used to be taken: a Router built on
        # the config then named its choice of model 0 "b"; config.models =
        # [] made len(config) 0 and a batch with capacities by name raise
        # IndexError; config.json = "..." was read back and loaded nothing.
        cfg = Config({"models": MODELS})
        text = cfg.json
        for attr, value in (("names", ["b", "a", "c"]), ("models", []),
                            ("json", '{"models": []}')):
            self.refused(cfg, attr, value, "Config: %s: read-only" % attr)
        self.assertEqual((cfg.names, len(cfg), cfg.json), (["a", "b", "c"], 3, text))
        with Router(cfg, strategy="sequential") as r:
            self.assertEqual(r.route(["a"]).name, "a")
            self.assertEqual(r.route_batch(n=2, models=["a", "b"], capacities={"a": 1}).indices,
                             [0, 1])

    def test_changing_a_configs_names_or_models_in_place_changes_nothing(self):
        # cfg.names and cfg.models were the Config's own lists, which its
        # Routers share: cfg.names.reverse() had a Router name its choice
        # of model 0 "c", and cfg.models.clear() made len(cfg) 0.
        cfg = Config({"models": MODELS})
        with Router(cfg, strategy="sequential") as before:
            cfg.names.reverse()
            cfg.names.append("x")
            cfg.models.clear()
            self.assertEqual((cfg.names, len(cfg), [m.name for m in cfg.models]),
                             (["a", "b", "c"], 3, ["a", "b", "c"]))
            self.assertEqual(cfg.index("a"), 0)
            with Router(cfg, strategy="sequential") as after:
                for r in (before, after):
                    self.assertEqual([r.route().name for _ in range(3)], ["a", "b", "c"])
                    self.assertEqual([d.name for d in r.route_batch(n=3).decisions],
                                     ["a", "b", "c"])

    def test_a_routers_config_and_store_are_refused(self):
        # router.config = other and router.store = other used to be taken
        # while the router went on routing over the ones it was made with.
        cfg, store = Config({"models": MODELS}), llmroute.Store()
        r = Router(cfg, strategy="sequential", store=store)
        try:
            self.refused(r, "config", Config({"models": MODELS[:1]}),
                         "Router: config: read-only")
            self.refused(r, "store", llmroute.Store(), "Router: store: read-only")
            self.assertIs(r.config, cfg)
            self.assertIs(r.store, store)
        finally:
            r.close()


class EveryReadOnlyAttributeTest(unittest.TestCase):
    """Every attribute a Config, Store, Router or OpenAIEmbedder holds
    read-only refuses both a new value and del, in the words README and
    help() give, and keeps its value."""

    def test_set_and_del_are_refused_and_the_value_kept(self):
        cfg, store = Config({"models": MODELS}), llmroute.Store()
        loaded = ("(the configuration is loaded when the Config is made, and never changes); "
                  "to change it, load another Config(doc) or Config.from_file(path)")
        assert_read_only(self, cfg, [("json", loaded), ("models", loaded), ("names", loaded)])
        assert_read_only(self, store, [
            ("path", "(the store file is opened when the Store is made); to change it, "
                     "open another Store(path, ...)"),
            ("embed", "(a dense store embeds its queries with the function it was opened "
                      "with); to change it, open another Store(path, embedder=..., embed=...) "
                      "on the same file")])
        with Router(cfg, strategy="sequential", store=store) as r:
            assert_read_only(self, r, [
                ("config", "(the router routes over the Config it was made with); to change "
                           "it, build another Router(config, ...)"),
                ("store", "(the router routes over the Store it was made with); to change it, "
                          "build another Router(config, store=...)")])
        made = ("(the URL asked and the store id (\"openai:\" + model) are taken from base_url "
                "and model when the OpenAIEmbedder is made); to change it, make another "
                "OpenAIEmbedder(base_url, model, ...)")
        emb = llmroute.OpenAIEmbedder("http://127.0.0.1:19100/v1", "m")
        assert_read_only(self, emb, [(a, made) for a in ("base_url", "url", "model",
                                                          "embedder_id")])
        self.assertEqual((emb.url, emb.embedder_id), ("http://127.0.0.1:19100/v1/embeddings",
                                                      "openai:m"))


class BorrowedHandlesTest(unittest.TestCase):
    """A Router keeps pointers to its Config and Store: closing either while
    the router lives must not free what the router reads."""

    def test_closing_a_borrowed_config_keeps_its_router_working(self):
        p = run_apart("c = Config({'models': M})\n"
                      "r = Router(c, strategy='sequential')\n"
                      "c.close()\n"
                      "print(r.route(['a', 'b']).name, r.route_index(('a', 'b')))\n"
                      "try:\n    c.index('a')\nexcept ValueError as e:\n    print(e)\n"
                      "r.close()\n")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.splitlines(), ["a 1", "the configuration is closed"])

    def test_closing_the_store_of_a_smart_router(self):
        p = run_apart("s = SmartRouting(M, n_similar=4)\n"
                      "s.store.add_data([{'query': 'hello world', 'input_token_length': 3,"
                      " 'outputs': [{'model_name': 'a', 'correctness': True,"
                      " 'output_token_length': 10}]}])\n"
                      "print(s.get_model_idxs(M, ['hello']))\n"
                      "s.store.close()\n"
                      "try:\n    s.get_model_idxs(M, ['hello'])\n"
                      "except ValueError as e:\n    print(e)\n")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.splitlines(),
                         ["[0]", "SmartRouting.get_model_idxs: the store is closed"])

    def test_a_borrowed_config_is_freed_with_its_last_router(self):
        cfg = Config({"models": MODELS})
        r1, r2 = Router(cfg, strategy="sequential"), Router(cfg, strategy="sequential")
        cfg.close()
        self.assertIsNotNone(cfg._orphan)
        r1.close()
        self.assertIsNotNone(cfg._orphan)
        self.assertEqual(r2.route(["a"]).name, "a")
        r2.close()
        r2.close()
        self.assertIsNone(cfg._orphan)
        self.assertEqual(cfg._borrowers, 0)

    def test_a_router_that_fails_to_build_borrows_nothing(self):
        cfg = Config({"models": MODELS})
        with self.assertRaises(ValueError):
            Router(cfg, strategy="fastest")
        self.assertEqual(cfg._borrowers, 0)


# Each thread loops one call on the object until it is closed; the script
# prints what ended each loop: the clean "is closed" error, or anything else.
_CLOSE_RACE = '''
import threading, time
recs = [{'query': 'query %d ' % i + 'word%d ' % (i % 7) * 40, 'input_token_length': 5,
         'outputs': [{'model_name': 'a', 'correctness': 1, 'output_token_length': 5},
                     {'model_name': 'b', 'correctness': i % 2, 'output_token_length': 5}]}
        for i in range(300)]
def race(obj, calls):
    ends, started = [], threading.Barrier(len(calls) + 1)
    def loop(call):
        started.wait()
        try:
            while True:
                call()
        except llmroute.InvalidInput as e:
            ends.append(str(e))
        except BaseException as e:
            ends.append('%s: %s' % (type(e).__name__, e))
    threads = [threading.Thread(target=loop, args=(c,)) for c in calls]
    for t in threads:
        t.start()
    started.wait()
    time.sleep(0.02)
    obj.close()
    for t in threads:
        t.join()
    return sorted(set(ends))
'''


class CloseDuringCallsTest(unittest.TestCase):
    """close() while other threads are inside calls on the same object (the
    GIL is released during each foreign call) closes it to new calls and
    frees the C object only when the last call returns: no crash, and each
    thread ends on the "is closed" error."""

    ROUNDS = 15

    def assertCleanEnds(self, code, closed):
        p = run_apart(_CLOSE_RACE + code)
        self.assertEqual(p.returncode, 0, p.stdout[-2000:] + p.stderr[-4000:])
        for line in p.stdout.splitlines():
            for end in eval(line):
                self.assertTrue(end.endswith(closed), end)
        self.assertEqual(len(p.stdout.splitlines()), self.ROUNDS)

    def test_closing_a_router_while_threads_route(self):
        self.assertCleanEnds(
            "s = Store()\ns.import_records(recs)\n"
            "q = 'query 1 word1 word3 ' * 50\n"
            "for _ in range(%d):\n"
            "    r = Router(Config({'models': M}), strategy='smart', store=s)\n"
            "    print(race(r, [lambda: r.route(query=q), lambda: r.route(['a', 'b'], q),\n"
            "                   lambda: r.route_batch([q, q], mode='quality', alpha=0.5),\n"
            "                   lambda: r.route_indices([q] * 3), lambda: r.strategy]))\n"
            % self.ROUNDS, "the router is closed")

    def test_closing_a_store_while_threads_add(self):
        self.assertCleanEnds(
            "for k in range(%d):\n"
            "    s = Store()\n"
            "    print(race(s, [lambda: s.add('query %%d with some words' %% k,\n"
            "                                 [('a', 1, 5), ('b', 0, 7)]),\n"
            "                   lambda: s.add_outcome('another query', 'a', 1, 3),\n"
            "                   lambda: s.import_records(recs[:20]), lambda: len(s),\n"
            "                   lambda: s.dim]))\n" % self.ROUNDS, "the store is closed")

    def test_closing_a_query_store_during_add_data(self):
        self.assertCleanEnds(
            "for k in range(%d):\n"
            "    qs = QueryStore()\n"
            "    print(race(qs, [lambda: qs.add_data(recs[:50]), lambda: qs.count()]))\n"
            % self.ROUNDS, "the store is closed")


class OutOfRangeInputTest(unittest.TestCase):
    """Values ctypes would store modulo the C field's size, or that the
    library reads as "the default", are refused by name instead."""

    def setUp(self):
        self.router = Router(Config({"models": MODELS}), strategy="sequential")

    def assertRefused(self, text, fn, *args, **kw):
        with self.assertRaises(llmroute.InvalidInput) as cm:
            fn(*args, **kw)
        self.assertIn(text, str(cm.exception))

    def test_input_tokens_beyond_a_c_long_are_refused_not_wrapped(self):
        self.assertRefused("input_tokens", self.router.route, ["a"], "q",
                           input_tokens=2 ** 64 + 7)
        self.assertRefused("input_tokens[1]", self.router.route_batch, ["q", "r"],
                           models=["a"], input_tokens=[3, 2 ** 64 + 7])
        # Within a C long but over the library's cap of 1e9 (a record's).
        self.assertRefused("input_tokens: 1099511627776 is over the cap of 1000000000",
                           self.router.route, ["a"], "q", input_tokens=2 ** 40)
        self.assertEqual(self.router.route(["a"], "q", input_tokens=10 ** 9).input_tokens,
                         10 ** 9)

    def test_input_tokens_that_are_no_count(self):
        for bad in (float("nan"), float("inf"), -5, 2.5, "12"):
            with self.subTest(bad=bad):
                self.assertRefused("input_tokens", self.router.route, ["a"], "q",
                                   input_tokens=bad)
        self.assertEqual(self.router.route(["a"], "q", input_tokens=12.0).input_tokens, 12)

    def test_n_similar_beyond_a_c_int_is_refused_not_wrapped(self):
        self.assertRefused("n_similar", Router, Config({"models": MODELS}),
                           strategy="sequential", n_similar=2 ** 32 + 16)
        self.assertRefused("n_similar", Router, Config({"models": MODELS}),
                           strategy="sequential", n_similar=0)

    def test_nan_is_no_requirement(self):
        self.assertRefused("performance_requirement", Router, Config({"models": MODELS}),
                           strategy="sequential", performance_requirement=float("nan"))
        self.assertRefused("performance_requirement", self.router.route, ["a"], "q",
                           performance_requirement=float("nan"))

    def test_nul_inside_a_model_name_is_refused_not_cut_short(self):
        with self.assertRaises(ValueError) as cm:
            SequentialRouting(MODELS).get_model_idxs([{"name": "a\0b"}])
        self.assertIn("NUL", str(cm.exception))
        self.assertRefused("NUL", self.router.route, ["a"], "x\0y")

    def test_candidates_that_are_no_names(self):
        self.assertRefused("expected a list of model names", self.router.route, 5)
        self.assertRefused("models[0]", self.router.route, [["a"]])
        self.assertRefused("models[0]", self.router.route_index, [{"name": "a"}])


class NumbersBeyondADoubleTest(unittest.TestCase):
    """A Python int has no bound; a double (every number the library reads
    but counts) ends near 1.8e308, and the configuration's whole numbers at
    2**63 - 1. float() of a larger int raised OverflowError out of the
    binding, which no `except ValueError` catches, and the configuration
    and import named a column of the binding's own JSON, not the field."""

    HUGE = 10 ** 400

    def assertNamed(self, exc, text, fn, *args, **kw):
        with self.assertRaises(exc) as cm:
            fn(*args, **kw)
        self.assertIsInstance(cm.exception, ValueError)
        self.assertIn(text, str(cm.exception))

    def test_number_arguments_name_the_argument(self):
        huge = self.HUGE
        router = Router(Config({"models": MODELS}), strategy="sequential")
        store = llmroute.Store()
        too_large = "is too large for a number"
        for text, fn, args, kw in [
                ("Router: performance_requirement", Router, (Config({"models": MODELS}),),
                 {"performance_requirement": huge}),
                ("Router.route: performance_requirement", router.route, (["a"], "q"),
                 {"performance_requirement": huge}),
                ("Router.route_batch: alpha", router.route_batch, (["q"],),
                 {"mode": "quality", "alpha": huge}),
                ("Store.add: outcomes[0].correctness", store.add, ("q", [("a", huge, 3)]), {}),
                ("Store.add_outcome: output_tokens", store.add_outcome, ("q", "a", 1, huge),
                 {}),
                ("SmartRouting: performance_requirement", llmroute.SmartRouting, (MODELS,),
                 {"performance_requirement": huge}),
                ("SmartRouting: bootstrap_timeout", llmroute.SmartRouting, (MODELS,),
                 {"bootstrap_timeout": huge})]:
            with self.subTest(text=text):
                self.assertNamed(llmroute.InvalidInput, "%s: int 1000" % text, fn, *args,
                                 **kw)
                self.assertNamed(llmroute.InvalidInput, too_large, fn, *args, **kw)
        self.assertEqual(len(store), 0)
        self.assertNamed(llmroute.EmbedError, "OpenAIEmbedder: timeout",
                         llmroute.OpenAIEmbedder, "http://127.0.0.1:1/v1", "m", timeout=huge)

    def test_a_configuration_names_the_field(self):
        for value in (self.HUGE, 2 ** 63):
            with self.subTest(value=value):
                self.assertNamed(llmroute.ConfigError, "SequentialRouting: llm_configs[1] "
                                 "('b'): cost_per_input_token is int %s" % str(value)[:10],
                                 SequentialRouting, [MODELS[0], dict(MODELS[1],
                                                     cost_per_input_token=value)])
                self.assertNamed(llmroute.ConfigError, "models[0].capacity is int",
                                 Config, {"models": [dict(MODELS[0], capacity=value)]})

    def test_records_name_the_record_and_field_and_nothing_is_stored(self):
        store = llmroute.Store()
        rec = {"query": "q", "input_token_length": 3,
               "outputs": [{"model_name": "a", "correctness": 1, "output_token_length": 4}]}
        bad = json.loads(json.dumps(rec))
        bad["outputs"][0]["output_token_length"] = self.HUGE
        for strict in (True, False):
            self.assertNamed(llmroute.InvalidInput, "import_records: records[1]: "
                             "outputs[0].output_token_length: int 1000",
                             store.import_records, [rec, bad], strict=strict)
        self.assertEqual(len(store), 0)
        qs = llmroute.QueryStore(None)
        self.assertNamed(llmroute.InvalidInput, "QueryStore.add_data: data[1]: "
                         "outputs[0].output_token_length: int 1000", qs.add_data, [rec, bad])
        self.assertEqual(qs.count(), 0)


class StoreBusyTest(unittest.TestCase):
    def test_a_write_lock_held_past_the_wait_is_store_busy(self):
        import sqlite3
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "h.db")
            store = llmroute.Store(path)
            lock = sqlite3.connect(path, isolation_level=None, timeout=0)
            try:
                lock.execute("BEGIN IMMEDIATE")
                with self.assertRaises(llmroute.StoreBusy) as cm:
                    store.add_outcome("a question", "a", 1, 5)
                self.assertIsInstance(cm.exception, llmroute.StoreError)
                self.assertEqual(cm.exception.code, -12)
                self.assertIn(path, str(cm.exception))
                self.assertIn("another process", str(cm.exception))
            finally:
                lock.rollback()
                lock.close()
            store.add_outcome("a question", "a", 1, 5)
            self.assertEqual(len(store), 1)
            store.close()


class StoreReplacedTest(unittest.TestCase):
    def test_a_write_after_the_file_was_replaced_is_store_replaced(self):
        with tempfile.TemporaryDirectory() as d:
            path, new = os.path.join(d, "h.db"), os.path.join(d, "new.db")
            store = llmroute.Store(path)
            store.add_outcome("a question", "a", 1, 5)
            other = llmroute.Store(new)
            other.add_outcome("another question", "b", 1, 5)
            other.add_outcome("a third question", "b", 0, 5)
            other.close()
            os.rename(new, path)
            with self.assertRaises(llmroute.StoreReplaced) as cm:
                store.add_outcome("lost?", "a", 1, 5)
            self.assertIsInstance(cm.exception, llmroute.StoreError)
            self.assertEqual(cm.exception.code, -13)
            self.assertIn(path, str(cm.exception))
            self.assertEqual(len(store), 1)
            self.assertTrue(store.refresh())  # opens the file now at the path
            self.assertEqual(len(store), 2)
            store.add_outcome("kept", "b", 1, 5)
            self.assertEqual(len(store), 3)
            store.close()


class StrErrorTest(unittest.TestCase):
    def test_every_code_has_a_description_of_its_own(self):
        # lr_strerror() answers "unknown error" for a code it does not know,
        # so a non-empty answer alone proves nothing: each code the library
        # returns must have a description that is neither that nor another's.
        from llmroute import errors
        unknown = errors.strerror(-1000)
        self.assertEqual(unknown, "unknown error")
        seen = {}
        for code in range(-14, 1):
            with self.subTest(code=code):
                text = errors.strerror(code)
                self.assertTrue(text)
                self.assertNotEqual(text, unknown)
                self.assertNotIn(text, seen, "the description of %d too" % seen.get(text, 0))
                seen[text] = code

    def test_every_error_class_is_exported(self):
        # `from llmroute.errors import *` and the package itself give every
        # class an error code maps to (StoreReplaced and Cancelled were left
        # out of the module's list).
        from llmroute import errors
        classes = set(errors._BY_CODE.values()) | {errors.Error, errors.EmbedError}
        for cls in classes:
            with self.subTest(cls=cls.__name__):
                self.assertIn(cls.__name__, errors.__all__)
                self.assertIs(getattr(llmroute, cls.__name__), cls)


if __name__ == "__main__":
    unittest.main()
