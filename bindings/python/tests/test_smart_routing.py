"""SmartRouting on a small store built here: choices, predictions, the
store, and the errors of bad data and bad calls."""
import json
import math
import os
import tempfile
import threading
import time
import unittest

import support  # noqa: F401  (puts the package on the path)
from support import (DIM, CountingEmbed, SmartTestCase, SwitchEmbed, group_fixture,
                     hashed_vector, priced)

import llmroute
from llmroute import SmartRouting

NAMES = ["cheap", "mid", "strong"]
PRICES = [(1e-7, 2e-7), (1e-6, 2e-6), (1e-5, 3e-5)]
CONFIGS = priced(NAMES, PRICES)
K = 6


def clear_cut(rng, g, model):
    """Group 0 is easy (every model right), group 1 hard (only "strong"),
    group 2 middling ("mid" and "strong"). Lengths by model."""
    right = {0: True, 1: model == "strong", 2: model != "cheap"}.get(g, True)
    return (1.0 if right else 0.0), {"cheap": 100.0, "mid": 200.0, "strong": 300.0}[model]


def fixture():
    return group_fixture(3, NAMES, group_size=K, n_groups=3, outcome_p=1.0,
                         queries_per_group=4, outcome=clear_cut)


class SmartChoicesTest(SmartTestCase):
    def setUp(self):
        self.records, self.queries, self.groups = fixture()
        self.sel = [{"name": n} for n in NAMES]

    def router(self, **kw):
        kw.setdefault("n_similar", K)
        r = SmartRouting(CONFIGS, **kw)
        report = r.store.add_data(self.records)
        self.assertEqual(report.imported, len(self.records))
        self.assertEqual(r.store.count(), len(self.records))
        return r

    def test_cheapest_model_that_meets_the_requirement(self):
        r = self.router(predictor="aios")
        texts = [q[0] for q in self.queries]
        tokens = [q[2] for q in self.queries]
        got = r.get_model_idxs(self.sel, texts, tokens)
        want = [{0: 0, 1: 2, 2: 1}[g] for _, g, _ in self.queries]
        self.assertEqual(got, want)

    def test_default_predictor_makes_the_same_clear_cut_choices(self):
        r = self.router()
        texts = [q[0] for q in self.queries]
        got = r.get_model_idxs(self.sel, texts)
        self.assertEqual(len(got), len(texts))
        for (text, g, _), idx in zip(self.queries, got):
            if g == 1:  # only "strong" is ever right on the hard group
                self.assertEqual(idx, 2, text)
            self.assertIn(idx, (0, 1, 2))

    def test_indices_are_into_llm_configs(self):
        r = self.router(predictor="aios")
        text = self.queries[0][0]  # easy: every candidate qualifies
        self.assertEqual(r.get_model_idxs([{"name": "strong"}, {"name": "mid"}], [text]), [1])

    def test_single_candidate_is_chosen_even_without_data(self):
        r = SmartRouting(CONFIGS, n_similar=K)
        self.assertEqual(r.get_model_idxs([{"name": "mid"}], ["anything at all"]), [1])

    def test_predictions_and_costs(self):
        r = self.router(predictor="aios")
        text, g, _ = self.queries[4]  # group 1
        self.assertEqual(g, 1)
        perf, length, cost = r.predict([text], self.sel, [1000])
        self.assertEqual(perf[0], [0.0, 0.0, 1.0])
        self.assertEqual(length[0], [100.0, 200.0, 300.0])
        for j, (pi, po) in enumerate(PRICES):
            self.assertAlmostEqual(cost[0][j], 1000 * pi + length[0][j] * po, delta=1e-12)

    def test_input_tokens_estimated_when_not_given(self):
        r = self.router(predictor="aios")
        text = self.queries[0][0]
        d = r.router.route(NAMES, query=text)
        self.assertEqual(d.input_tokens, llmroute.estimate_tokens(text))

    def test_chat_messages_as_queries(self):
        r = self.router(predictor="aios")
        text = self.queries[5][0]  # hard group
        messages = [{"role": "system", "content": "be brief"},
                    {"role": "user", "content": "earlier question"},
                    {"role": "assistant", "content": "earlier answer"},
                    {"role": "user", "content": text}]
        self.assertEqual(r.get_model_idxs(self.sel, [messages], [50]),
                         r.get_model_idxs(self.sel, [text], [50]))

    def test_per_query_candidate_lists(self):
        r = self.router(predictor="aios")
        easy, hard = self.queries[0][0], self.queries[4][0]
        lists = [[{"name": "mid"}, {"name": "strong"}], [{"name": "cheap"}, {"name": "strong"}]]
        self.assertEqual(r.get_model_idxs(lists, [easy, hard]), [1, 2])

    def test_threads_route_as_one_thread_does(self):
        r = self.router()
        texts = [q[0] for q in self.queries]
        want = r.get_model_idxs(self.sel, texts)
        errors, barrier = [], threading.Barrier(6)

        def work():
            # An exception in a thread is not the test's: it is collected
            # here, or the thread would die and the test pass without it.
            try:
                barrier.wait()
                for _ in range(20):
                    got = r.get_model_idxs(self.sel, texts)
                    if got != want:
                        errors.append(got)
            except Exception as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=work) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])

    def test_routing_while_data_is_added(self):
        r = self.router()
        texts = [q[0] for q in self.queries]
        stop, errors, routed = threading.Event(), [], [0, 0, 0]
        started = threading.Barrier(4)

        def work(t):
            # Each thread routes at least once after the adds begin, so the
            # checks run whatever the scheduling.
            started.wait()
            while True:
                try:
                    got = r.get_model_idxs(self.sel, texts)
                    assert len(got) == len(texts) and all(0 <= i < 3 for i in got), got
                    routed[t] += 1
                except Exception as e:  # reported below
                    errors.append(e)
                    return
                if stop.is_set():
                    return

        threads = [threading.Thread(target=work, args=(t,)) for t in range(3)]
        for t in threads:
            t.start()
        started.wait()
        for _ in range(5):
            r.store.add_data(self.records)
        stop.set()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        self.assertTrue(all(routed), routed)
        self.assertEqual(r.store.count(), 6 * len(self.records))


