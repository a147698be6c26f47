"""A dense store filled from Python: embed= gives the vectors of imported,
added and fed-back queries; what it returns is checked, and every fault
raises EmbedError naming it, with the store left as it was."""
import json
import os
import unittest

import support
from support import DIM, CountingEmbed, SwitchEmbed

import llmroute


def rec(query, *outs):
    return {"query": query, "input_token_length": 5,
            "outputs": [{"model_name": m, "correctness": c, "output_token_length": n}
                        for m, c, n in outs]}


RECORDS = [rec("alpha beta gamma %d" % i, ("a", 1, 10), ("b", 0, 20)) for i in range(5)]

# embed functions that go wrong, each with words its error must contain.
BAD = [
    ("one vector too many", lambda t: [[1.0] * DIM for _ in range(len(t) + 1)],
     r"embed: returned (4 vectors for 3 texts|2 vectors for 1 text)\b"),
    ("one vector short", lambda t: [[1.0] * DIM for _ in t][1:],
     r"embed: returned (2 vectors for 3 texts|0 vectors for 1 text)\b"),
    ("the wrong dimension", lambda t: [[1.0] * (DIM - 1) for _ in t],
     "embed: returned vectors of dimension 63, but the store's are 64"),
    ("NaN", lambda t: [[1.0] * 5 + [float("nan")] + [1.0] * (DIM - 6) for _ in t],
     "embed: vector 0, number 5: expected a finite number, got nan"),
    ("infinity", lambda t: [[1.0] * DIM for _ in t][:-1] + [[float("-inf")] * DIM],
     "number 0: expected a finite number, got -inf"),
    ("a float too large", lambda t: [[1e39] * DIM for _ in t],
     "expected a finite number, got 1e+39"),
    ("a string", lambda t: [[1.0] * 2 + ["0.5"] + [1.0] * (DIM - 3) for _ in t],
     "embed: vector 0, number 2: expected a number, got '0.5'"),
    ("None", lambda t: [[None] * DIM for _ in t], "number 0: expected a number, got None"),
    ("no list", lambda t: None, "embed: expected a list of"),
    ("a zero vector", lambda t: [[0.0] * DIM for _ in t], "vector 0 is all zeros"),
    # Numbers a 32-bit float holds only as 0: the vector the library gets
    # has no direction (it was InvalidInput "vector is zero or not finite",
    # from the library, not naming embed).
    ("numbers below a float's", lambda t: [[1e-50] * DIM for _ in t],
     "vector 0 is all zeros as 32-bit floats"),
    ("a raise", lambda t: 1 / 0, "embed raised ZeroDivisionError: division by zero"),
]


def differing(texts):
    return [[1.0] * (DIM + (i % 2)) for i in range(len(texts))]


