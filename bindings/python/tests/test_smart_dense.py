"""Smart routing over a dense store from Python: every routed query's vector
comes from the embed function (one call per batch) or an OpenAI-compatible
server, and the choices are the ones the vectors imply, the same as the
llmroute command's over the same store and server."""
import json
import os
import socket
import subprocess
import threading
import time
import unittest
import urllib.parse
import warnings

import support
from support import (DIM, CountingEmbed, EmbedServer, SmartTestCase, SwitchEmbed,
                     hashed_vector)

import llmroute
from llmroute import SmartRouting

MODELS = support.priced(["cheap", "mid", "dear"], [(1e-7, 1e-7), (1e-6, 1e-6), (1e-5, 1e-5)])

# Three topics. The stored queries of a topic share one vector (TOPIC[t]);
# only one model was right on each: "dear" on topic 0, "mid" on 1, "cheap"
# on 2. A query's words share nothing with its topic's stored text, so only
# the vectors can say which records are its neighbours.
TOPIC = [[0.0] * DIM for _ in range(3)]
for _t in range(3):
    TOPIC[_t][_t * 7] = 1.0
    TOPIC[_t][_t * 7 + 1] = 0.5
WINNER = ["dear", "mid", "cheap"]
PER_TOPIC = 6


def topic_records():
    recs = []
    for t in range(3):
        for i in range(PER_TOPIC):
            recs.append({"query": "stored text of topic %d number %d" % (t, i),
                         "input_token_length": 20,
                         "outputs": [{"model_name": m, "correctness": int(m == WINNER[t]),
                                      "output_token_length": 100} for m in WINNER]})
    return recs


def topic_embed():
    table = {}
    for r in topic_records():
        t = int(r["query"].split()[4])
        table[r["query"]] = TOPIC[t]
    for t in range(3):
        table["unrelated words %d" % t] = TOPIC[t]
    return CountingEmbed(table=table)


QUERIES = ["unrelated words 2", "unrelated words 0", "unrelated words 1", "unrelated words 0"]
EXPECTED = [WINNER[2], WINNER[0], WINNER[1], WINNER[0]]


