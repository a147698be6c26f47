"""SequentialRouting: AIOS's round-robin, backed by libllmroute."""
import collections
import os
import threading
import unittest

import support  # noqa: F401  (puts the package on the path)
from support import MODELS
from test_errors import run_apart

import llmroute
from llmroute import InvalidInput, InvalidType, RouterStrategy, SequentialRouting


def sel(*names):
    return [{"name": n} for n in names]


class SequentialTest(unittest.TestCase):
    def setUp(self):
        self.r = SequentialRouting(MODELS)

    def test_cycles_over_selected_models(self):
        # a, b, c over 7 queries: a b c a b c a
        self.assertEqual(self.r.get_model_idxs(sel("a", "b", "c"), n_queries=7),
                         [0, 1, 2, 0, 1, 2, 0])

    def test_one_query_at_a_time_continues_the_cycle(self):
        got = [self.r.get_model_idxs(sel("a", "b", "c"))[0] for _ in range(7)]
        self.assertEqual(got, [0, 1, 2, 0, 1, 2, 0])

    def test_indices_are_into_llm_configs_not_the_selection(self):
        self.assertEqual(self.r.get_model_idxs(sel("c", "a"), n_queries=4), [2, 0, 2, 0])

    def test_single_model(self):
        self.assertEqual(self.r.get_model_idxs(sel("b"), n_queries=5), [1] * 5)
        self.assertEqual(self.r.get_model_idxs(sel("b")), [1])

    def test_single_model_does_not_move_the_cursor(self):
        self.r.get_model_idxs(sel("a", "b", "c"))       # takes a
        self.r.get_model_idxs(sel("c"), n_queries=3)    # one candidate: no ticket
        self.assertEqual(self.r.get_model_idxs(sel("a", "b", "c")), [1])

    def test_shorter_list_never_fails(self):
        # AIOS keeps idx = 2 after three picks from three models and then
        # indexes a two-model list with it; here the cursor is taken modulo
        # the current list.
        self.assertEqual(self.r.get_model_idxs(sel("a", "b", "c"), n_queries=2), [0, 1])
        got = self.r.get_model_idxs(sel("a", "b"), n_queries=4)
        self.assertEqual(len(got), 4)
        self.assertTrue(set(got) <= {0, 1})
        self.assertEqual(collections.Counter(got), {0: 2, 1: 2})
        self.assertEqual(self.r.get_model_idxs(sel("c")), [2])

    def test_unknown_name_raises_value_error_naming_it(self):
        with self.assertRaises(ValueError) as cm:
            self.r.get_model_idxs(sel("a", "gpt-5"), n_queries=2)
        self.assertIn("gpt-5", str(cm.exception))
        self.assertIn("unknown model", str(cm.exception))

    def test_messages_name_the_method_and_the_callers_argument(self):
        where = "SequentialRouting.get_model_idxs: "
        for call in (lambda: self.r.get_model_idxs(sel("a", "gpt-5")),
                     lambda: self.r.get_model_idxs(sel("a", "gpt-5"), n_queries=2),
                     lambda: self.r.get_model_idxs([sel("a"), sel("gpt-5", "b")], ["q", "q"])):
            with self.assertRaises(ValueError) as cm:
                call()
            self.assertTrue(str(cm.exception).startswith(where), str(cm.exception))
            self.assertIn("unknown model 'gpt-5'", str(cm.exception))
        # Current AIOS's keyword: its name, not the binding's, in the message.
        with self.assertRaises(ValueError) as cm:
            self.r.get_model_idxs(selected_llm_lists=[sel("a"), []], queries=["q", "q"])
        self.assertIn(where + "selected_llm_lists[1] is empty", str(cm.exception))
        with self.assertRaises(ValueError) as cm:
            self.r.get_model_idxs([sel("a"), []], ["q", "q"])
        self.assertIn(where + "selected_llms[1] is empty", str(cm.exception))

    def test_unknown_name_does_not_move_the_cursor(self):
        with self.assertRaises(ValueError):
            self.r.get_model_idxs(sel("a", "nope"))
        self.assertEqual(self.r.get_model_idxs(sel("a", "b", "c")), [0])

    def test_empty_selection_raises(self):
        with self.assertRaises(ValueError) as cm:
            self.r.get_model_idxs([])
        self.assertIn("empty", str(cm.exception))

    def test_repeated_name_raises(self):
        with self.assertRaises(ValueError) as cm:
            self.r.get_model_idxs(sel("a", "a"))
        self.assertIn("listed twice", str(cm.exception))

    def test_a_list_longer_than_the_configuration_names_its_fault(self):
        # Four candidates of three models said "n_models 4 exceeds the 3
        # configured models (a candidate list that long must repeat a
        # model)", also when no model repeats and one is unknown.
        with self.assertRaises(llmroute.UnknownModel) as cm:
            self.r.get_model_idxs(sel("a", "b", "c", "gpt-5"))
        self.assertIn("unknown model 'gpt-5'", str(cm.exception))
        with self.assertRaises(llmroute.InvalidInput) as cm:
            self.r.get_model_idxs(sel("a", "b", "c", "b"), 2)
        self.assertIn("model 'b' is listed twice", str(cm.exception))
        with self.assertRaises(llmroute.UnknownModel) as cm:
            self.r.get_model_idxs(selected_llm_lists=[sel("a", "b"), sel("x", "y", "z", "a")],
                                  queries=["q", "r"])
        self.assertIn("unknown model 'x'", str(cm.exception))

    def test_a_selection_that_is_no_list_of_models_names_the_argument(self):
        # 5 raised TypeError: object of type 'int' has no len().
        for bad in (5, 2.5, object()):
            with self.subTest(bad=bad):
                with self.assertRaises(InvalidInput) as cm:
                    self.r.get_model_idxs(bad, n_queries=2)
                self.assertIn("selected_llms: expected a list of models", str(cm.exception))
                self.assertIn("got %s" % type(bad).__name__, str(cm.exception))

    def test_generators_are_taken_as_their_lists(self):
        # A generator of candidates raised TypeError; one of queries was
        # refused as n_queries although SmartRouting takes it.
        self.assertEqual(self.r.get_model_idxs((m for m in sel("b", "c")), n_queries=3),
                         [1, 2, 1])
        lists = (s for s in [sel("a", "b"), sel("c"), sel("a", "b")])
        self.assertEqual(self.r.get_model_idxs(lists, (q for q in ["q0", "q1", "q2"])),
                         [1, 2, 0])

    def test_none_means_every_configured_model(self):
        self.assertEqual(self.r.get_model_idxs(None, n_queries=4), [0, 1, 2, 0])

    def test_selection_entries_may_be_names_dicts_or_objects(self):
        class LLMConfig:  # AIOS's later form passes objects with .name
            def __init__(self, name):
                self.name = name
        got = self.r.get_model_idxs(["a", {"name": "b", "backend": "x"}, LLMConfig("c")],
                                    n_queries=3)
        self.assertEqual(got, [0, 1, 2])

    def test_a_name_that_is_bytes_is_refused_on_every_path(self):
        # The one-query call of dicts went straight to Router.route_index,
        # which takes bytes: [0] and the cursor moved, where every other
        # form of the same selection raised InvalidType.
        for kw in ({}, {"n_queries": 2}):
            with self.assertRaises(InvalidType) as cm:
                self.r.get_model_idxs([{"name": b"a"}, {"name": "b"}], **kw)
            self.assertIn("selected_llms[0]", str(cm.exception))
        self.assertEqual(self.r.get_model_idxs(sel("a", "b")), [0])  # the cursor never moved

    def test_entry_without_a_name_raises(self):
        with self.assertRaises(ValueError) as cm:
            self.r.get_model_idxs([{"model": "a"}])
        self.assertIn("selected_llms[0]", str(cm.exception))

    def test_zero_queries_gives_nothing_and_negative_raises(self):
        self.assertEqual(self.r.get_model_idxs(sel("a", "b"), n_queries=0), [])
        with self.assertRaises(ValueError):
            self.r.get_model_idxs(sel("a", "b"), n_queries=-1)

    def test_n_queries_that_is_no_count(self):
        for bad in (None, float("nan"), 2.5, object()):
            with self.subTest(bad=bad):
                with self.assertRaises(ValueError) as cm:
                    self.r.get_model_idxs(sel("a", "b"), bad)
                self.assertIn("n_queries", str(cm.exception))

    def test_n_queries_that_is_no_int_raises_invalid_type(self):
        # n_queries="3" returned [0] (a lone str was taken for one query);
        # True was taken for 1 and 2.0 for 2. AIOS's range() refuses them all.
        for bad in ("3", "What is 2+2?", b"3", True, False, 2.0, 2.5, {"q": 1}):
            with self.subTest(bad=bad):
                with self.assertRaises(InvalidType) as cm:
                    self.r.get_model_idxs(sel("a", "b"), n_queries=bad)
                self.assertIn("SequentialRouting.get_model_idxs: n_queries: expected a count "
                              "(an int) or a list of queries", str(cm.exception))
        self.assertEqual(self.r.get_model_idxs(sel("a", "b", "c"), 2), [0, 1])
        self.assertEqual(len(self.r.get_model_idxs(sel("a", "b"), ["q1", "q2"])), 2)

    def test_aios_keyword_names(self):
        # Current AIOS: get_model_idxs(selected_llm_lists=..., queries=...)
        # raised TypeError: unexpected keyword argument 'selected_llm_lists'.
        lists = [sel("a", "b"), sel("c"), sel("a", "b")]
        queries = [[{"role": "user", "content": "q%d" % i}] for i in range(3)]
        self.assertEqual(self.r.get_model_idxs(selected_llm_lists=lists, queries=queries),
                         [0, 2, 1])
        self.assertEqual(self.r.get_model_idxs(lists, queries=queries), [0, 2, 1])
        self.assertEqual(self.r.get_model_idxs(selected_llm_lists=sel("a", "b"), n_queries=2),
                         [0, 1])
        self.assertEqual(self.r.get_model_idxs(selected_llms=sel("c"), queries=["x"]), [2])
        with self.assertRaises(TypeError) as cm:
            self.r.get_model_idxs(sel("a"), selected_llm_lists=[sel("a")])
        self.assertIn("selected_llms and selected_llm_lists", str(cm.exception))
        with self.assertRaises(TypeError):
            self.r.get_model_idxs(sel("a"), 1, queries=["x"])

    def test_per_query_candidate_lists(self):
        # AIOS's later form: get_model_idxs(selected_llm_lists, queries)
        lists = [sel("a", "b"), sel("c"), sel("a", "b"), sel("b", "c")]
        queries = [[{"role": "user", "content": "q%d" % i}] for i in range(4)]
        got = self.r.get_model_idxs(lists, queries)
        # One cursor across the lists, each taken modulo its own length: q0
        # takes ticket 0 (a), q1 has one candidate and takes none (c), q2
        # takes ticket 1 (b), q3 ticket 2, which is 0 of [b, c] (b). Any
        # choice from each list would pass a check of membership alone.
        self.assertEqual(got, [0, 2, 1, 1])

    def test_per_query_lists_must_match_the_queries(self):
        with self.assertRaises(ValueError):
            self.r.get_model_idxs([sel("a"), sel("b")], ["q"])

    def test_a_set_of_models_is_refused(self):
        # A set was taken, in an order that changes with the hash seed, so
        # the round-robin differed from run to run; Router refused it.
        for bad in ({"a", "b", "c"}, frozenset(["a", "b"])):
            for kw in ({"selected_llms": bad, "n_queries": 3},
                       {"selected_llm_lists": bad, "n_queries": 1}):
                with self.subTest(bad=type(bad).__name__, arg=list(kw)[0]):
                    with self.assertRaises(InvalidType) as cm:
                        self.r.get_model_idxs(**kw)
                    self.assertIn("SequentialRouting.get_model_idxs: %s: expected a list of "
                                  "models, got a %s, whose order changes from one run to the "
                                  "next" % (list(kw)[0], type(bad).__name__),
                                  str(cm.exception))
        self.assertEqual(self.r.get_model_idxs(sorted({"a", "b", "c"}), 3), [0, 1, 2])

    def test_out_of_memory_names_the_method_and_n_queries(self):
        # It raised a MemoryError with no message from inside Router._batch.
        real = llmroute.Router._requests

        def no_memory(*args, **kwargs):
            raise MemoryError()
        llmroute.Router._requests = no_memory
        try:
            with self.assertRaises(MemoryError) as cm:
                self.r.get_model_idxs(None, 2 ** 27)
        finally:
            llmroute.Router._requests = real
        self.assertIsInstance(cm.exception, llmroute.OutOfMemory)
        self.assertEqual(str(cm.exception), "SequentialRouting.get_model_idxs: n_queries: out "
                         "of memory routing 134217728 queries in one call; route them in "
                         "smaller batches")
        self.assertEqual(self.r.get_model_idxs(None, 2), [0, 1])

    @unittest.skipIf("asan" in os.environ.get("LD_PRELOAD", ""),
                     "an address-space limit starves the ASan runtime's own allocator; the "
                     "test above covers the message")
    def test_out_of_memory_under_an_address_space_limit(self):
        code = ("import resource\n"
                "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, resource.RLIM_INFINITY))\n"
                "r = SequentialRouting(M)\n"
                "try:\n    r.get_model_idxs(None, 2 ** 27)\n"
                "except MemoryError as e:\n    print(type(e).__name__, e)\n")
        p = run_apart(code)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.strip(), "OutOfMemory SequentialRouting.get_model_idxs: "
                         "n_queries: out of memory routing 134217728 queries in one call; "
                         "route them in smaller batches")

    def test_instances_have_separate_cursors(self):
        other = SequentialRouting(MODELS)
        self.r.get_model_idxs(sel("a", "b", "c"), n_queries=2)
        self.assertEqual(other.get_model_idxs(sel("a", "b", "c")), [0])

    def test_idx_is_the_round_robin_position_aios_keeps(self):
        # Earlier AIOS's SequentialRouting (aios/llm_core/routing.py) keeps
        # its turn in a public attribute:
        #     self.idx = 0 # internal index to track the current model ...
        #     current = selected_llms[self.idx]
        #     self.idx = (self.idx + 1) % len(selected_llms)
        # Setting it to 0 restarts the round-robin; without the property
        # the assignment made a new attribute the router never read.
        self.assertEqual(self.r.idx, 0)
        self.assertEqual(self.r.get_model_idxs(sel("a", "b", "c"), n_queries=2), [0, 1])
        self.assertEqual(self.r.idx % 3, 2)
        self.r.idx = 0
        self.assertEqual(self.r.get_model_idxs(sel("a", "b", "c")), [0])
        self.r.idx = 2
        self.assertEqual(self.r.get_model_idxs(sel("a", "b", "c"), n_queries=2), [2, 0])
        for bad, cls in ((-1, InvalidInput), (2 ** 64, InvalidInput), ("0", InvalidType),
                         (True, InvalidType), (None, InvalidType)):
            with self.assertRaises(cls) as cm:
                self.r.idx = bad
            self.assertIn("SequentialRouting: idx", str(cm.exception))
        self.assertEqual(self.r.idx % 3, 1)  # the refused values changed nothing

    def test_idx_survives_a_change_of_llm_configs_and_an_empty_list(self):
        r = SequentialRouting([])
        r.idx = 1
        self.assertEqual(r.idx, 1)
        r.llm_configs = list(MODELS)
        self.assertEqual(r.get_model_idxs(sel("a", "b", "c")), [1])

    def test_router_strategy_names(self):
        self.assertEqual(RouterStrategy.Sequential, "sequential")
        self.assertEqual(RouterStrategy.Smart, "smart")
        self.assertIs(RouterStrategy("smart"), RouterStrategy.Smart)
        # AIOS's RouterStrategy.Smart is the string itself: it prints so.
        self.assertEqual(str(RouterStrategy.Smart), "smart")
        self.assertEqual(f"{RouterStrategy.Sequential}", "sequential")
        self.assertEqual("%s" % RouterStrategy.Smart, "smart")

    def test_aios_llm_configs_with_backend_only_keys(self):
        cfgs = [{"name": "gpt-4o-mini", "backend": "openai", "api_key": "sk-not-passed"},
                {"name": "mistral-7b", "backend": "huggingface", "max_gpu_memory": "12GiB",
                 "eval_device": "cuda:0"},
                {"name": "qwen2.5:7b", "backend": "ollama", "hostname": "http://localhost:11434"}]
        r = SequentialRouting(cfgs)
        self.assertEqual(r.get_model_idxs(sel("qwen2.5:7b", "gpt-4o-mini"), 3), [2, 0, 2])
        self.assertEqual(r.config.models[2].base_url, "http://localhost:11434")
        # The key is never handed to the library.
        self.assertNotIn("sk-not-passed", r.config.json)