class SmartStoreTest(SmartTestCase):
    def test_store_file_persists(self):
        records, _, _ = fixture()
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "history.db")
            r = SmartRouting(CONFIGS, n_similar=K, store_path=path)
            r.store.add_data(records)
            del r
            again = SmartRouting(CONFIGS, n_similar=K, store_path=path)
            self.assertEqual(again.store.count(), len(records))

    def test_held_out_splits_are_kept_apart(self):
        records, _, _ = fixture()
        r = SmartRouting(CONFIGS, n_similar=K)
        self.assertIsNone(r.store.add_data(records[:3], split="val"))
        r.store.add_data(records[:2], split="test")
        self.assertEqual(r.store.count(), 0)
        self.assertEqual(len(r.store.held_out["val"]), 3)
        with self.assertRaises(ValueError):
            r.store.add_data(records, split="dev")

    def test_bootstrap_from_a_local_file(self):
        records, _, _ = fixture()
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "bootstrap.json")
            with open(path, "w") as f:
                json.dump(records, f)
            r = SmartRouting(CONFIGS, n_similar=K, bootstrap_url=path)
            self.assertEqual(r.store.count(), len(records))
            # A scheme other than http(s) and file (test_smart_aios
            # downloads over http from a local server).
            with self.assertRaises(ValueError) as cm:
                SmartRouting(CONFIGS, bootstrap_url="ftp://h/%s" % path)
            self.assertIn("expected an http://, https:// or file:// URL", str(cm.exception))

    def test_a_bootstrap_url_that_is_no_path(self):
        # It raised AttributeError: 'int' object has no attribute 'startswith'.
        with self.assertRaises(TypeError) as cm:
            SmartRouting(CONFIGS, bootstrap_url=5)
        self.assertIn("bootstrap_url: expected a URL or a path", str(cm.exception))

    def test_bad_record_names_it_and_adds_nothing(self):
        records, _, _ = fixture()
        r = SmartRouting(CONFIGS, n_similar=K)
        r.store.add_data(records[:4])
        bad = [dict(rec) for rec in records[4:8]]
        bad[2]["input_token_length"] = "twelve"
        with self.assertRaises(ValueError) as cm:
            r.store.add_data(bad)
        self.assertIn("input_token_length", str(cm.exception))
        self.assertEqual(r.store.count(), 4)

    def test_record_without_outputs_is_refused(self):
        r = SmartRouting(CONFIGS, n_similar=K)
        with self.assertRaises(ValueError):
            r.store.add_data([{"query": "q", "input_token_length": 3}])
        self.assertEqual(r.store.count(), 0)

    def test_data_that_is_not_json_is_refused(self):
        r = SmartRouting(CONFIGS, n_similar=K)
        with self.assertRaises(ValueError):
            r.store.add_data([{"query": object(), "input_token_length": 1, "outputs": []}])