class DenseStoreTest(support.StoreFileTestCase):
    def setUp(self):
        super().setUp()
        self.embed = CountingEmbed()
        self.switch = SwitchEmbed(self.embed)  # its fn: self.embed unless a test sets another
        self.store = llmroute.Store(self.path, embedder="all-MiniLM-L6-v2", embed=self.switch)
        self.store.import_records(RECORDS)

    def tearDown(self):
        self.store.close()
        super().tearDown()

    def test_import_add_and_feedback_store_the_queries_vectors(self):
        s = self.store
        self.assertEqual((s.embedder, s.dense, s.dim, len(s)),
                         ("all-MiniLM-L6-v2", True, DIM, 5))
        # A probe learned the dimension, then one batch embedded the records.
        self.assertEqual(self.embed.calls, [["dimension probe"],
                                            [r["query"] for r in RECORDS]])
        s.add("added query", [("a", 1, 3)])
        self.assertTrue(s.add_outcome("fed back", "b", 0, 7))
        self.assertTrue(s.add_outcome("keyed", "b", 1, 7, idempotency_key="k-1"))
        self.assertFalse(s.add_outcome("keyed", "b", 1, 7, idempotency_key="k-1"))
        self.assertEqual(len(s), 8)
        self.assertEqual(self.embed.calls[2:], [["added query"], ["fed back"], ["keyed"],
                                                ["keyed"]])
        s.add("given vector", [("a", 1, 3)], embedding=[0.5] * DIM)
        self.assertEqual(len(s), 9)
        self.assertEqual(len(self.embed.calls), 6)
        # The file keeps the id and the dimension: it opens again with them.
        s.close()
        again = llmroute.Store(self.path, embedder="all-MiniLM-L6-v2", embed=self.embed)
        self.assertEqual((len(again), again.dim), (9, DIM))
        again.close()

    def test_embed_is_refused_after_the_store_is_opened(self):
        # store.embed = f used to be taken: the next add embedded its query
        # with f, a function the store was not opened with.
        s = self.store
        other = CountingEmbed()
        with self.assertRaises(AttributeError) as cm:
            s.embed = other
        self.assertIn("Store: embed: read-only", str(cm.exception))
        self.assertIn("open another Store(", str(cm.exception))
        self.assertIs(s.embed, self.switch)
        s.add("added query", [("a", 1, 3)])
        self.assertEqual((other.calls, self.embed.calls[-1]), ([], ["added query"]))
        # Another Store on the same file takes another function.
        again = llmroute.Store(self.path, embedder="all-MiniLM-L6-v2", embed=other)
        again.add("another query", [("a", 1, 3)])
        self.assertEqual(other.calls, [["another query"]])
        again.close()

    def test_a_routers_store_is_refused_after_it_is_made(self):
        # router.store = other used to be taken: the router then embedded
        # its queries with other's function (another model's vectors) and
        # routed them over the store it was made with.
        other = CountingEmbed()
        cfg = llmroute.Config({"models": [
            {"name": n, "cost_per_input_token": 1e-6, "cost_per_output_token": 1e-6}
            for n in ("a", "b")]})
        r = llmroute.Router(cfg, strategy="smart", store=self.store)
        try:
            with self.assertRaises(AttributeError) as cm:
                r.store = llmroute.Store(embedder="other-model", embed=other)
            self.assertIn("Router: store: read-only", str(cm.exception))
            self.assertIs(r.store, self.store)
            r.route(query="routed query")
            self.assertEqual((other.calls, self.embed.calls[-1]), ([], ["routed query"]))
        finally:
            r.close()

    def test_a_query_in_bytes_is_taken_as_a_builtin_store_takes_it(self):
        # A dense store refused bytes ("expected a string, got bytes"),
        # which a built-in store takes as the query's UTF-8 text.
        s, sparse = self.store, llmroute.Store()
        try:
            for store in (s, sparse):
                store.add(b"added query", [("a", 1, 3)])
                self.assertTrue(store.add_outcome(b"fed back", "b", 0, 7))
                self.assertTrue(store.add_outcome(b"keyed", "b", 1, 7, idempotency_key="k-1"))
                self.assertFalse(store.add_outcome(b"keyed", "b", 1, 7, idempotency_key="k-1"))
                # Bytes that are no UTF-8: refused by both, naming the
                # query, as an import (JSON text) can never hold them; the
                # dense store has asked embed first (U+FFFD for the bad byte).
                with self.assertRaises(llmroute.InvalidInput) as cm:
                    store.add(b"caf\xe9", [("a", 1, 3)])
                self.assertIn("query: not valid UTF-8 at byte 3", str(cm.exception))
            self.assertEqual((len(s), len(sparse)), (8, 3))
            self.assertEqual(self.embed.calls[2:], [["added query"], ["fed back"], ["keyed"],
                                                    ["keyed"], ["caf\ufffd"]])
            # A NUL inside is refused by both, in the same words.
            words = []
            for store in (s, sparse):
                for add in (lambda: store.add(b"a\0b", [("a", 1, 3)]),
                            lambda: store.add_outcome(b"a\0b", "a", 1, 3)):
                    with self.assertRaises(llmroute.InvalidInput) as cm:
                        add()
                    words.append(str(cm.exception))
            self.assertEqual(words[:2], words[2:])
            self.assertIn("Store.add: query: 'a\\x00b': a NUL byte inside", words[0])
            self.assertEqual((len(s), len(sparse)), (8, 3))
            self.assertEqual(len(self.embed.calls), 7)
        finally:
            sparse.close()

    def test_import_file_embeds_only_the_records_it_keeps(self):
        path = os.path.join(self.dir.name, "more.jsonl")
        with open(path, "w") as f:
            for i, split in enumerate(["train", "test", "train"]):
                r = rec("file query %d" % i, ("a", 1, 1))
                r["split"] = split
                f.write(json.dumps(r) + "\n")
        rep = self.store.import_file(path, split="train")
        self.assertEqual((rep.imported, rep.skipped_split), (2, 1))
        self.assertEqual(self.embed.calls[-1], ["file query 0", "file query 2"])
        self.assertEqual(len(self.store), 7)

    def test_every_bad_vector_is_refused_by_name_and_nothing_is_written(self):
        s = self.store
        for what, bad, words in BAD + [("vectors of differing length", differing,
                                        "embed: vectors differ in length: vector 0 has 64 "
                                        "numbers, vector 1 has 65")]:
            self.switch.fn = bad
            calls = [("import_records", lambda: s.import_records(RECORDS[:3]))]
            if bad is not differing:
                calls += [("add", lambda: s.add("q", [("a", 1, 3)])),
                          ("add_outcome", lambda: s.add_outcome("q", "a", 1, 3)),
                          ("add_outcome keyed",
                           lambda: s.add_outcome("q", "a", 1, 3, idempotency_key="kk"))]
            for name, call in calls:
                with self.subTest(what=what, call=name):
                    with self.assertRaises(llmroute.EmbedError) as cm:
                        call()
                    msg = str(cm.exception)
                    if words.startswith("embed: returned ("):
                        self.assertRegex(msg, words)
                    else:
                        self.assertIn(words, msg)
                    self.assertIsInstance(cm.exception, ValueError)
                    if name == "import_records":
                        self.assertIn("import_records: embedding records[0] to records[2]",
                                      msg)
                    if what == "a raise":
                        self.assertIsInstance(cm.exception.__cause__, ZeroDivisionError)
                    self.assertEqual(len(s), 5)
        # The store is still whole and usable afterwards.
        self.switch.fn = self.embed
        s.import_records(RECORDS[:2])
        self.assertEqual(len(s), 7)

    def test_any_sequences_of_numbers_are_vectors(self):
        # Rows as array('f') in a tuple (a numpy matrix is read the same way:
        # a sized sequence of sized sequences of numbers).
        from array import array
        self.switch.fn = lambda texts: tuple(array("f", support.hashed_vector(t))
                                             for t in texts)
        self.store.import_records(RECORDS[:2])
        self.store.add("ints", [("a", 1, 3)], embedding=[1] * DIM)
        self.assertEqual(len(self.store), 8)

    def test_a_given_embedding_is_checked_too(self):
        for vec, words in ([[1.0] * 3, "embedding: returned vectors of dimension 3, but the "
                                       "store's are 64"],
                           [[float("nan")] * DIM, "expected a finite number, got nan"],
                           ["abc", "embedding: vector 0: expected a sequence of numbers"]):
            with self.assertRaises(llmroute.EmbedError) as cm:
                self.store.add("q", [("a", 1, 3)], embedding=vec)
            self.assertIn(words, str(cm.exception))
        self.assertEqual(len(self.store), 5)