class DenseRoutingTest(SmartTestCase):
    def smart(self, **kw):
        # The store's embed is a SwitchEmbed over embed: a test may set its
        # fn to another function.
        embed = topic_embed()
        sr = SmartRouting(MODELS, performance_requirement=0.7, n_similar=PER_TOPIC,
                          embed=SwitchEmbed(embed), embedder="all-MiniLM-L6-v2", **kw)
        sr.store.add_data(topic_records())
        embed.calls.clear()
        return sr, embed

    def names(self, idxs):
        return [MODELS[i]["name"] for i in idxs]

    def assert_refused_unembedded(self, embed, cases):
        # Each (words, call): call() raises InvalidInput in exactly these words,
        # and embed is never called.
        for words, call in cases:
            with self.subTest(words=words):
                embed.calls.clear()
                with self.assertRaises(llmroute.InvalidInput) as cm:
                    call()
                self.assertEqual(str(cm.exception), words)
                self.assertEqual(embed.calls, [])

    def test_the_vectors_choose_the_neighbours(self):
        sr, embed = self.smart()
        self.assertEqual(self.names(sr.get_model_idxs(MODELS, QUERIES)), EXPECTED)
        # The same through the later AIOS form, one chat per query.
        chats = [[{"role": "user", "content": q}] for q in QUERIES]
        self.assertEqual(self.names(sr.get_model_idxs([MODELS] * 4, chats)), EXPECTED)
        for q, want in zip(QUERIES, EXPECTED):
            self.assertEqual(self.names(sr.get_model_idxs(MODELS, [q])), [want])

    def test_a_batch_calls_embed_once(self):
        sr, embed = self.smart()
        sr.get_model_idxs(MODELS, QUERIES)
        self.assertEqual(embed.calls, [QUERIES])
        embed.calls.clear()
        res = sr.route_batch(MODELS, QUERIES, alpha=0.55)
        self.assertTrue(res.feasible)
        self.assertEqual(self.names(res.indices), EXPECTED)
        self.assertEqual(embed.calls, [QUERIES])
        embed.calls.clear()
        self.assertEqual(self.names(sr.get_model_idxs_global(MODELS, QUERIES, alpha=0.55)),
                         EXPECTED)
        self.assertEqual(embed.calls, [QUERIES])
        embed.calls.clear()
        perf, _, _ = sr.predict(QUERIES, MODELS)
        self.assertEqual(embed.calls, [QUERIES])
        self.assertEqual([row.index(max(row)) for row in perf],
                         [[m["name"] for m in MODELS].index(w) for w in EXPECTED])

    def test_the_router_routes_given_vectors_as_embedded_ones(self):
        sr, embed = self.smart()
        router = sr.router
        for q, want in zip(QUERIES, EXPECTED):
            t = int(q.split()[-1])
            by_vector = router.route(query="anything at all", embedding=TOPIC[t], ranking=True)
            by_embed = router.route(query=q, ranking=True)
            self.assertEqual(by_vector.name, want)
            self.assertEqual(by_embed.name, want)
            self.assertEqual([c.name for c in by_vector.ranking],
                             [c.name for c in by_embed.ranking])
        vecs = [TOPIC[int(q.split()[-1])] for q in QUERIES]
        self.assertEqual(self.names(router.route_batch(["x"] * 4, embeddings=vecs).indices),
                         EXPECTED)
        with self.assertRaises(llmroute.EmbedError) as cm:
            router.route_batch(["x"] * 4, embeddings=vecs[:3])
        self.assertIn("embeddings: 3 vectors for 4 queries", str(cm.exception))

    def test_a_query_the_library_refuses_is_refused_before_it_is_embedded(self):
        # A query UTF-8 cannot encode (a lone surrogate) or holding a NUL is
        # InvalidInput naming the method and queries[i], as over a built-in
        # store, and embed never sees it. In a batch it went to embed first,
        # and came back as EmbedError "embed raised UnicodeEncodeError" (or
        # a server's answer to a text it cannot read).
        sr, embed = self.smart()
        router = sr.router
        for bad, words in (("unrelated words 1 \udcff", "is a lone surrogate"),
                           ("unrelated words 1 \0", "a NUL byte inside a string")):
            for where, call in [
                    ("SmartRouting.get_model_idxs",
                     lambda: sr.get_model_idxs(MODELS, [QUERIES[0], bad])),
                    ("SmartRouting.route_batch", lambda: sr.route_batch(MODELS, [QUERIES[0], bad])),
                    ("SmartRouting.predict", lambda: sr.predict([QUERIES[0], bad], MODELS)),
                    ("Router.route_batch", lambda: router.route_batch([QUERIES[0], bad])),
                    ("Router.route_indices", lambda: router.route_indices([QUERIES[0], bad])),
                    ("Router.route", lambda: router.route(query=bad))]:
                with self.subTest(bad=bad, call=where):
                    embed.calls.clear()
                    with self.assertRaises(llmroute.InvalidInput) as cm:
                        call()
                    self.assertNotIsInstance(cm.exception, llmroute.EmbedError)
                    arg = "query" if where == "Router.route" else "queries[1]"
                    self.assertIn("%s: %s: " % (where, arg), str(cm.exception))
                    self.assertIn(words, str(cm.exception))
                    self.assertEqual(embed.calls, [])

    def test_an_unknown_or_repeated_candidate_is_refused_before_the_queries_are_embedded(self):
        # The library's refusal, in its words, before embed is called: the
        # queries were embedded first (through a server, one request per
        # batch) and the candidates refused after.
        sr, embed = self.smart()
        router = sr.router
        cheap, mid = MODELS[0], MODELS[1]
        for where, call, cls, words in [
                ("Router.route", lambda: router.route(["cheap", "nope"], query=QUERIES[0]),
                 llmroute.UnknownModel, "unknown model 'nope'"),
                ("Router.route", lambda: router.route(["cheap", "cheap"], query=QUERIES[0]),
                 llmroute.InvalidInput, "model 'cheap' is listed twice among the candidates"),
                ("Router.route_batch", lambda: router.route_batch(
                    QUERIES[:2], models=[["cheap"], ["mid", "nope"]]),
                 llmroute.UnknownModel, "query 1: unknown model 'nope'"),
                ("Router.route_indices", lambda: router.route_indices(
                    QUERIES[:2], models=["cheap", "nope"]),
                 llmroute.UnknownModel, "query 0: unknown model 'nope'"),
                ("SmartRouting.get_model_idxs", lambda: sr.get_model_idxs(
                    [cheap, {"name": "nope"}], QUERIES[:2]),
                 llmroute.UnknownModel,
                 "SmartRouting.get_model_idxs: query 0: unknown model 'nope'"),
                ("SmartRouting.route_batch", lambda: sr.route_batch(
                    [[cheap], [mid, mid]], QUERIES[:2]), llmroute.InvalidInput,
                 "SmartRouting.route_batch: query 1: model 'mid' is listed twice among the "
                 "candidates")]:
            with self.subTest(call=where, words=words):
                embed.calls.clear()
                with self.assertRaises(cls) as cm:
                    call()
                self.assertEqual(str(cm.exception), words)
                self.assertEqual(embed.calls, [])
        # Known candidates route as before.
        self.assertEqual(self.names(sr.get_model_idxs(MODELS, QUERIES)), EXPECTED)

    def test_a_bad_argument_is_refused_before_the_queries_are_embedded(self):
        # The binding's own checks of the other arguments came after embed
        # had been called (a request to an embeddings server).
        sr, embed = self.smart()
        router = sr.router
        self.assert_refused_unembedded(embed, [
                ("Router.route: input_tokens: expected a whole number, got str 'x'",
                 lambda: router.route(query=QUERIES[0], input_tokens="x")),
                ("Router.route: performance_requirement: expected a number, got str 'x'",
                 lambda: router.route(query=QUERIES[0], performance_requirement="x")),
                ("Router.route_batch: input_tokens[1]: expected a whole number, got str 'x'",
                 lambda: router.route_batch(QUERIES[:2], input_tokens=[3, "x"])),
                ("Router.route_indices: input_tokens[0]: 1000000001 is over the cap of "
                 "1000000000", lambda: router.route_indices(QUERIES[:2],
                                                            input_tokens=[10 ** 9 + 1, 3])),
                ("Router.route_batch: alpha: expected a number, got str 'x'",
                 lambda: router.route_batch(QUERIES[:2], mode="quality", alpha="x")),
                ("Router.route_batch: budget: expected a number, got str 'x'",
                 lambda: router.route_batch(QUERIES[:2], mode="budget", budget="x")),
                ("Router.route_batch: capacities: unknown model 'nope'",
                 lambda: router.route_batch(QUERIES[:2], mode="quality",
                                            capacities={"nope": 1})),
                ("SmartRouting.route_batch: capacities['cheap']: expected a whole number from "
                 "0 to 1000000000, got -1",
                 lambda: sr.route_batch(MODELS, QUERIES[:2], capacities={"cheap": -1})),
                ("SmartRouting.get_model_idxs: input_token_lengths[1]: expected a whole "
                 "number, got str 'x'",
                 lambda: sr.get_model_idxs(MODELS, QUERIES[:2], [3, "x"]))])

    def test_a_value_out_of_range_is_refused_before_the_queries_are_embedded(self):
        # The type of alpha, budget and performance_requirement was checked
        # first, but their range, and which batch mode takes which, only by
        # the library, after embed had been called (a request to the
        # embeddings server, whose failure then hid the caller's slip).
        sr, embed = self.smart()
        router = sr.router
        rb = router.route_batch
        two = QUERIES[:2]
        self.assert_refused_unembedded(embed, [
                ("Router.route: performance_requirement: expected a number from 0 to 1, got 2",
                 lambda: router.route(query=QUERIES[0], performance_requirement=2)),
                ("Router.route: performance_requirement: expected a number from 0 to 1, "
                 "got -0.1", lambda: router.route(query=QUERIES[0],
                                                  performance_requirement=-0.1)),
                ("Router.route: performance_requirement: expected a number from 0 to 1, "
                 "got inf", lambda: router.route(query=QUERIES[0],
                                                 performance_requirement=float("inf"))),
                ("Router.route_batch: alpha: expected a number from 0 to 1, got 1.5",
                 lambda: rb(two, mode="quality", alpha=1.5)),
                ("Router.route_batch: alpha: the per-query mode takes none (each query meets "
                 "its performance requirement); use the quality mode",
                 lambda: rb(two, alpha=0.5)),
                ("Router.route_batch: budget: the per-query mode takes none (each query is "
                 "routed on its own); use the budget mode", lambda: rb(two, budget=0.5)),
                ("Router.route_batch: budget: expected a number from 0 to 1e+12, got -1",
                 lambda: rb(two, mode="budget", budget=-1)),
                ("Router.route_batch: budget: the budget mode needs one (a number from 0 to "
                 "1e+12)", lambda: rb(two, mode="budget")),
                ("Router.route_batch: budget: the quality mode takes none (it meets alpha at "
                 "the least cost); give alpha or budget, not both",
                 lambda: rb(two, mode="quality", budget=1)),
                ("Router.route_batch: alpha: the budget mode takes none (it maximises quality "
                 "within the budget); give alpha or budget, not both",
                 lambda: rb(two, mode="budget", budget=1, alpha=0.5)),
                ("SmartRouting.route_batch: alpha: expected a number from 0 to 1, got 1.5",
                 lambda: sr.route_batch(MODELS, two, alpha=1.5)),
                ("SmartRouting.route_batch: alpha: expected a number from 0 to 1, got -1",
                 lambda: sr.route_batch(MODELS, two, alpha=-1)),
                ("SmartRouting.route_batch: alpha: the budget mode takes none (it maximises "
                 "quality within the budget); give alpha or budget, not both",
                 lambda: sr.route_batch(MODELS, two, alpha=0.5, budget=1)),
                ("SmartRouting.route_batch: budget: expected a number from 0 to 1e+12, got inf",
                 lambda: sr.route_batch(MODELS, two, budget=float("inf"))),
                ("SmartRouting.get_model_idxs_global: alpha: expected a number from 0 to 1, "
                 "got 2", lambda: sr.get_model_idxs_global(MODELS, two, alpha=2))])
        # With the embeddings server down, the mistake is still the one
        # named, not the server's failure.
        def down(texts):
            raise ConnectionError("connection refused")

        sr.store.embed.fn = down
        with self.assertRaises(llmroute.InvalidInput) as cm:
            sr.route_batch(MODELS, two, alpha=1.5)
        self.assertNotIsInstance(cm.exception, llmroute.EmbedError)
        self.assertIn("alpha: expected a number from 0 to 1, got 1.5", str(cm.exception))
        # Values in range route as before.
        sr.store.embed.fn = embed
        self.assertEqual(len(sr.route_batch(MODELS, two, alpha=0.5).decisions), 2)
        self.assertEqual(len(sr.route_batch(MODELS, two, budget=1.0).decisions), 2)
        self.assertEqual(router.route(query=QUERIES[0], performance_requirement=1).name,
                         EXPECTED[0])

    def test_an_empty_store_that_has_its_dimension_embeds_nothing(self):
        # A store file made with its dimension and no records yet (as the
        # gateway or dense_dim leaves it): the queries were embedded, then
        # the library said the store was empty. SmartRouting then fell back
        # to AIOS's choice, so the call to the embeddings server was for
        # nothing, and with that server down the caller got its EmbedError
        # in place of the fallback.
        path = os.path.join(self.enterContext_tmp(), "h.db")
        llmroute.Store(path, embedder="all-MiniLM-L6-v2", embed=topic_embed(),
                       dense_dim=DIM).close()
        embed = topic_embed()
        switch = SwitchEmbed(embed)
        sr = SmartRouting(MODELS, performance_requirement=0.7, n_similar=PER_TOPIC,
                          store_path=path, embed=switch, embedder="all-MiniLM-L6-v2")
        self.assertEqual((sr.store.count(), sr.store._store.dim), (0, DIM))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            self.assertEqual(sr.get_model_idxs(MODELS, QUERIES[:2]), [0, 0])
            self.assertEqual(sr.predict(QUERIES[:1], MODELS)[0], [[0.0, 0.0, 0.0]])
            self.assertEqual(embed.calls, [])

            def down(texts):
                raise ConnectionError("connection refused")

            switch.fn = down
            self.assertEqual(sr.get_model_idxs(MODELS, QUERIES[:2]), [0, 0])
        with self.assertRaises(llmroute.EmptyInput) as cm:
            sr.router.route(query=QUERIES[0])
        self.assertIn("the history store is empty", str(cm.exception))
        # With records, the queries are embedded and routed on as before.
        switch.fn = embed
        sr.store.add_data(topic_records())
        embed.calls.clear()
        self.assertEqual(self.names(sr.get_model_idxs(MODELS, QUERIES)), EXPECTED)
        self.assertEqual(len(embed.calls), 1)

    def test_routing_with_a_bad_embed_fails_by_name(self):
        sr, embed = self.smart()
        sr.store.embed.fn = lambda texts: [[1.0] * (DIM + 1) for _ in texts]
        with self.assertRaises(llmroute.EmbedError) as cm:
            sr.get_model_idxs(MODELS, QUERIES)
        self.assertIn("embed: returned vectors of dimension 65, but the store's are 64",
                      str(cm.exception))
        sr.store.embed.fn = lambda texts: (_ for _ in ()).throw(ConnectionError("down"))
        with self.assertRaises(llmroute.EmbedError) as cm:
            sr.route_batch(MODELS, QUERIES)
        self.assertIn("embed raised ConnectionError: down", str(cm.exception))
        self.assertIsInstance(cm.exception.__cause__, ConnectionError)

    def test_a_dense_store_without_embed_is_named_when_routed(self):
        path = os.path.join(self.enterContext_tmp(), "h.db")
        sr, embed = self.smart(store_path=path)
        # The same file opened without embed: a dense store with no
        # function for its queries' vectors.
        sr.store = SmartRouting.QueryStore(path=path, embedder="all-MiniLM-L6-v2")
        store = sr.store._store
        self.assertIsNone(store.embed)
        with self.assertRaises(llmroute.InvalidInput) as cm:
            sr.get_model_idxs(MODELS, QUERIES)
        self.assertIn("uses the embedder 'all-MiniLM-L6-v2'", str(cm.exception))
        self.assertIn("embed=", str(cm.exception))
        # A Router's own embed serves the store's queries.
        router = llmroute.Router(sr.config, store=store, embed=topic_embed())
        self.assertEqual([d.name for d in router.route_batch(QUERIES).decisions], EXPECTED)
        with self.assertRaises(llmroute.InvalidInput):
            llmroute.Router(sr.config, store=llmroute.Store(), embed=topic_embed())
        router.close()

    def test_a_router_routes_after_its_store_is_closed(self):
        # The Router keeps the C store it borrowed, so Store.close() closes
        # the Store to its owner only; routing read the store's dimension
        # and embedder through the closed Store and raised "the store is
        # closed".
        sr, _ = self.smart()
        switch = SwitchEmbed(topic_embed())
        store = llmroute.Store(embedder="all-MiniLM-L6-v2", embed=switch)
        store.import_records(topic_records())
        router = llmroute.Router(sr.config, strategy="smart", store=store,
                                 performance_requirement=0.7, n_similar=PER_TOPIC)
        store.close()
        self.assertEqual([router.route(query=q).name for q in QUERIES], EXPECTED)
        self.assertEqual(self.names(router.route_batch(QUERIES).indices), EXPECTED)
        self.assertEqual(self.names(router.route_batch(QUERIES, mode="quality",
                                                       alpha=0.55).indices), EXPECTED)
        vecs = [TOPIC[int(q.split()[-1])] for q in QUERIES]
        self.assertEqual(self.names(router.route_batch(["x"] * 4, embeddings=vecs).indices),
                         EXPECTED)
        # The queries are embedded through the closed Store's function.
        switch.fn = lambda texts: (_ for _ in ()).throw(ConnectionError("down"))
        with self.assertRaises(llmroute.EmbedError) as cm:
            router.route(query=QUERIES[0])
        self.assertIn("embed raised ConnectionError: down", str(cm.exception))
        router.close()

    def test_a_store_file_opens_again_with_its_embedder(self):
        d = self.enterContext_tmp()
        path = os.path.join(d, "h.db")
        sr, _ = self.smart(store_path=path)
        sr.store.close()
        embed = topic_embed()
        again = SmartRouting(MODELS, performance_requirement=0.7, n_similar=PER_TOPIC,
                             store_path=path, embed=embed, embedder="all-MiniLM-L6-v2")
        self.assertEqual(again.store.count(), 3 * PER_TOPIC)
        self.assertEqual(self.names(again.get_model_idxs(MODELS, QUERIES)), EXPECTED)
        with self.assertRaises(llmroute.StoreError):
            SmartRouting(MODELS, store_path=path, embed=embed, embedder="bge-small-en-v1.5")

    def enterContext_tmp(self):
        import tempfile
        d = tempfile.TemporaryDirectory()
        self.addCleanup(d.cleanup)
        return d.name


