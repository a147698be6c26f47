"""The smart-routing classes against misuse that crashed, hung or silently
did something else (copies, an embed function that writes to its own
store, a model name where QueryStore takes a path, ...), and current
AIOS's SmartRouting.available_models."""
import os
import unittest
import warnings

import support  # noqa: F401  (puts the package on the path)
from support import CountingEmbed, InTempDir, SmartTestCase, priced
from test_copy import check_refused
from test_errors import run_apart

import llmroute
from llmroute import InvalidType, QueryStore, SmartRouting

NAMES = ["cheap", "strong"]
CONFIGS = priced(NAMES, [(1e-7, 2e-7), (1e-5, 3e-5)])


def records(n=3):
    return [{"query": "question number %d" % i, "input_token_length": 8,
             "outputs": [{"model_name": "cheap", "correctness": i % 2,
                          "output_token_length": 20},
                         {"model_name": "strong", "correctness": 1,
                          "output_token_length": 40}]} for i in range(n)]


class CopyIsRefusedTest(SmartTestCase):
    """As test_copy.py, for SmartRouting (a copy failed with "cannot pickle
    '_thread.lock'" or shared the routers and the store) and QueryStore."""

    def test_smart_routing(self):
        check_refused(self, "SmartRouting", "SmartRouting(M)",
                      "assert x.llm_configs == M and len(x.get_model_idxs(M, ['q'])) == 1",
                      "build a new SmartRouting(llm_configs, ...), with the same store_path")

    def test_query_store(self):
        check_refused(self, "QueryStore", "QueryStore()", "assert x.count() == 0",
                      "open another QueryStore(path=...) on the same file")


# An embed function that writes to the store it embeds for, from inside an
# import: it waited forever for the store's write lock, which the import
# holds. Run apart, so that a hang fails the test (run_apart's timeout).
REENTRANT = """
import zlib
def vec(t):
    return [((zlib.crc32((t + str(j)).encode()) % 1000) + 1) / 1000.0 for j in range(8)]
RECS = [{"query": "q%d" % i, "input_token_length": 3,
         "outputs": [{"model_name": "a", "correctness": 1, "output_token_length": 5}]}
        for i in range(100)]
state = {"armed": False}
def embed(texts):
    if state["armed"] and len(texts) > 1:
        state["armed"] = False
        WRITE
    return [vec(t) for t in texts]
s = MAKE
state["armed"] = True
try:
    IMPORT
except llmroute.Error as e:
    print(type(e).__name__, "|", type(e.__cause__).__name__, "|", e.__cause__)
else:
    print("imported")
print(COUNT)
ADD
print(COUNT)
"""


class EmbedWritesToItsOwnStoreTest(SmartTestCase):
    def run_case(self, **parts):
        code = REENTRANT
        for k, v in parts.items():
            code = code.replace(k, v)
        p = run_apart(code)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        return p.stdout.splitlines()

    def check(self, lines, doing, before):
        self.assertEqual(len(lines), 3, lines)
        kind, cause, message = lines[0].split(" | ")
        self.assertEqual((kind, cause), ("EmbedError", "InvalidInput"))
        self.assertIn("cannot %s from within its own embed callback" % doing, message)
        # The import wrote nothing (all or nothing); a write after it works.
        self.assertEqual(lines[1:], [str(before), str(before + 1)])

    def test_add_data_from_embed_during_add_data(self):
        lines = self.run_case(
            MAKE="SmartRouting(M, embed=embed, embedder='hash8')",
            WRITE="s.store.add_data(RECS[:2])", IMPORT="s.store.add_data(RECS)",
            COUNT="s.store.count()", ADD="s.store.add_data(RECS[:1])")
        self.check(lines, "import into it", 0)

    def test_add_data_of_one_record_from_embed_during_add_data(self):
        # add_data of one record into a dense store that holds records
        # embeds it, then appends it: from inside the store's own import it
        # called embed again before the library refused the write. It is
        # refused at once, as add_data of several records is.
        lines = self.run_case(
            MAKE="SmartRouting(M, embed=embed, embedder='hash8')\ns.store.add_data(RECS[:3])",
            WRITE="s.store.add_data(RECS[3:4])", IMPORT="s.store.add_data(RECS[4:])",
            COUNT="s.store.count()", ADD="s.store.add_data(RECS[:1])")
        self.check(lines, "import into it", 3)

    def test_store_add_and_refresh_from_embed_during_import(self):
        for write, doing in (("s.add('x', [('a', 1, 5)])", "add to it"),
                             ("s.add_outcome('x', 'a', 1, 5)", "add to it"),
                             ("s.refresh()", "refresh it"),
                             ("s.rebuild()", "rebuild it")):
            with self.subTest(write=write):
                lines = self.run_case(
                    MAKE="Store(':memory:', embedder='hash8', embed=embed)",
                    WRITE=write, IMPORT="s.import_records(RECS)",
                    COUNT="len(s)", ADD="s.add('y', [('a', 1, 5)])")
                self.check(lines, doing, 0)

    def test_another_store_may_be_written_from_embed(self):
        lines = self.run_case(
            MAKE="Store(':memory:', embedder='hash8', embed=embed)\nother = Store()",
            WRITE="other.add('x', [('a', 1, 5)])", IMPORT="s.import_records(RECS)",
            COUNT="(len(s), len(other))", ADD="s.add('y', [('a', 1, 5)])")
        self.assertEqual(lines, ["imported", "(100, 1)", "(101, 1)"])