LLMConfig = support.AiosLLMConfig


CHAT = [{"role": "user", "content": "hi"}]


class RuntimeModelsTest(unittest.TestCase):
    """llm_configs after construction, as AIOS's adapter changes it."""

    def test_a_model_registered_as_aios_does_is_routed_to(self):
        # AIOS's _dynamic_register_ollama_model: append to its list, set
        # router.llm_configs to it, route to the new model. Raised
        # UnknownModel: the list was read once, at construction.
        llm_configs = [LLMConfig("qwen3:1.7b", "ollama", hostname="http://localhost:11434")]
        r = SequentialRouting(llm_configs=llm_configs)
        llm_configs.append(LLMConfig("qwen3:4b", "ollama", hostname="http://localhost:11434"))
        r.llm_configs = llm_configs
        self.assertEqual(r.get_model_idxs([[{"name": "qwen3:4b", "backend": "ollama"}]],
                                          [CHAT]), [1])
        self.assertEqual(r.config.names, ["qwen3:1.7b", "qwen3:4b"])

    def test_an_append_alone_is_seen(self):
        cfgs = [{"name": "a"}]
        r = SequentialRouting(cfgs)
        cfgs.append({"name": "b"})
        self.assertEqual(r.get_model_idxs(sel("b")), [1])
        cfgs[1] = {"name": "c"}  # an entry replaced: the same length
        self.assertEqual(r.get_model_idxs(sel("c")), [1])
        with self.assertRaises(llmroute.UnknownModel):
            r.get_model_idxs(sel("b"))

    def test_an_append_during_a_rebuild_is_not_lost(self):
        # Another thread appends while this one builds the configuration:
        # the rebuild took its entries from the list after the build, so
        # they held the new model and the configuration did not, and no
        # call built again (UnknownModel for good).
        import llmroute.routing as routing
        cfgs = [{"name": "a"}]
        r = SequentialRouting(cfgs)
        real = routing._config

        def config_then_append(*args, **kwargs):
            c = real(*args, **kwargs)
            if len(cfgs) == 2:
                cfgs.append({"name": "c"})
            return c
        cfgs.append({"name": "b"})
        routing._config = config_then_append
        try:
            self.assertEqual(r.get_model_idxs(sel("b")), [1])
        finally:
            routing._config = real
        self.assertEqual(r.get_model_idxs(sel("c")), [2])

    def test_a_new_list_is_routed_over(self):
        r = SequentialRouting([{"name": "a"}, {"name": "b"}])
        r.llm_configs = [{"name": "z"}, {"name": "a"}]
        self.assertEqual(r.get_model_idxs(sel("a")), [1])
        self.assertEqual(r.get_model_idxs(None, 2), [0, 1])
        r.llm_configs = (c for c in [{"name": "y"}])  # a generator, read once
        self.assertEqual(r.get_model_idxs(None, 2), [0, 0])
        self.assertEqual(r.llm_configs, [{"name": "y"}])

    def test_a_bad_list_names_llm_configs_and_the_last_good_one_stays(self):
        cfgs = [{"name": "a"}, {"name": "b"}]
        r = SequentialRouting(cfgs)
        cfgs.append({"backend": "ollama"})
        with self.assertRaises(llmroute.ConfigError) as cm:
            r.get_model_idxs(sel("a", "b"))
        self.assertIn("SequentialRouting: llm_configs[2].name: missing", str(cm.exception))
        cfgs[2] = {"name": "c"}
        self.assertEqual(r.get_model_idxs(sel("c", "a")), [2])

    def test_the_cursor_carries_over(self):
        cfgs = [{"name": "a"}, {"name": "b"}]
        r = SequentialRouting(cfgs)
        self.assertEqual(r.get_model_idxs(sel("a", "b"), 3), [0, 1, 0])
        cfgs.append({"name": "c"})
        # Tickets 3 and 4: b, then b again of three.
        self.assertEqual(r.get_model_idxs(sel("a", "b")), [1])
        self.assertEqual(r.get_model_idxs(sel("a", "b", "c")), [1])
        r.get_model_idxs(sel("c"), 4)  # one candidate: no tickets
        r.llm_configs = cfgs + [{"name": "d"}]
        self.assertEqual(r.get_model_idxs([sel("a", "b", "c", "d")] * 4, [CHAT] * 4),
                         [1, 2, 3, 0])

    def test_the_cursor_carries_over_exactly_past_16_models(self):
        # The cursor was carried over to a rebuilt router modulo
        # lcm(1..16) = 720,720, which is no multiple of 17 or 20: past
        # 720,720 turns the new router went on from another model (turn 5
        # of 17 here, where the old one was at turn 10). Now the new router
        # is given the old one's cursor.
        cfgs = [{"name": "m%d" % i} for i in range(17)]
        r = SequentialRouting(cfgs)
        turns = 720720 + 5
        done = 0
        while done < turns:
            k = min(turns - done, 100000)
            self.assertEqual(r.get_model_idxs(None, k)[0], done % 17)
            done += k
        seventeen = sel(*("m%d" % i for i in range(17)))
        twenty = sel(*("m%d" % i for i in range(20)))
        cfgs.extend({"name": "m%d" % i} for i in range(17, 20))  # 20 models
        self.assertEqual(r.get_model_idxs(seventeen, 17), [(turns + i) % 17 for i in range(17)])
        turns += 17
        self.assertEqual(r.get_model_idxs(twenty, 40), [(turns + i) % 20 for i in range(40)])
        turns += 40
        r.llm_configs = cfgs + [{"name": "m20"}]  # 21 models: built again
        self.assertEqual(r.get_model_idxs([twenty] * 3, [CHAT] * 3),
                         [(turns + i) % 20 for i in range(3)])
        turns += 3
        self.assertEqual(r.get_model_idxs(None, 21), [(turns + i) % 21 for i in range(21)])
        self.assertEqual(r.router.sequential_cursor, turns + 21)

    def test_the_cursor_carries_over_an_empty_llm_configs(self):
        cfgs = [{"name": "a"}, {"name": "b"}, {"name": "c"}]
        r = SequentialRouting(cfgs)
        self.assertEqual(r.get_model_idxs(None, 4), [0, 1, 2, 0])
        r.llm_configs = []
        with self.assertRaises(llmroute.EmptyInput):
            r.get_model_idxs(None)
        r.llm_configs = cfgs + [{"name": "d"}, {"name": "e"}]
        self.assertEqual(r.get_model_idxs(None, 3), [4, 0, 1])

    def test_a_closed_router_is_replaced_when_llm_configs_changes(self):
        # Its cursor can no longer be read: the next router starts from
        # the cursor the closed one was given.
        cfgs = [{"name": "a"}, {"name": "b"}]
        r = SequentialRouting(cfgs)
        self.assertEqual(r.get_model_idxs(None, 3), [0, 1, 0])
        cfgs.append({"name": "c"})
        self.assertEqual(r.get_model_idxs(None), [0])  # built again, from ticket 3
        r.router.close()
        cfgs.append({"name": "d"})
        self.assertEqual(r.get_model_idxs(None, 2), [3, 0])

    def test_empty_llm_configs_until_a_model_is_registered(self):
        # AIOS's adapter builds its router even when no model started.
        cfgs = []
        r = SequentialRouting(cfgs)
        self.assertIsNone(r.config)
        for call in (lambda: r.get_model_idxs(None), lambda: r.get_model_idxs(sel("a"), 2),
                     lambda: r.get_model_idxs([None], [CHAT])):
            with self.assertRaises(llmroute.EmptyInput) as cm:
                call()
            self.assertIn("SequentialRouting.get_model_idxs: llm_configs is empty: there is "
                          "no model to route to yet", str(cm.exception))
        self.assertEqual(r.get_model_idxs([], []), [])
        cfgs.append(LLMConfig("a", "ollama"))
        self.assertEqual(r.get_model_idxs(sel("a")), [0])

    def test_no_queries_is_no_picks(self):
        r = SequentialRouting(MODELS)
        self.assertEqual(r.get_model_idxs([], []), [])
        self.assertEqual(r.get_model_idxs(selected_llm_lists=[], queries=[]), [])
        self.assertEqual(r.get_model_idxs(sel("a"), 0), [])
        with self.assertRaises(InvalidInput):  # still one list per query
            r.get_model_idxs([sel("a")], [])

    def test_none_is_every_model_for_a_lone_query_too(self):
        # [None] was InvalidType, while [None, [a]] took None as every model.
        r = SequentialRouting(MODELS)
        self.assertEqual(r.get_model_idxs([None], [CHAT]), [0])
        self.assertEqual(r.get_model_idxs([None, None], [CHAT, CHAT]), [1, 2])
        self.assertEqual(r.get_model_idxs(selected_llm_lists=[None], queries=[CHAT]), [0])
        with self.assertRaises(llmroute.EmptyInput):
            r.get_model_idxs([[]], [CHAT])

    def test_threads_route_while_models_are_registered(self):
        cfgs = [{"name": "m0"}, {"name": "m1"}]
        r = SequentialRouting(cfgs)
        stop = threading.Event()
        errors, picks = [], []

        def work():
            try:
                while not stop.is_set():
                    picks.extend(r.get_model_idxs(sel("m0", "m1")))
                    picks.extend(r.get_model_idxs(None, 3))
            except Exception as e:  # noqa: BLE001 (reported below)
                errors.append(e)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            for i in range(2, 30):
                cfgs.append({"name": "m%d" % i})
                self.assertEqual(r.get_model_idxs(sel("m%d" % i)), [i])
        finally:
            stop.set()
            for t in threads:
                t.join()
        self.assertEqual(errors, [])
        self.assertTrue(picks and all(0 <= i < 30 for i in picks))


