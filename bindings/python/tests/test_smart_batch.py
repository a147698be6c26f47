"""The batch assignment (SmartRouting.route_batch, get_model_idxs_global):
the global problem AIOS's optimize_model_selection_global poses to CBC,
minimum total cost subject to mean predicted quality >= alpha, here with
per-model capacities as well, solved by lr_router_route_batch.

Every check uses the library's own predictions (SmartRouting.predict), so
the constraints are verified on the numbers the optimizer saw."""
import collections
import itertools
import unittest

import support  # noqa: F401  (puts the package on the path)
from support import SmartTestCase, group_fixture, priced

import llmroute
from llmroute import SmartRouting

NAMES = ["m0", "m1", "m2"]
PRICES = [(2e-7, 4e-7), (1e-6, 3e-6), (8e-6, 2.4e-5)]
CONFIGS = priced(NAMES, PRICES)
K = 6


def build(seed, n_groups=4, queries_per_group=6, **kw):
    records, queries, _ = group_fixture(seed, NAMES, group_size=K, n_groups=n_groups,
                                        queries_per_group=queries_per_group)
    r = SmartRouting(CONFIGS, n_similar=K, **kw)
    r.store.add_data(records)
    texts = [q[0] for q in queries]
    tokens = [q[2] for q in queries]
    return r, texts, tokens


def check_constraints(test, res, alpha, capacities=None):
    n = len(res.decisions)
    mean_q = sum(d.predicted_quality for d in res.decisions) / n
    # Tolerances allow for single-precision storage of the predictions.
    test.assertGreaterEqual(mean_q, alpha - 1e-6)
    test.assertAlmostEqual(res.mean_quality, mean_q, delta=1e-6)
    total = sum(d.estimated_cost for d in res.decisions)
    test.assertAlmostEqual(res.total_cost, total, delta=1e-6 * max(total, 1e-12))
    if capacities:
        load = collections.Counter(d.name for d in res.decisions)
        for name, cap in capacities.items():
            test.assertLessEqual(load[name], cap, name)