class QueryStoreFirstArgumentTest(InTempDir, SmartTestCase):
    """QueryStore("all-mpnet-base-v2"), AIOS's positional model_name, made a
    SQLite file of that name in the working directory and used the
    built-in embedder. A first positional str that looks like no store
    file is refused now."""

    def test_a_model_name_is_refused_and_makes_no_file(self):
        for name in ("all-mpnet-base-v2", "sentence-transformers/all-mpnet-base-v2", "history"):
            for kw in ({}, {"embed": CountingEmbed(), "embedder": "e"}):
                with self.subTest(name=name, kw=sorted(kw)):
                    with self.assertRaises(llmroute.InvalidInput) as cm:
                        QueryStore(name, **kw)
                    msg = str(cm.exception)
                    self.assertIn("path=%r" % name, msg)
                    self.assertIn("model_name=%r with embed=" % name, msg)
                    self.assertEqual(os.listdir("."), [])

    def test_what_looks_like_a_store_file_is_one(self):
        os.mkdir("data")
        for arg in ("h.db", "h.sqlite", "./history", "data/h", ":memory:"):
            with self.subTest(arg=arg):
                q = QueryStore(arg)
                q.add_data(records())
                self.assertEqual(q.path, arg)
                q.close()
        QueryStore(path="existing").close()  # path= takes any name
        QueryStore("existing").close()       # and so does a file that exists
        self.assertEqual(sorted(f for f in os.listdir(".") if not f.endswith(("-wal", "-shm"))),
                         ["data", "existing", "h.db", "h.sqlite", "history"])


class SetsAreRefusedTest(SmartTestCase):
    """A set gives its models in an order that changes with the hash seed;
    Router refused one, SmartRouting took it."""

    def test_a_set_of_names_is_refused(self):
        r = SmartRouting(CONFIGS)
        r.store.add_data(records())
        for bad in (set(NAMES), frozenset(NAMES)):
            with self.subTest(bad=type(bad).__name__):
                with self.assertRaises(InvalidType) as cm:
                    r.get_model_idxs(bad, ["question number 1"], [8])
                self.assertIn("SmartRouting.get_model_idxs: selected_llms: expected a list of "
                              "models, got a %s" % type(bad).__name__, str(cm.exception))
                with self.assertRaises(InvalidType) as cm:
                    r.get_model_idxs(selected_llm_lists=bad, queries=["q"])
                self.assertIn("selected_llm_lists: expected a list", str(cm.exception))
                with self.assertRaises(InvalidType) as cm:
                    r.store.predict("q", bad)
                self.assertIn("model_configs: expected a list", str(cm.exception))
        self.assertEqual(len(r.get_model_idxs(sorted(NAMES), ["question number 1"], [8])), 1)


class AvailableModelsTest(SmartTestCase):
    def test_names_of_llm_configs_in_order(self):
        configs = list(CONFIGS)
        r = SmartRouting(configs)
        self.assertEqual(r.available_models, NAMES)
        configs.append(priced(["late"], [(0, 0)])[0])
        self.assertEqual(r.available_models, NAMES + ["late"])
        r.available_models.append("x")  # a new list at each read
        self.assertEqual(r.available_models, NAMES + ["late"])
        with self.assertRaises(AttributeError):
            r.available_models = ["x"]
        self.assertEqual(SmartRouting([]).available_models, [])


class NanRequirementTest(SmartTestCase):
    def test_nan_is_a_config_error_as_a_value_out_of_range_is(self):
        for kw in ({"performance_requirement": float("nan")}, {"alpha": float("nan")}):
            with self.subTest(kw=kw):
                with self.assertRaises(llmroute.ConfigError) as cm:
                    SmartRouting(CONFIGS, **kw)
                self.assertIn("%s: expected a number, got NaN" % list(kw)[0], str(cm.exception))
        with self.assertRaises(llmroute.ConfigError):
            SmartRouting(CONFIGS, performance_requirement=-1)