class RouterCursorTest(unittest.TestCase):
    """Router.sequential_cursor: lr_router_sequential_cursor and
    lr_router_set_sequential_cursor."""

    def setUp(self):
        self.r = llmroute.Router(llmroute.Config({"models": MODELS}), strategy="sequential")

    def tearDown(self):
        self.r.close()

    def test_the_cursor_is_the_next_ticket_and_can_be_set(self):
        self.assertEqual(self.r.sequential_cursor, 0)
        self.assertEqual(self.r.route_indices(models=["a", "b", "c"], n=4), [0, 1, 2, 0])
        self.r.route_index(["b"])  # one candidate: no ticket
        self.assertEqual(self.r.sequential_cursor, 4)
        self.r.sequential_cursor = 11  # 11 % 3: c
        self.assertEqual(self.r.route_index(["a", "b", "c"]), 2)
        self.assertEqual(self.r.sequential_cursor, 12)

    def test_the_cursor_wraps_at_2_to_the_64(self):
        self.r.sequential_cursor = 2 ** 64 - 1
        self.assertEqual(self.r.sequential_cursor, 2 ** 64 - 1)
        self.assertEqual(self.r.route_indices(models=["a", "b"], n=3), [1, 0, 1])
        self.assertEqual(self.r.sequential_cursor, 2)

    def test_a_cursor_out_of_range_or_of_another_type_is_refused(self):
        self.r.sequential_cursor = 7
        for bad, cls in ((-1, InvalidInput), (2 ** 64, InvalidInput), (1.5, InvalidInput),
                         (True, InvalidType), ("3", InvalidType), (None, InvalidType)):
            with self.assertRaises(cls) as cm:
                self.r.sequential_cursor = bad
            self.assertIn("Router.sequential_cursor: expected a whole number", str(cm.exception))
        self.assertEqual(self.r.sequential_cursor, 7)

    def test_a_smart_router_has_no_cursor(self):
        with llmroute.Store(":memory:") as store:
            r = llmroute.Router(llmroute.Config({"models": MODELS}), strategy="smart",
                                store=store)
            try:
                for call in (lambda: r.sequential_cursor,
                             lambda: setattr(r, "sequential_cursor", 0)):
                    with self.assertRaises(llmroute.StrategyError) as cm:
                        call()
                    self.assertEqual(str(cm.exception),
                                     "the router's strategy is smart, which keeps no "
                                     "round-robin cursor (only a sequential router has one)")
            finally:
                r.close()

    def test_a_closed_router_is_refused(self):
        self.r.close()
        with self.assertRaisesRegex(InvalidInput, "the router is closed"):
            self.r.sequential_cursor
        with self.assertRaisesRegex(InvalidInput, "the router is closed"):
            self.r.sequential_cursor = 1