class AddOneAtATimeTest(SmartTestCase):
    """QueryStore.add_data of one record costs that record, not the store,
    and routing after it is what it was when each add_data built the
    store's copy whole."""

    def assert_refused_as_imported(self, qs, good, bad):
        """add_data of bad alone (appended) is refused as add_data of good
        and bad (imported, all or nothing) refuses it: the same error and
        words, bad named data[0]."""
        with self.assertRaises(llmroute.Error) as one:
            qs.add_data([bad])
        with self.assertRaises(llmroute.Error) as two:
            qs.add_data([good, bad])
        self.assertIs(type(one.exception), type(two.exception))
        self.assertEqual(str(one.exception), str(two.exception).replace("data[1]", "data[0]"))

    def test_records_added_one_at_a_time_route_as_each_imported_whole(self):
        # Each add_data was an import, which builds the store's copy whole
        # (weights, index, groups) before it commits: adding records one
        # call at a time cost the size of the store at each call
        # (bench/python_add.sh: 164x one call of the same records at 1,000
        # records). A lone record is now appended, and the copy built whole
        # at the next route: the adds leave added_since_build() above 0
        # until then, where each import left 0.
        records, queries, _ = fixture()
        texts = [q for q, _, _ in queries]
        ours = SmartRouting(CONFIGS, n_similar=K)
        theirs = SmartRouting(CONFIGS, n_similar=K)
        # theirs, as add_data was: an import of each record.
        for i, rec in enumerate(records):
            self.assertEqual(tuple(ours.store.add_data([rec])), (1, 1, 0, 0, None))
            theirs.store._store.import_records([rec])
            self.assertEqual(ours.store.count(), theirs.store.count())
            if i % 7 == 6 or i == len(records) - 1:
                # The adds since the last route were appended, not built in.
                self.assertGreater(ours.store._store.added_since_build(), 0)
                # A route between the adds, through each way of routing.
                self.assertEqual(ours.get_model_idxs(CONFIGS, texts),
                                 theirs.get_model_idxs(CONFIGS, texts))
                self.assertEqual(ours.store._store.added_since_build(), 0)
                self.assertEqual(ours.predict(texts, CONFIGS), theirs.predict(texts, CONFIGS))
                a = ours.store.predict(texts, CONFIGS)
                b = theirs.store.predict(texts, CONFIGS)
                self.assertEqual([list(map(list, x)) for x in a],
                                 [list(map(list, x)) for x in b])

    def test_a_dense_stores_records_added_one_at_a_time_route_as_added_in_one_call(self):
        # Over a dense store add_data of one record was still an import,
        # which builds the store's copy whole: 8.3 ms an add into 1,000
        # records, 151 ms into 10,000 (bench/python_add.sh --dense). A
        # lone record is now embedded (one call of embed, with
        # its query alone) and appended, and the copy built whole at the
        # next route: the adds leave added_since_build() above 0 until
        # then, where each import left 0.
        records, queries, _ = fixture()
        texts = [q for q, _, _ in queries]
        ours_embed, theirs_embed = CountingEmbed(), CountingEmbed()
        ours = SmartRouting(CONFIGS, n_similar=K)
        ours.store = llmroute.QueryStore(embed=ours_embed, embedder="e")
        theirs = SmartRouting(CONFIGS, n_similar=K)
        theirs.store = llmroute.QueryStore(embed=theirs_embed, embedder="e")
        # The first import learns the vectors' dimension, on both sides.
        ours.store.add_data(records[:5])
        theirs.store.add_data(records[:5])
        for rec in records[5:]:
            self.assertEqual(tuple(ours.store.add_data([rec])), (1, 1, 0, 0, None))
            self.assertEqual(ours_embed.calls[-1], [rec["query"]])
        theirs.store.add_data(records[5:])
        self.assertEqual(ours.store.count(), theirs.store.count())
        self.assertGreater(ours.store._store.added_since_build(), 0)
        self.assertEqual(ours.get_model_idxs(CONFIGS, texts),
                         theirs.get_model_idxs(CONFIGS, texts))
        self.assertEqual(ours.store._store.added_since_build(), 0)
        self.assertEqual(ours.predict(texts, CONFIGS), theirs.predict(texts, CONFIGS))
        self.assertEqual(ours.route_batch(CONFIGS, texts).indices,
                         theirs.route_batch(CONFIGS, texts).indices)
        a = ours.store.predict(texts, CONFIGS)
        b = theirs.store.predict(texts, CONFIGS)
        self.assertEqual([list(map(list, x)) for x in a], [list(map(list, x)) for x in b])

    def test_a_capped_stores_lone_records_go_in_to_the_cap_then_are_refused_as_imported(self):
        # A store opened with max_records takes records one add_data at a
        # time while it has room, and routes over them as over the same
        # records imported one at a time; at the cap a lone record is
        # refused as the import refuses it (TooBig, in its words), before
        # embed is called, and the store is as it was. Each add with room
        # was an import, which builds the store's copy whole: 88 ms an add
        # into 1,000 records, 1.1 s into 10,000 (bench/python_add.sh
        # --cap). It is now appended, as into a store without a cap, and
        # the copy built whole at the next route: the adds leave
        # added_since_build() above 0 until then, where each import left 0.
        records, queries, _ = fixture()
        texts = [q for q, _, _ in queries]
        cap = len(records) - 3
        for dense in (False, True):
            with self.subTest(dense=dense), tempfile.TemporaryDirectory() as d:
                path = os.path.join(d, "capped.db")
                embed = CountingEmbed()

                def store(path=None):
                    if dense:
                        return llmroute.QueryStore(path=path, embed=embed, embedder="e",
                                                   max_records=cap)
                    return llmroute.QueryStore(path=path, max_records=cap)
                ours = SmartRouting(CONFIGS, n_similar=K)
                ours.store = store(path)
                theirs = SmartRouting(CONFIGS, n_similar=K)
                theirs.store = store()
                # Five in one call: a dense store learns its dimension.
                ours.store.add_data(records[:5])
                theirs.store.add_data(records[:5])
                unbuilt = 0
                for rec in records[5:cap]:
                    self.assertEqual(tuple(ours.store.add_data([rec])), (1, 1, 0, 0, None))
                    if dense:
                        self.assertEqual(embed.calls[-1], [rec["query"]])
                    unbuilt = max(unbuilt, ours.store._store.added_since_build())
                    theirs.store._store.import_records([rec])
                self.assertGreater(unbuilt, 0)
                self.assertEqual((ours.store.count(), theirs.store.count()), (cap, cap))
                self.assertEqual(ours.get_model_idxs(CONFIGS, texts),
                                 theirs.get_model_idxs(CONFIGS, texts))
                self.assertEqual(ours.store._store.added_since_build(), 0)
                self.assertEqual(ours.predict(texts, CONFIGS), theirs.predict(texts, CONFIGS))
                a = ours.store.predict(texts, CONFIGS)
                self.assertEqual([list(map(list, x)) for x in a],
                                 [list(map(list, x)) for x in theirs.store.predict(texts,
                                                                                   CONFIGS)])
                generation, calls = ours.store.generation, len(embed.calls)
                for rec in records[cap:]:
                    with self.assertRaises(llmroute.TooBig) as cm:
                        ours.store.add_data([rec])
                    self.assertEqual(str(cm.exception), "QueryStore.add_data: data[0]: the "
                                     "history store's cap of %d records is reached" % cap)
                self.assertEqual((ours.store.count(), ours.store.generation, len(embed.calls)),
                                 (cap, generation, calls))
                self.assertEqual(ours.store._store.added_since_build(), 0)
                b = ours.store.predict(texts, CONFIGS)
                self.assertEqual([list(map(list, x)) for x in a], [list(map(list, x)) for x in b])
                ours.store.close()
                # The file holds the records the adds committed, and no more.
                again = store(path)
                self.assertEqual(again.count(), cap)
                b = again.predict(texts, CONFIGS)
                self.assertEqual([list(map(list, x)) for x in a], [list(map(list, x)) for x in b])
                with self.assertRaises(llmroute.TooBig):
                    again.add_data([records[-1]])
                again.close()

    def test_lone_records_added_at_once_into_room_for_one_take_one(self):
        # Threads each add one record at once into a capped store with room
        # for one: one is taken, every other is refused in the import's
        # words, and the store holds its cap, never more. A dense store's
        # embed is slow, so that the adds overlap, and is called for one
        # query: the refused records are refused before they are embedded.
        records, _, _ = fixture()
        threads = 6
        embedded = []

        def slow(texts):
            embedded.extend(texts)
            time.sleep(0.005)
            return [hashed_vector(t, DIM) for t in texts]

        for dense in (False, True):
            for rnd in range(5):
                with self.subTest(dense=dense, round=rnd):
                    qs = (llmroute.QueryStore(embed=slow, embedder="e", max_records=6)
                          if dense else llmroute.QueryStore(max_records=6))
                    qs.add_data(records[:5])
                    del embedded[:]
                    start = threading.Barrier(threads)
                    got = [None] * threads

                    def add(i):
                        start.wait()
                        try:
                            got[i] = tuple(qs.add_data([records[6 + i]]))
                        except Exception as e:
                            got[i] = e
                    ts = [threading.Thread(target=add, args=(i,)) for i in range(threads)]
                    for t in ts:
                        t.start()
                    for t in ts:
                        t.join()
                    taken = [g for g in got if g == (1, 1, 0, 0, None)]
                    refused = [g for g in got if isinstance(g, llmroute.TooBig)]
                    self.assertEqual((len(taken), len(refused)), (1, threads - 1), got)
                    for e in refused:
                        self.assertEqual(str(e), "QueryStore.add_data: data[0]: the history "
                                         "store's cap of 6 records is reached")
                    self.assertEqual(qs.count(), 6)
                    self.assertEqual(len(embedded), 1 if dense else 0)
                    qs.close()

    def test_a_lone_record_into_a_file_another_handle_filled_is_refused_as_imported(self):
        # The room a capped store's add checks is in its own copy, which
        # another handle's records reach only at its next write: that
        # write, the append, finds the file full, and the record is then
        # refused in the import's words, as at the cap.
        records, _, _ = fixture()
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "shared.db")
            a = llmroute.QueryStore(path=path, max_records=6)
            b = llmroute.QueryStore(path=path, max_records=6)
            a.add_data(records[:5])
            self.assertEqual(tuple(b.add_data([records[5]])), (1, 1, 0, 0, None))
            self.assertEqual((a.count(), b.count()), (5, 6))
            generation = a.generation
            with self.assertRaises(llmroute.TooBig) as cm:
                a.add_data([records[6]])
            self.assertEqual(str(cm.exception), "QueryStore.add_data: data[0]: the history "
                             "store's cap of 6 records is reached")
            self.assertEqual((a.count(), a.generation), (6, generation))
            a.close()
            b.close()

    def test_a_dense_stores_lone_record_is_refused_as_the_import_refuses_it(self):
        good = {"query": "q", "input_token_length": 3,
                "outputs": [{"model_name": "cheap", "correctness": 1,
                             "output_token_length": 9}]}
        embed = CountingEmbed()
        qs = llmroute.QueryStore(embed=embed, embedder="e")
        qs.add_data([good])
        calls = len(embed.calls)
        for bad in (dict(good, query=""), dict(good, input_token_length=2.5),
                    dict(good, outputs=[])):
            with self.subTest(bad=bad):
                self.assert_refused_as_imported(qs, good, bad)
        self.assertEqual((qs.count(), len(embed.calls)), (1, calls))

        def boom(texts):
            raise ZeroDivisionError("no vectors today")
        qs = llmroute.QueryStore(embed=SwitchEmbed(embed), embedder="e")
        qs.add_data([good])
        qs._store.embed.fn = boom
        with self.assertRaises(llmroute.EmbedError) as cm:
            qs.add_data([good])
        self.assertEqual(str(cm.exception), "QueryStore.add_data: embedding data[0] to "
                         "data[0]: embed raised ZeroDivisionError: no vectors today")
        self.assertIsInstance(cm.exception.__cause__, ZeroDivisionError)
        qs._store.embed.fn = lambda texts: [[0.0] * 64 for _ in texts]
        with self.assertRaises(llmroute.EmbedError) as cm:
            qs.add_data([good])
        self.assertEqual(str(cm.exception), "QueryStore.add_data: embedding data[0] to "
                         "data[0]: embed: vector 0 is all zeros (it has no direction)")
        self.assertEqual(qs.count(), 1)

    def test_a_lone_bad_record_is_refused_as_the_import_refuses_it(self):
        good = {"query": "q", "input_token_length": 3,
                "outputs": [{"model_name": "cheap", "correctness": 1,
                             "output_token_length": 9}]}
        bads = [dict(good, input_token_length=2.5), dict(good, query=""),
                dict(good, outputs=[]), dict(good, note="x\x00"), dict(good, task=5),
                dict(good, input_token_length=float("nan")),
                dict(good, input_token_length=10 ** 400), dict(good, query=b"q"),
                dict(good, outputs=[{"model_name": "cheap", "correctness": 2,
                                     "output_token_length": 1}])]
        for bad in bads:
            with self.subTest(bad=bad):
                qs = llmroute.QueryStore()
                self.assert_refused_as_imported(qs, good, bad)
                self.assertEqual(qs.count(), 0)