class NoTextOverAnEmptyStoreTest(SmartTestCase):
    """A query with no text and a choice to make is refused for its text
    over an empty store, as over one with records. It fell back as the
    empty store does (SmartRouting: the first candidate, with the empty
    store's warning; Router: EmptyInput, "the history store is empty"), and
    once data was imported as told, the same call raised for the text."""

    def test_smart_routing_refuses_the_empty_text_not_the_store(self):
        sr = SmartRouting(CONFIGS)
        self.assertEqual(sr.store.count(), 0)
        for call in (lambda: sr.get_model_idxs(None, [""]),
                     lambda: sr.get_model_idxs([NAMES, NAMES], ["a question", ""]),
                     lambda: sr.predict([""])):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                with self.assertRaises(ValueError) as cm:
                    call()
            self.assertIsInstance(cm.exception, llmroute.InvalidInput)
            self.assertIn("smart routing needs the query text", str(cm.exception))
            self.assertNotIn("history store is empty", str(cm.exception))
            self.assertEqual([str(w.message) for w in caught], [])
        # One candidate needs no text; a text over the empty store falls
        # back as before.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            self.assertEqual(sr.get_model_idxs([["strong"]], [""]), [1])
            self.assertEqual(sr.get_model_idxs(None, ["a question"]), [0])
        # Refused the same once the store has records.
        sr.store.add_data(records())
        with self.assertRaises(llmroute.InvalidInput) as cm:
            sr.get_model_idxs(None, [""])
        self.assertIn("smart routing needs the query text", str(cm.exception))

    def test_router_refuses_no_text_not_the_empty_store(self):
        st = llmroute.Store(":memory:")
        cfg = llmroute.Config({"models": [
            {"name": n, "cost_per_input_token": 1e-6, "cost_per_output_token": 2e-6}
            for n in NAMES]})
        r = llmroute.Router(cfg, strategy="smart", store=st)
        for query in (None, ""):
            with self.assertRaises(llmroute.InvalidInput) as cm:
                r.route(NAMES, query=query)
            self.assertEqual(str(cm.exception).split(": ")[-1],
                             "smart routing needs the query text")
        with self.assertRaises(llmroute.EmptyInput) as cm:
            r.route(NAMES, query="a question")
        self.assertIn("the history store is empty", str(cm.exception))
        self.assertEqual(r.route(["cheap"]).name, "cheap")
        r.close()
        st.close()


class RouteLeavesNothingBehindTest(SmartTestCase):
    """Router.route() filled its thread's request as it checked the
    arguments: one that raised left the query's vector (freed) behind, and
    the next call without a query routed by it; an embed function that
    routed on the same router reset the request under the outer call,
    which then chose a model it was not given."""

    def store_and_config(self, embed):
        st = llmroute.Store(":memory:", embedder="toy", embed=embed)
        st.add("hello", [("a", 1, 10), ("b", 0, 10)])
        st.add("other", [("a", 0, 10), ("b", 1, 10)], embedding=[-3.0, 1.0, -2.0])
        cfg = llmroute.Config({"models": [
            {"name": n, "cost_per_input_token": 0, "cost_per_output_token": 0}
            for n in ("a", "b", "c")]})
        return st, cfg

    def test_a_refused_call_leaves_no_vector_for_the_next(self):
        st, cfg = self.store_and_config(lambda texts: [[1.0, 2.0, 3.0] for _ in texts])
        r = llmroute.Router(cfg, strategy="smart", store=st)
        with self.assertRaises(llmroute.InvalidInput):
            r.route(["a", "b"], query="hello", input_tokens=-5)
        with self.assertRaises(llmroute.InvalidInput) as cm:
            r.route(["a", "b"])
        self.assertIn("needs the query text", str(cm.exception))
        r.close()
        st.close()

    def test_an_embed_function_that_routes_on_the_same_router(self):
        holder = {}

        def embed(texts):
            if "r" in holder:
                holder["inner"] = holder["r"].route(["c"]).name
            return [[1.0, 2.0, 3.0] for _ in texts]
        st, cfg = self.store_and_config(embed)
        # The inner call routes on the router the outer call is on.
        holder["r"] = r = llmroute.Router(cfg, strategy="smart", store=st)
        d = r.route(["a", "b"], query="hello", input_tokens=4)
        self.assertEqual(holder.get("inner"), "c")
        self.assertIn(d.name, ("a", "b"))
        self.assertEqual(d.input_tokens, 4)
        r.close()
        st.close()


class SelfHoldingConfigTest(SmartTestCase):
    """A configuration that holds itself raised RecursionError, no error of
    the package's (Store.import_records already refused such a record)."""

    def test_refused_naming_it(self):
        d = {"name": "a", "headers": {}}
        d["headers"]["self"] = d
        with self.assertRaises(llmroute.InvalidInput) as cm:
            llmroute.Config({"models": [d]})
        self.assertIn("circular reference", str(cm.exception))
        with self.assertRaises(InvalidType) as cm:
            llmroute.SequentialRouting([d])
        self.assertIn("llm_configs[0].headers", str(cm.exception))


if __name__ == "__main__":
    unittest.main()