class HttpEmbedderTest(SmartTestCase):
    def setUp(self):
        self.server = EmbedServer()
        self.addCleanup(self.server.close)

    def test_requests_are_the_gateways_and_answers_are_placed_by_index(self):
        os.environ["LR_TEST_EMBED_KEY"] = "sk-test-123"
        self.addCleanup(os.environ.pop, "LR_TEST_EMBED_KEY", None)
        e = llmroute.openai_embedder(self.server.base_url + "/", "mini",
                                     api_key_env="LR_TEST_EMBED_KEY", batch_size=2)
        texts = ["one two", "three", "four five six"]
        self.assertEqual(e(texts), [hashed_vector(t) for t in texts])
        self.assertEqual(e.embedder_id, "openai:mini")
        self.assertEqual(len(self.server.requests), 2)  # batches of 2
        path, headers, body = self.server.requests[0]
        self.assertEqual(path, "/v1/embeddings")
        self.assertEqual(body, {"model": "mini", "input": ["one two", "three"]})
        self.assertEqual(headers.get("Authorization"), "Bearer sk-test-123")
        self.assertEqual(headers.get("Content-Type"), "application/json")
        e = llmroute.openai_embedder(self.server.base_url, "mini", dimensions=32)
        self.assertEqual(e(["x"]), [hashed_vector("x", 32)])
        self.assertEqual(self.server.requests[-1][2], {"model": "mini", "input": ["x"],
                                                       "dimensions": 32})
        self.assertNotIn("Authorization", self.server.requests[-1][1])

    def test_a_base_url_scheme_is_taken_in_any_case_as_the_config_takes_it(self):
        # The config (and so the command and the gateway) takes HTTP:// as
        # http://; the embedder refused it, even one made from that config.
        upper = "HTTP://" + self.server.base_url[len("http://"):]
        self.assertEqual(llmroute.openai_embedder(upper, "mini")(["x"]), [hashed_vector("x")])
        config = llmroute.Config(llmroute.config_from_llm_configs(MODELS, {
            "strategy": "smart", "embedding": {"base_url": upper, "model": "mini"}}))
        e = llmroute.OpenAIEmbedder.from_config(config)
        self.assertEqual(e(["y"]), [hashed_vector("y")])
        self.assertEqual(self.server.requests[-1][2], {"model": "mini", "input": ["y"]})
        with self.assertRaises(llmroute.EmbedError):
            llmroute.openai_embedder("HTTPX://" + upper[len("HTTP://"):], "mini")

    def test_a_base_url_or_model_the_config_refuses_is_refused_when_made(self):
        # Only the scheme was checked: a base_url router.embedding refuses
        # (a user and password, which urllib took for part of the host, a
        # space, a query, a port out of range, an IPv6 address without
        # brackets, no host) or a model name holding a control character
        # was taken, and each call then failed with urllib's words about it
        # ("Name or service not known", "Connection refused", a 404), or
        # sent the request. They are now refused in the config's words.
        for url, model, words in [
                ("http://user:pw@127.0.0.1:9/v1", "mini",
                 "OpenAIEmbedder: base_url: holds a user name or password before the host"),
                ("http://127.0.0.1:9/v 1", "mini",
                 "OpenAIEmbedder: base_url: 'http://127.0.0.1:9/v 1' holds a space"),
                ("http://127.0.0.1:9/v1?x=1", "mini",
                 "OpenAIEmbedder: base_url: 'http://127.0.0.1:9/v1?x=1' holds a query ('?')"),
                ("http://127.0.0.1:99999/v1", "mini",
                 "OpenAIEmbedder: base_url: 'http://127.0.0.1:99999/v1' has a port that is "
                 "not a number from 1 to 65535"),
                ("http://::1:9/v1", "mini", "OpenAIEmbedder: base_url: 'http://::1:9/v1' has "
                                          "no host"),
                ("http:///v1", "mini", "OpenAIEmbedder: base_url: 'http:///v1' has no host"),
                ("http://127.0.0.1:9/v1\x00", "mini",
                 "OpenAIEmbedder: base_url: must not contain control characters"),
                ("http://127.0.0.1:9/v1", "mini\n",
                 "OpenAIEmbedder: model: must not contain control characters"),
                ("http://127.0.0.1:9/v1", "m" * 121,
                 "OpenAIEmbedder: model: longer than 120 bytes")]:
            with self.subTest(url=url, model=model):
                with self.assertRaises(llmroute.EmbedError) as cm:
                    llmroute.openai_embedder(url, model)
                self.assertTrue(str(cm.exception).startswith(words), str(cm.exception))
                self.assertNotIn("pw", str(cm.exception))
        self.assertEqual(self.server.requests, [])

    def test_a_base_url_path_that_is_not_ascii_is_sent_percent_encoded(self):
        # The config takes it; http.client cannot write it in a request
        # line, and each call failed with its codec error ("cannot reach
        # the embedding server at ...: ordinal not in range(128)").
        e = llmroute.openai_embedder(self.server.url + "/\u00e9t\u00e9/v1", "mini")
        with self.assertRaises(llmroute.EmbedError) as cm:
            e(["one"])
        self.assertIn("embedding server at %s/\u00e9t\u00e9/v1/embeddings answered HTTP 404"
                      % self.server.url, str(cm.exception))
        self.assertEqual(self.server.requests[-1][0], "/%C3%A9t%C3%A9/v1/embeddings")

    def test_texts_are_cut_to_max_input_chars_as_the_command_cuts_them(self):
        # Code points, as lr_embedding_input_len() counts UTF-8 characters:
        # a cut at 3 keeps "a\u00e9\U0001F600" whole, never half of one.
        e = llmroute.openai_embedder(self.server.base_url, "mini", max_input_chars=3)
        self.assertEqual(e(["a\u00e9\U0001F600bc", "xy"]),
                         [hashed_vector("a\u00e9\U0001F600"), hashed_vector("xy")])
        self.assertEqual(self.server.requests[-1][2]["input"], ["a\u00e9\U0001F600", "xy"])
        long = "w" * 9000
        llmroute.openai_embedder(self.server.base_url, "mini")([long])
        self.assertEqual(self.server.requests[-1][2]["input"], [long[:8192]])  # the default
        llmroute.openai_embedder(self.server.base_url, "mini", max_input_chars=0)([long])
        self.assertEqual(self.server.requests[-1][2]["input"], [long])
        config = llmroute.Config(llmroute.config_from_llm_configs(MODELS, {
            "strategy": "smart", "embedding": {"base_url": self.server.base_url,
                                               "model": "mini", "max_input_chars": 5}}))
        self.assertEqual(config.embedding["max_input_chars"], 5)
        self.assertEqual(llmroute.OpenAIEmbedder.from_config(config).max_input_chars, 5)
        with self.assertRaises(llmroute.EmbedError):
            llmroute.openai_embedder(self.server.base_url, "mini", max_input_chars=-1)

    # base_url and model are used once, when the embedder is made: the URL
    # asked comes from base_url, the store id from model. Setting base_url
    # was taken and read back while every request went on to the first
    # server; setting model had the server asked for another model's
    # vectors while a store opened with the embedder recorded the old id.

    def assert_made_once(self, e, attr, value):
        before = getattr(e, attr)
        with self.assertRaises(AttributeError) as cm:
            setattr(e, attr, value)
        self.assertEqual(str(cm.exception),
                         "OpenAIEmbedder: %s: read-only (the URL asked and the store id "
                         "(\"openai:\" + model) are taken from base_url and model when the "
                         "OpenAIEmbedder is made); to change it, make another "
                         "OpenAIEmbedder(base_url, model, ...)" % attr)
        self.assertEqual(getattr(e, attr), before)

    def test_base_url_and_url_are_refused_after_the_embedder_is_made(self):
        other = EmbedServer()
        self.addCleanup(other.close)
        e = llmroute.openai_embedder(self.server.base_url, "mini")
        self.assert_made_once(e, "base_url", other.base_url)
        self.assert_made_once(e, "url", other.base_url + "/embeddings")
        self.assertEqual(e.url, self.server.base_url + "/embeddings")
        self.assertEqual(e(["x"]), [hashed_vector("x")])
        self.assertEqual(len(self.server.requests), 1)
        self.assertEqual(other.requests, [])

    def test_model_and_embedder_id_are_refused_after_the_embedder_is_made(self):
        e = llmroute.openai_embedder(self.server.base_url, "mini")
        store = llmroute.Store(":memory:", embed=e)
        self.addCleanup(store.close)
        self.assert_made_once(e, "model", "large")
        self.assert_made_once(e, "embedder_id", "openai:large")
        store.add_outcome("one two", "a", 1.0, 10)
        self.assertEqual(self.server.requests[-1][2]["model"], "mini")
        self.assertEqual(store.embedder, "openai:mini")
        self.assertEqual(len(store), 1)

    def test_settings_read_at_each_call_may_be_set_after_the_embedder_is_made(self):
        # dimensions, batch_size, max_input_chars and timeout are read at
        # each call: the next call follows them.
        e = llmroute.openai_embedder(self.server.base_url, "mini")
        e.dimensions = 32
        e.batch_size = 1
        e.max_input_chars = 2
        e.timeout = 5.0
        self.assertEqual(e(["abc", "def"]), [hashed_vector("ab", 32), hashed_vector("de", 32)])
        self.assertEqual([r[2] for r in self.server.requests],
                         [{"model": "mini", "input": ["ab"], "dimensions": 32},
                          {"model": "mini", "input": ["de"], "dimensions": 32}])

    def test_a_setting_read_at_each_call_is_refused_as_the_constructor_refuses_it(self):
        # batch_size = 0 was taken, and the next call raised range()'s
        # ValueError; timeout = "30" a TypeError from the socket; a
        # negative dimensions was sent to the server.
        e = llmroute.openai_embedder(self.server.base_url, "mini", dimensions=32,
                                     batch_size=2, max_input_chars=100, timeout=5.0)
        for attr, value, kind, message in [
                ("batch_size", 0, llmroute.EmbedError,
                 "OpenAIEmbedder: batch_size: expected a whole number from 1 to 2048, got 0"),
                ("batch_size", 2.0, llmroute.EmbedError,
                 "OpenAIEmbedder: batch_size: expected a whole number from 1 to 2048, got 2.0"),
                ("dimensions", -3, llmroute.EmbedError,
                 "OpenAIEmbedder: dimensions: expected a whole number from 1 to 65536, got -3"),
                ("dimensions", "32", llmroute.InvalidType,
                 "OpenAIEmbedder: dimensions: expected a whole number from 1 to 65536, got str"),
                ("max_input_chars", None, llmroute.InvalidType,
                 "OpenAIEmbedder: max_input_chars: expected a whole number from 0 to 1048576, "
                 "got NoneType"),
                ("timeout", "30", llmroute.InvalidType,
                 "OpenAIEmbedder: timeout: expected a number of seconds above 0, got str"),
                ("timeout", 0, llmroute.EmbedError,
                 "OpenAIEmbedder: timeout: expected a number of seconds above 0, got 0")]:
            with self.subTest(attr=attr, value=value):
                before = getattr(e, attr)
                with self.assertRaises(kind) as cm:
                    setattr(e, attr, value)
                self.assertEqual(str(cm.exception), message)
                self.assertEqual(getattr(e, attr), before)
        self.assertEqual(e(["a", "b", "c"]), [hashed_vector(t, 32) for t in "abc"])
        self.assertEqual(len(self.server.requests), 2)  # batches of 2
        e.dimensions = None  # the server's own, as the constructor takes it
        e.timeout = 2  # a whole number of seconds too, as a float
        self.assertEqual(e.timeout, 2.0)
        self.assertEqual(e(["a"]), [hashed_vector("a")])

    def test_server_faults_raise_by_name_and_leave_the_store_as_it_was(self):
        sr = SmartRouting(MODELS, n_similar=4,
                          embedding={"base_url": self.server.base_url, "model": "mini"})
        self.assertEqual(sr.store._store.embedder, "openai:mini")
        recs = topic_records()
        sr.store.add_data(recs)
        n = sr.store.count()
        self.assertEqual(n, len(recs))
        url = self.server.base_url + "/embeddings"
        for fault, words in [
                ("500", "embedding server at %s answered HTTP 500: the model is loading" % url),
                ("not json", "embedding server at %s: the answer is not JSON" % url),
                ("no data", "the answer has no \"data\" array"),
                ("one short", "sent 3 texts, got 2 embeddings"),
                ("index twice", "index 0 given twice"),
                ("nan", "embedding[3]: expected a finite number"),
                ("string", "embedding[3]: expected a finite number"),
                ("short vector", r"vectors of differing length: data\[\d\]\.embedding has "
                                 r"6[34] numbers, data\[0\]\.embedding 6[34]|embed: returned "
                                 r"vectors of dimension 63, but the store's are 64"),
                ("redirect", "answered HTTP 307, a redirect to http://example.invalid"),
                # A 200 whose body is an error object: its message is the
                # reason (it was "the answer has no "data" array"), in the
                # command's words.
                ("error 200", "embedding server at %s answered HTTP 200 with an error: quota "
                              "exceeded" % url),
                # An answer that breaks off mid-body: the server was reached
                # (it was "the answer is not JSON" for a body shorter than
                # its Content-Length, and "cannot reach the embedding
                # server" for a chunk cut short), in the command's words.
                ("cut body", "embedding server at %s: its answer (HTTP 200) broke off: the "
                             "connection closed with " % url),
                ("cut chunked", "embedding server at %s: its answer (HTTP 200) broke off: "
                                "IncompleteRead" % url),
        ]:
            self.server.fault = fault
            for name, call in [
                    ("add_data", lambda: sr.store.add_data(recs[:3])),
                    ("get_model_idxs", lambda: sr.get_model_idxs(MODELS, QUERIES[:3])),
                    ("add_outcome", lambda: sr.store._store.add_outcome("a b c", "mid", 1, 9))]:
                if fault in ("one short", "index twice") and name == "add_outcome":
                    continue  # one text: nothing to be short of or repeat
                with self.subTest(fault=fault, call=name):
                    with self.assertRaises(llmroute.EmbedError) as cm:
                        call()
                    if fault == "short vector":
                        self.assertRegex(str(cm.exception), words)
                    else:
                        self.assertIn(words, str(cm.exception))
                    self.assertEqual(sr.store.count(), n)
        self.server.fault = None
        sr.get_model_idxs(MODELS, QUERIES)

    def test_an_api_key_with_a_control_character_is_refused_as_the_command_refuses_it(self):
        # Any control character but a tab, as the command and the gateway
        # refuse router.embedding.api_key_env's value: only CR, LF and NUL
        # were, and a key holding ESC or DEL was sent in the header.
        self.addCleanup(os.environ.pop, "LR_TEST_EMBED_KEY", None)
        for key in ("sk-\x1b[0m", "sk-\x01", "sk-\x7f", "sk-\r\n"):
            with self.subTest(key=key):
                with self.assertRaises(llmroute.EmbedError) as cm:
                    llmroute.openai_embedder(self.server.base_url, "mini", api_key=key)
                self.assertIn("api_key holds a control character", str(cm.exception))
                os.environ["LR_TEST_EMBED_KEY"] = key
                with self.assertRaises(llmroute.EmbedError) as cm:
                    llmroute.openai_embedder(self.server.base_url, "mini",
                                             api_key_env="LR_TEST_EMBED_KEY")
                self.assertIn("api_key from LR_TEST_EMBED_KEY holds a control character",
                              str(cm.exception))
        e = llmroute.openai_embedder(self.server.base_url, "mini", api_key="sk-a\tb")
        e(["one"])
        self.assertEqual(self.server.requests[-1][1].get("Authorization"), "Bearer sk-a\tb")

    def test_an_api_key_that_is_not_ascii_is_refused_without_showing_it(self):
        # A key holding a character past latin-1 (an em dash pasted from a
        # page) was taken, and each call failed with http.client's codec
        # error ("cannot reach the embedding server ...: 'latin-1' codec
        # can't encode ..."); one holding a latin-1 letter was sent as that
        # byte, where the gateway sends the variable's UTF-8. Both are now
        # refused when the embedder is made, naming the place of the
        # character and never the key.
        self.addCleanup(os.environ.pop, "LR_TEST_EMBED_KEY", None)
        for key, where in (("sk-secret\u2014abc", "character 10 (U+2014)"),
                           ("sk-secret\u00e9", "character 10 (U+00E9)"),
                           ("\ufeffsk-secret", "character 1 (U+FEFF)")):
            with self.subTest(key=key):
                with self.assertRaises(llmroute.EmbedError) as cm:
                    llmroute.openai_embedder(self.server.base_url, "mini", api_key=key)
                self.assertIn("OpenAIEmbedder: api_key holds a character that is not ASCII, "
                              "%s" % where, str(cm.exception))
                self.assertNotIn("secret", str(cm.exception))
                os.environ["LR_TEST_EMBED_KEY"] = key
                with self.assertRaises(llmroute.EmbedError) as cm:
                    llmroute.openai_embedder(self.server.base_url, "mini",
                                             api_key_env="LR_TEST_EMBED_KEY")
                self.assertIn("OpenAIEmbedder: api_key from LR_TEST_EMBED_KEY holds a "
                              "character that is not ASCII, %s" % where, str(cm.exception))
                self.assertNotIn("secret", str(cm.exception))
        self.assertEqual(self.server.requests, [])

    def test_smart_routing_names_its_embedding_argument_for_a_key_it_refuses(self):
        # SmartRouting(embedding=...) said "OpenAIEmbedder: api_key from
        # ...", a class the caller never named; the AIOS classes name their
        # own arguments.
        self.addCleanup(os.environ.pop, "LR_TEST_EMBED_KEY", None)
        for key, words in (("sk-\x1b[0m", "holds a control character"),
                           ("sk-\u2014", "holds a character that is not ASCII")):
            os.environ["LR_TEST_EMBED_KEY"] = key
            with self.subTest(key=key):
                with self.assertRaises(llmroute.EmbedError) as cm:
                    SmartRouting(MODELS, embedding={"base_url": self.server.base_url,
                                                    "model": "mini",
                                                    "api_key_env": "LR_TEST_EMBED_KEY"})
                self.assertTrue(str(cm.exception).startswith(
                    "SmartRouting: embedding: api_key from LR_TEST_EMBED_KEY " + words),
                    str(cm.exception))

    def test_an_error_body_reaches_the_message_without_its_control_characters(self):
        # As the command prints it: a control character is a blank, so an
        # escape sequence in the body never reaches a terminal or a log
        # line through the message (CR and LF were the only ones blanked).
        e = llmroute.openai_embedder(self.server.base_url, "mini")
        self.server.fault = "500 control"
        with self.assertRaises(llmroute.EmbedError) as cm:
            e(["one"])
        message = str(cm.exception)
        self.assertIn("answered HTTP 500: bad  [31mred  text  X-Injected: 1", message)
        self.assertFalse([c for c in message if ord(c) < 0x20 or ord(c) == 0x7f], message)

    def test_answers_python_cannot_read_as_numbers_are_embed_errors(self):
        # An integer too large for a double raised OverflowError, and JSON
        # nested 100000 deep RecursionError, out of the embedder.
        e = llmroute.openai_embedder(self.server.base_url, "mini")
        url = self.server.base_url + "/embeddings"
        for fault, words in [("huge int", "data[0].embedding[0]: expected a finite number"),
                             ("deep", "JSON nested too deep to read")]:
            self.server.fault = fault
            with self.subTest(fault=fault):
                with self.assertRaises(llmroute.EmbedError) as cm:
                    e(["one", "two"])
                self.assertIn("embedding server at %s" % url, str(cm.exception))
                self.assertIn(words, str(cm.exception))

    def test_the_timeout_bounds_the_whole_answer_not_each_read(self):
        # A server that sends its head or its body (of a 200 or a 500) a
        # byte at a time, each byte well within the timeout, answered in
        # DRIP_BYTES x DRIP_SECONDS (4 s here) where the timeout is 0.5 s:
        # every read was on time. The command (curl's CURLOPT_TIMEOUT_MS)
        # gives up at the timeout. The bound below is the behaviour itself
        # (a timeout), and generous: 6 times the timeout, and still short
        # of the 4 s the server takes (the time a 500's body was read in
        # while a timeout was reported).
        e = llmroute.openai_embedder(self.server.base_url, "mini", timeout=0.5)
        s = llmroute.Store(embed=e, dense_dim=DIM)
        for fault in ("drip head", "drip body", "drip error"):
            self.server.fault = fault
            with self.subTest(fault=fault):
                start = time.monotonic()
                with self.assertRaises(llmroute.EmbedError) as cm:
                    s.add("q", [("cheap", 1, 3)])
                self.assertLess(time.monotonic() - start, 3.0)
                self.assertIn("did not answer within 0.5 s (timeout)", str(cm.exception))
                self.assertEqual(len(s), 0)
        self.server.fault = None
        s.add("q", [("cheap", 1, 3)])
        self.assertEqual(len(s), 1)

    def test_the_timeout_bounds_the_name_lookup_too(self):
        # A name that resolved slowly held the caller for as long as the
        # lookup took: the timeout bounded the connection, the head and the
        # body, but socket.getaddrinfo ran in the caller's thread without
        # one. The bound below is the behaviour (a timeout) and generous;
        # the lookup takes 5 s unless it is let go.
        real = socket.getaddrinfo
        release = threading.Event()
        looked = []

        def slow(host, *args, **kw):
            looked.append(host)
            release.wait(5)
            return real(host, *args, **kw)

        port = urllib.parse.urlsplit(self.server.base_url).port
        e = llmroute.openai_embedder("http://localhost:%d/v1" % port, "mini", timeout=0.3)
        socket.getaddrinfo = slow
        try:
            start = time.monotonic()
            with self.assertRaises(llmroute.EmbedError) as cm:
                e(["one"])
            took = time.monotonic() - start
        finally:
            socket.getaddrinfo = real
            release.set()
        self.assertLess(took, 3.0)
        self.assertIn("did not answer within 0.3 s (timeout)", str(cm.exception))
        self.assertEqual(looked, ["localhost"])
        # The lookup that answered late sends nothing: the caller was told
        # the call failed.
        time.sleep(0.3)
        self.assertEqual(self.server.requests, [])
        # A lookup on time is used as before.
        self.assertEqual(e(["one"]), [hashed_vector("one")])
        self.assertEqual(len(self.server.requests), 1)

    def test_an_unreachable_server_is_named(self):
        url = self.server.base_url
        self.server.close()
        e = llmroute.openai_embedder(url, "mini", timeout=5)
        s = llmroute.Store(embed=e, dense_dim=DIM)
        with self.assertRaises(llmroute.EmbedError) as cm:
            s.add("q", [("cheap", 1, 3)])
        self.assertIn("cannot reach the embedding server at %s/embeddings" % url,
                      str(cm.exception))
        self.assertEqual(len(s), 0)
        self.server = EmbedServer()  # for the cleanup

    def test_python_routes_as_the_llmroute_command_over_the_same_store_and_server(self):
        cli = support.cli_path()
        if cli is None:
            self.fail("the llmroute command was not found: set LLMROUTE_CLI")
        import tempfile
        d = tempfile.TemporaryDirectory()
        self.addCleanup(d.cleanup)
        store_path = os.path.join(d.name, "h.db")
        cfg_path = os.path.join(d.name, "c.json")
        doc = llmroute.config_from_llm_configs(MODELS, {
            "strategy": "smart", "n_similar": 5, "performance_requirement": 0.6,
            "embedding": {"base_url": self.server.base_url, "model": "mini"}})
        with open(cfg_path, "w") as f:
            json.dump(doc, f)
        # A fixture whose neighbours come from the hashed words: groups of
        # disjoint letters, outcomes at random.
        records, queries, _ = support.group_fixture(11, ["cheap", "mid", "dear"],
                                                    group_size=9, outcome_p=1.0)
        config = llmroute.Config.from_file(cfg_path)
        store = llmroute.Store(store_path, embed=llmroute.OpenAIEmbedder.from_config(config))
        store.import_records(records)
        store.close()
        texts = [q for q, _, _ in queries]
        out = subprocess.run([cli, "route", "--config", cfg_path, "--store", store_path,
                              "--strategy", "smart", "--json"] + texts,
                             capture_output=True, text=True, timeout=120)
        self.assertEqual(out.returncode, 0, out.stderr)
        want = [json.loads(line) for line in out.stdout.splitlines()]
        self.assertEqual(len(want), len(texts))
        # A Router over the config and the store embeds through the config's
        # router.embedding, as the command does.
        self.server.requests.clear()
        ro = llmroute.Store(store_path, embedder="openai:mini", read_only=True)
        router = llmroute.Router(config, store=ro)
        got = router.route_batch(texts, ranking=True)
        self.assertEqual(len(self.server.requests), 1)
        self.assertEqual([d.name for d in got.decisions], [w["model"] for w in want])
        for d, w in zip(got.decisions, want):
            self.assertAlmostEqual(d.predicted_quality, w["predicted_quality"], places=6)
            self.assertEqual([c.name for c in d.ranking], [c["model"] for c in w["ranking"]])
        # And the choices are not all one model: the neighbours matter.
        self.assertGreater(len({w["model"] for w in want}), 1)
        router.close()
        ro.close()