class DenseStoreIdTest(support.StoreFileTestCase):
    def test_with_embed_any_id_but_the_builtin_is_taken(self):
        embed = CountingEmbed()
        for emb in ("all-MiniLM-L6-v2", "bge-small-en-v1.5", "openai:text-embedding-3-small"):
            s = llmroute.Store(embedder=emb, embed=embed)
            self.assertEqual((s.embedder, s.dense), (emb, True))
            s.close()
        with self.assertRaises(llmroute.InvalidInput) as cm:
            llmroute.Store(self.path, embedder="tfidf-v1", embed=embed)
        self.assertIn("'tfidf-v1' is the built-in embedder", str(cm.exception))
        with self.assertRaises(llmroute.InvalidInput) as cm:
            llmroute.Store(self.path, embed=embed)
        self.assertIn("give the id of its embedding model", str(cm.exception))
        with self.assertRaises(TypeError):
            llmroute.Store(self.path, embedder="mini", embed="not callable")
        self.assertFalse(os.path.exists(self.path))
        # An embedder that carries its id gives it to the store.
        e = llmroute.openai_embedder("http://127.0.0.1:9/v1", "nomic-embed-text")
        s = llmroute.Store(embed=e)
        self.assertEqual(s.embedder, "openai:nomic-embed-text")
        s.close()
        with self.assertRaises(llmroute.InvalidInput) as cm:
            llmroute.Store(embedder="other", embed=e)
        self.assertIn("embed is the embedder 'openai:nomic-embed-text'", str(cm.exception))

    def test_a_dense_store_without_embed_says_what_is_missing(self):
        s = llmroute.Store(embedder="openai:all-minilm", dense_dim=DIM)
        for call in (lambda: s.import_records(RECORDS), lambda: s.add("q", [("a", 1, 3)]),
                     lambda: s.add_outcome("q", "a", 1, 3)):
            with self.assertRaises(llmroute.InvalidInput) as cm:
                call()
            self.assertIn("uses the embedder 'openai:all-minilm'", str(cm.exception))
            self.assertIn("embed=", str(cm.exception))
        # A vector given by hand is enough.
        s.add("q", [("a", 1, 3)], embedding=[1.0] * DIM)
        self.assertEqual(len(s), 1)
        s.close()

    def test_a_builtin_store_takes_no_embedding(self):
        s = llmroute.Store()
        with self.assertRaises(llmroute.InvalidInput) as cm:
            s.add("q", [("a", 1, 3)], embedding=[1.0] * DIM)
        self.assertIn("built-in embedder", str(cm.exception))
        self.assertEqual(len(s), 0)
        s.close()


if __name__ == "__main__":
    unittest.main()