class SmartErrorsTest(SmartTestCase):
    def setUp(self):
        self.records, self.queries, _ = fixture()
        self.r = SmartRouting(CONFIGS, n_similar=K)
        self.r.store.add_data(self.records)
        self.sel = [{"name": n} for n in NAMES]

    def test_unknown_candidate_raises_naming_it(self):
        with self.assertRaises(ValueError) as cm:
            self.r.get_model_idxs([{"name": "cheap"}, {"name": "gpt-9"}], ["q"])
        self.assertIn("gpt-9", str(cm.exception))

    def test_queries_are_needed(self):
        with self.assertRaises(ValueError):
            self.r.get_model_idxs(self.sel)
        # No queries is no choices, as in AIOS.
        self.assertEqual(self.r.get_model_idxs(self.sel, []), [])

    def test_token_lengths_must_match_the_queries(self):
        with self.assertRaises(ValueError) as cm:
            self.r.get_model_idxs(self.sel, ["a", "b"], [3])
        self.assertIn("must match", str(cm.exception))

    def test_candidate_without_prices_is_refused_naming_it(self):
        configs = CONFIGS + [{"name": "unpriced", "backend": "openai"}]
        with self.assertRaises(ValueError) as cm:
            r = SmartRouting(configs, n_similar=K)
            r.store.add_data(self.records)
            r.get_model_idxs([{"name": "cheap"}, {"name": "unpriced"}], [self.queries[0][0]])
        self.assertIn("unpriced", str(cm.exception))

    def test_bad_requirement(self):
        with self.assertRaises(ValueError):
            SmartRouting(CONFIGS, performance_requirement=1.5)
        with self.assertRaises(ValueError):
            SmartRouting(CONFIGS, n_similar=0)

    def test_bad_predictor(self):
        with self.assertRaises(ValueError) as cm:
            SmartRouting(CONFIGS, predictor="oracle")
        self.assertIn("predictor", str(cm.exception))

    def test_token_lengths_beyond_a_c_long_are_refused_not_wrapped(self):
        with self.assertRaises(ValueError) as cm:
            self.r.get_model_idxs(self.sel, ["a", "b"], [3, 2 ** 64 + 5])
        self.assertIn("SmartRouting.get_model_idxs: input_token_lengths[1]", str(cm.exception))

    def test_chat_content_that_is_no_text(self):
        # It raised AttributeError: 'int' object has no attribute 'strip'.
        for content in (5, {"text": "hi"}):
            with self.subTest(content=content):
                with self.assertRaises(ValueError) as cm:
                    self.r.get_model_idxs(self.sel, [[{"role": "user", "content": "hi"},
                                                      {"role": "user", "content": content}]])
                self.assertIn("queries[0]: the last user message's content: expected a "
                              "string or a list of content parts", str(cm.exception))

    def test_a_text_part_whose_text_is_none(self):
        # It raised TypeError: sequence item 0: expected str instance, NoneType found.
        for text, shown in ((None, "None"), (5, "a int")):
            with self.subTest(text=text):
                msg = [{"role": "user", "content": [{"type": "text", "text": "hi"},
                                                    {"type": "text", "text": text}]}]
                with self.assertRaises(llmroute.InvalidInput) as cm:
                    self.r.get_model_idxs(self.sel, [msg])
                self.assertIn("queries[0]: the last user message's content[1]: \"text\" is %s; "
                              "expected a string" % shown, str(cm.exception))

    def test_arguments_that_are_no_lists_name_themselves(self):
        # Each raised TypeError with Python's own message ("'int' object is
        # not iterable", "object of type 'int' has no len()").
        q = [self.queries[0][0]]
        for args, message in (((self.sel, 5), "queries: expected a list of queries"),
                              ((self.sel, b"q"), "queries: expected a list of queries"),
                              ((5, q), "selected_llms: expected a list of models"),
                              ((self.sel, q, 2.5), "input_token_lengths: expected one count "
                                                   "per query")):
            with self.subTest(args=args):
                with self.assertRaises(llmroute.InvalidInput) as cm:
                    self.r.get_model_idxs(*args)
                self.assertIn(message, str(cm.exception))

    def test_generators_route_as_their_lists(self):
        q = [g[0] for g in self.queries[:6:2]]
        want = self.r.get_model_idxs(self.sel, q, [20, 30, 40])
        got = self.r.get_model_idxs((m for m in self.sel), (x for x in q),
                                    (n for n in [20, 30, 40]))
        self.assertEqual(got, want)
        self.assertEqual(len(got), 3)

    def test_query_with_a_nul_is_refused_not_cut_short(self):
        with self.assertRaises(ValueError) as cm:
            self.r.get_model_idxs(self.sel, [self.queries[0][0] + "\0 and more"])
        self.assertIn("NUL", str(cm.exception))

    def test_data_that_is_no_list_of_records(self):
        for bad in (None, "[]", {"query": "q"}, ["q"], [5]):
            with self.subTest(bad=bad):
                with self.assertRaises(ValueError) as cm:
                    self.r.store.add_data(bad)
                self.assertNotIn("llmroute-import-", str(cm.exception))
                self.assertRegex(str(cm.exception), r"^QueryStore\.add_data: data\b")

    def test_predictions_are_in_range(self):
        perf, length, cost = self.r.predict([q[0] for q in self.queries], self.sel)
        # One row per query, one figure per candidate: the loops below check
        # every prediction, not an empty list.
        for rows in (perf, length, cost):
            self.assertEqual(len(rows), len(self.queries))
            self.assertEqual([len(row) for row in rows], [len(self.sel)] * len(self.queries))
        for row in perf:
            for p in row:
                self.assertTrue(0.0 <= p <= 1.0, p)
        for row in cost:
            for c in row:
                self.assertTrue(c >= 0 and not math.isnan(c), c)


if __name__ == "__main__":
    unittest.main()