class BatchTest(SmartTestCase):
    def test_mean_quality_and_capacities_hold(self):
        r, texts, tokens = build(21)
        perf, _, cost = r.predict(texts, CONFIGS, tokens)
        # The per-query choices form a feasible assignment when alpha is
        # their mean quality and each capacity is their load, so the
        # optimum exists and costs no more than they do.
        per_query = r.get_model_idxs(CONFIGS, texts, tokens)
        alpha = sum(perf[i][j] for i, j in enumerate(per_query)) / len(texts) - 1e-6
        caps = dict(collections.Counter(NAMES[j] for j in per_query))
        for name in NAMES:
            caps.setdefault(name, 1)
        pq_cost = sum(cost[i][j] for i, j in enumerate(per_query))

        res = r.route_batch(CONFIGS, texts, tokens, alpha=alpha, capacities=caps)
        self.assertTrue(res.feasible, res.message)
        check_constraints(self, res, alpha, caps)
        self.assertLessEqual(res.total_cost, pq_cost * 1.01 + 1e-12)
        # Each decision's figures are the predictions for its model.
        for i, d in enumerate(res.decisions):
            self.assertAlmostEqual(d.predicted_quality, perf[i][d.index], delta=1e-6)
            self.assertAlmostEqual(d.estimated_cost, cost[i][d.index],
                                   delta=1e-6 * cost[i][d.index] + 1e-15)

        idxs = r.get_model_idxs_global(CONFIGS, texts, tokens, alpha=alpha, capacities=caps)
        self.assertEqual(len(idxs), len(texts))

    def test_cost_within_one_percent_of_the_exhaustive_optimum(self):
        r, texts, tokens = build(22, n_groups=4, queries_per_group=2)  # 8 queries, 3^8 plans
        perf, _, cost = r.predict(texts, CONFIGS, tokens)
        n = len(texts)
        for alpha, caps in ((0.5, None), (0.7, {"m2": 3}), (0.6, {"m0": 2, "m1": 4})):
            with self.subTest(alpha=alpha, capacities=caps):
                best = None
                for plan in itertools.product(range(3), repeat=n):
                    if sum(perf[i][j] for i, j in enumerate(plan)) < alpha * n - 1e-12:
                        continue
                    if caps and any(plan.count(NAMES.index(m)) > c for m, c in caps.items()):
                        continue
                    c = sum(cost[i][j] for i, j in enumerate(plan))
                    if best is None or c < best:
                        best = c
                res = r.route_batch(CONFIGS, texts, tokens, alpha=alpha, capacities=caps)
                if best is None:
                    self.assertFalse(res.feasible)
                    continue
                self.assertTrue(res.feasible, res.message)
                check_constraints(self, res, alpha, caps)
                self.assertLessEqual(res.total_cost, best * 1.01 + 1e-15)

    def test_default_alpha_is_the_performance_requirement(self):
        r, texts, tokens = build(23, performance_requirement=0.6)
        res = r.route_batch(CONFIGS, texts, tokens)
        if res.feasible:
            check_constraints(self, res, 0.6)
        else:
            perf, _, _ = r.predict(texts, CONFIGS, tokens)
            best = sum(max(row) for row in perf) / len(perf)
            self.assertLess(best, 0.6)

    def test_infeasible_alpha_is_reported_with_the_best_reachable(self):
        r, texts, tokens = build(24)
        perf, _, _ = r.predict(texts, CONFIGS, tokens)
        reachable = sum(max(row) for row in perf) / len(perf)
        alpha = min(1.0, reachable + 0.05)
        if reachable >= 1.0 - 1e-12:
            self.skipTest("every query has a model predicted always right")
        res = r.route_batch(CONFIGS, texts, tokens, alpha=alpha)
        self.assertFalse(res.feasible)
        self.assertTrue(res.message)
        self.assertEqual(len(res.decisions), len(texts))
        with self.assertRaises(llmroute.Infeasible) as cm:
            r.get_model_idxs_global(CONFIGS, texts, tokens, alpha=alpha)
        self.assertIsInstance(cm.exception, ValueError)
        self.assertEqual(len(cm.exception.result.indices), len(texts))

    def test_capacities_below_the_batch_size_are_infeasible(self):
        r, texts, tokens = build(25)
        caps = {"m0": 2, "m1": 2, "m2": 2}  # 6 places for 24 queries
        try:
            res = r.route_batch(CONFIGS, texts, tokens, alpha=0.0, capacities=caps)
        except ValueError as e:  # refused before optimizing is as good
            self.assertIn("capacit", str(e).lower())
        else:
            self.assertFalse(res.feasible)
            self.assertTrue(res.message)

    def test_capacity_from_llm_configs(self):
        records, queries, _ = group_fixture(26, NAMES, group_size=K, n_groups=4)
        configs = [dict(c) for c in CONFIGS]
        configs[0]["capacity"] = 3  # the cheapest model takes at most 3
        r = SmartRouting(configs, n_similar=K)
        r.store.add_data(records)
        texts = [q[0] for q in queries]
        res = r.route_batch(configs, texts, alpha=0.0)
        self.assertTrue(res.feasible, res.message)
        self.assertLessEqual(sum(1 for d in res.decisions if d.name == "m0"), 3)

    def test_budget_form(self):
        r, texts, tokens = build(27)
        _, _, cost = r.predict(texts, CONFIGS, tokens)
        cheapest = sum(min(row) for row in cost)
        budget = cheapest * 1.5
        res = r.route_batch(CONFIGS, texts, tokens, budget=budget)
        self.assertTrue(res.feasible, res.message)
        self.assertLessEqual(res.total_cost, budget * (1 + 1e-9))

    def test_unknown_model_in_capacities(self):
        r, texts, tokens = build(28)
        with self.assertRaises(llmroute.UnknownModel) as cm:
            r.route_batch(CONFIGS, texts, tokens, alpha=0.5, capacities={"gpt-9": 3})
        self.assertIn("SmartRouting.route_batch: capacities: unknown model 'gpt-9'",
                      str(cm.exception))

    def test_capacities_by_name_resolve_after_the_config_is_closed(self):
        # The names were looked up through the Config, which raised "the
        # configuration is closed" although the Router routes on over it.
        r, texts, tokens = build(32)
        config = llmroute.Config(llmroute.config_from_llm_configs(CONFIGS))
        router = llmroute.Router(config, strategy="smart", store=r.store._store, n_similar=K)
        config.close()
        res = router.route_batch(texts, input_tokens=tokens, mode="quality", alpha=0.0,
                                 capacities={"m0": 1, b"m1": 2})
        self.assertTrue(res.feasible, res.message)
        load = collections.Counter(d.name for d in res.decisions)
        self.assertEqual((load["m0"], load["m1"]), (1, 2))  # the cheapest first, as full
        self.assertEqual(load["m2"], len(texts) - 3)
        for name in ("gpt-9", b"gpt-9"):
            with self.assertRaises(llmroute.UnknownModel) as cm:
                router.route_batch(texts, input_tokens=tokens, mode="quality", alpha=0.0,
                                   capacities={name: 3})
            self.assertIn("Router.route_batch: capacities: unknown model 'gpt-9'",
                          str(cm.exception))
        router.close()

    def test_capacity_beyond_a_c_int_is_refused_not_wrapped(self):
        r, texts, tokens = build(29)
        with self.assertRaises(ValueError) as cm:  # would have wrapped to 1
            r.route_batch(CONFIGS, texts, tokens, alpha=0.5, capacities={"m0": 2 ** 32 + 1})
        self.assertIn("capacities['m0']", str(cm.exception))

    def test_nan_alpha_is_refused_not_taken_as_the_default(self):
        r, texts, tokens = build(30)
        with self.assertRaises(ValueError) as cm:
            r.route_batch(CONFIGS, texts, tokens, alpha=float("nan"))
        self.assertIn("alpha", str(cm.exception))

    def test_alpha_or_budget_out_of_range_names_the_method(self):
        # The library's refusal names the argument; Router.route_batch puts
        # itself before it, as in every other message about its arguments.
        r, texts, tokens = build(32)
        cases = [({"mode": "quality", "alpha": 1.5},
                  "Router.route_batch: alpha: expected a number from 0 to 1, got 1.5"),
                 ({"mode": "quality", "alpha": -0.25},
                  "Router.route_batch: alpha: expected a number from 0 to 1, got -0.25"),
                 ({"mode": "budget", "budget": -1.0},
                  "Router.route_batch: budget: expected a number from 0 to"),
                 ({"mode": "budget", "budget": float("inf")},
                  "Router.route_batch: budget: expected a number from 0 to"),
                 ({"mode": "budget", "budget": float("nan")},
                  "Router.route_batch: budget: expected a number, got NaN"),
                 ({"mode": "budget", "budget": 1.0, "alpha": 0.5},
                  "Router.route_batch: alpha: the budget mode takes none")]
        for kw, want in cases:
            with self.assertRaises(llmroute.InvalidInput) as cm:
                r.router.route_batch(texts, input_tokens=tokens, **kw)
            self.assertTrue(str(cm.exception).startswith(want), (kw, str(cm.exception)))
        # The AIOS method says it in its own name, once.
        with self.assertRaises(llmroute.InvalidInput) as cm:
            r.route_batch(CONFIGS, texts, tokens, alpha=1.5)
        self.assertEqual(str(cm.exception), "SmartRouting.route_batch: alpha: expected a "
                         "number from 0 to 1, got 1.5")

    def test_alpha_and_budget_together_are_refused(self):
        # Each form has one constraint: the other value was ignored without
        # a word (alpha=0.99 with a budget gave the budget's assignment).
        r, texts, tokens = build(31)
        with self.assertRaises(ValueError) as cm:
            r.route_batch(CONFIGS, texts, tokens, alpha=0.99, budget=1.0)
        self.assertIn("alpha: the budget mode takes none", str(cm.exception))
        self.assertIn("give alpha or budget, not both", str(cm.exception))
        with self.assertRaises(ValueError) as cm:
            r.router.route_batch(texts, input_tokens=tokens, mode="quality", alpha=0.5,
                                 budget=1.0)
        self.assertIn("budget: the quality mode takes none", str(cm.exception))
        # Either one alone still works.
        self.assertTrue(r.route_batch(CONFIGS, texts, tokens, budget=1.0).feasible)


if __name__ == "__main__":
    unittest.main()