class SequentialThreadsTest(unittest.TestCase):
    def test_concurrent_threads_share_one_fair_cursor(self):
        r = SequentialRouting(MODELS)
        n_threads, per_thread = 8, 3000
        results = [None] * n_threads
        start = threading.Barrier(n_threads)

        def work(t):
            start.wait()
            out = []
            for i in range(per_thread):
                if i % 2:
                    out.extend(r.get_model_idxs(sel("a", "b", "c")))
                else:
                    out.extend(r.get_model_idxs(sel("a", "b", "c"), n_queries=1))
            results[t] = out

        threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        counts = collections.Counter(i for out in results for i in out)
        total = n_threads * per_thread
        self.assertEqual(sum(counts.values()), total)
        # Every ticket distinct: the three shares differ by at most one.
        self.assertLessEqual(max(counts.values()) - min(counts.values()), 1)

    def test_library_is_loaded_with_cdll_so_calls_release_the_gil(self):
        import ctypes
        from llmroute import _lib
        self.assertIsInstance(_lib.lib, ctypes.CDLL)
        self.assertNotIsInstance(_lib.lib, ctypes.PyDLL)
        # FUNCFLAG_PYTHONAPI (PyDLL) would keep the GIL held during the call.
        self.assertFalse(_lib.api.lr_router_route._flags_ & ctypes._FUNCFLAG_PYTHONAPI)


if __name__ == "__main__":
    unittest.main()