# A dense store's first records: every model of three but "dear" wrong.
FIRST_RECORDS = [{"query": "how do I sort a list in place %d" % i, "input_token_length": 10,
                  "outputs": [{"model_name": m, "correctness": int(m == "dear"),
                               "output_token_length": 50} for m in WINNER]}
                 for i in range(4)]
FIRST_QUERY = "how do I sort a list in place"


class FirstRecordsTest(SmartTestCase):
    """Routing over a dense store while another thread adds its first records."""

    def setUp(self):
        self.server = EmbedServer()
        self.addCleanup(self.server.close)

    def smart(self):
        return SmartRouting(MODELS, performance_requirement=0.7, n_similar=4,
                            embed=llmroute.openai_embedder(self.server.base_url, "mini"))

    def land_first_records_after_the_look(self, sr, router):
        """Make another thread's add_data of the first records land just
        after `router` has looked at the store (its dimension: 0, no
        records) and before it calls into the library: the window in which
        the two see different stores. Returns a list that gets True when it
        has landed."""
        look = router._store_dim
        landed = []

        def dim_then_records():
            d = look()
            if not landed:
                landed.append(True)
                t = threading.Thread(target=sr.store.add_data, args=(FIRST_RECORDS,))
                t.start()
                t.join(60)
            return d

        router._store_dim = dim_then_records
        return landed

    def test_a_query_routed_as_the_first_records_land_is_embedded_and_routed_on_them(self):
        # The router decided from its look that the store had no records
        # and sent no vector; the library found the records and refused
        # the request: InvalidInput "query 0: the history store uses the
        # remote embedder 'openai:mini': the request needs an embedding of
        # dimension 64 (got 0)", out of get_model_idxs too.
        before = self.smart()
        before.store.add_data(FIRST_RECORDS)
        want = before.get_model_idxs(MODELS, [FIRST_QUERY])
        # "dear", not the first candidate, as over an empty store.
        self.assertEqual(want, [[m["name"] for m in MODELS].index("dear")])
        calls = [("Router.route", lambda sr, r: [r.route(query=FIRST_QUERY).index]),
                 ("Router.route_batch", lambda sr, r: r.route_batch([FIRST_QUERY]).indices),
                 ("SmartRouting.get_model_idxs",
                  lambda sr, r: sr.get_model_idxs(MODELS, [FIRST_QUERY])),
                 ("SmartRouting.route_batch",
                  lambda sr, r: sr.route_batch(MODELS, [FIRST_QUERY], alpha=0.5).indices)]
        for name, call in calls:
            with self.subTest(call=name):
                sr = self.smart()
                router = sr.router
                landed = self.land_first_records_after_the_look(sr, router)
                self.server.requests.clear()
                with warnings.catch_warnings():
                    warnings.simplefilter("error", RuntimeWarning)  # no fallback
                    self.assertEqual(call(sr, router), want)
                self.assertEqual(landed, [True])
                self.assertEqual(sr.store.count(), len(FIRST_RECORDS))
                # The routed query was embedded (after the import's probe
                # and its batch).
                self.assertIn(["how do I sort a list in place"],
                              [body["input"] for _, _, body in self.server.requests])


if __name__ == "__main__":
    unittest.main()
