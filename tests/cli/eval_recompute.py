#!/usr/bin/env python3
"""Recompute `llmroute eval`'s figures from the data alone and compare.

usage: eval_recompute.py DATA CONFIG EVAL_JSON EVAL_CSV [SPLIT]

DATA is the file eval scored (a JSON array or JSON lines), CONFIG its
config, EVAL_JSON and EVAL_CSV its --format json and csv output of one run,
SPLIT its --split. Every row that does not depend on predictions is
recomputed here, as README defines it, and compared: each single model,
random (the expectation), random-draw:N (xorshift64 from N), sequential
(round-robin over the candidates in config order, from the first), the
oracle (the highest correctness, then the cheapest, then the first in the
config) and the task ceiling (its linear programme's value through the
dual; its cost its budget, or where the budget buys the most success there
is, the least cost of that). The smart rows depend on predictions: their
shares must be whole queries, and their success and cost within what an
assignment of those counts can reach. The frontier marks and versus_single
are recomputed from the rows' figures. The JSON's fields must be the
documented ones, and the CSV must carry the JSON's values, field by field.
Prints each difference; exit 1 if any.
Python's standard library only.
"""
import csv
import json
import sys

data_path, cfg_path, json_path, csv_path = sys.argv[1:5]
split = sys.argv[5] if len(sys.argv) > 5 else None

text = open(data_path, encoding="utf-8").read()
try:
    recs = json.loads(text)
except ValueError:
    recs = [json.loads(line) for line in text.splitlines() if line.strip()]
if split is not None:
    recs = [r for r in recs if r.get("split") == split]
cfg = json.load(open(cfg_path))
price = {m["name"]: (m["cost_per_input_token"], m["cost_per_output_token"]) for m in cfg["models"]}

# Candidates: the configured models with outcomes in the data, in config
# order; scored: the records with an outcome of every candidate.
in_data = {o["model_name"] for r in recs for o in r["outputs"]}
cands = [m["name"] for m in cfg["models"] if m["name"] in in_data]


def in_tokens(r):
    t = r.get("input_token_length")
    if t is None:  # one token per four bytes of the query, rounded up
        return (len(r["query"].encode("utf-8")) + 3) // 4
    return int(t)


def outcome(r, m):
    for o in r["outputs"]:
        if o["model_name"] == m:
            c = o["correctness"]
            c = float(c) if not isinstance(c, bool) else (1.0 if c else 0.0)
            return c, in_tokens(r) * price[m][0] + o["output_token_length"] * price[m][1]
    return None


scored = [r for r in recs if all(outcome(r, m) is not None for m in cands)]
N, K = len(scored), len(cands)
OK = [[outcome(r, m)[0] for m in cands] for r in scored]
COST = [[outcome(r, m)[1] for m in cands] for r in scored]


def assign(slots):
    """Success, cost and shares of one candidate slot per scored record."""
    s = sum(OK[i][slots[i]] for i in range(N)) / N
    c = sum(COST[i][slots[i]] for i in range(N))
    return s, c, {m: sum(1 for x in slots if x == j) / N for j, m in enumerate(cands)}


res = json.load(open(json_path))
errors = []


def close(a, b, rel=1e-12):
    return a == b or abs(a - b) <= rel * max(abs(a), abs(b))


want = {"single:" + m: assign([j] * N) for j, m in enumerate(cands)}
want["sequential"] = assign([i % K for i in range(N)])
oracle = []
for i in range(N):
    best = 0
    for j in range(1, K):
        if OK[i][j] > OK[i][best] or (OK[i][j] == OK[i][best] and COST[i][j] < COST[i][best]):
            best = j
    oracle.append(best)
want["oracle"] = assign(oracle)
want["random"] = (sum(sum(row) / K for row in OK) / N, sum(sum(row) / K for row in COST),
                  {m: 1 / K for m in cands})
for r in res["results"]:
    if r["strategy"].startswith("random-draw:"):
        x, slots = int(r["strategy"].split(":")[1]), []
        for i in range(N):
            x ^= (x << 13) & 0xFFFFFFFFFFFFFFFF
            x ^= x >> 7
            x ^= (x << 17) & 0xFFFFFFFFFFFFFFFF
            slots.append(x % K)
        want[r["strategy"]] = assign(slots)


# Each task's total real success and cost per candidate (the task ceiling's
# inputs; a record without a label is in task None, and then eval prints no
# ceiling).
tasks = {}
for i, r in enumerate(scored):
    tasks.setdefault(r.get("task") or r.get("eval_name"), []).append(i)
S = {t: [sum(OK[i][j] for i in ix) for j in range(K)] for t, ix in tasks.items()}
C = {t: [sum(COST[i][j] for i in ix) for j in range(K)] for t, ix in tasks.items()}


def ceiling(budget):
    """(success rate, cheapest cost, feasible) of the task ceiling: the
    linear programme max sum x_tm S_tm, sum x_tm C_tm <= B, each task's x
    a distribution over the models, by its dual: min over lam >= 0 of
    lam B + sum_t max_m (S_tm - lam C_tm), convex and piecewise linear, so
    least at 0 or where two of a task's lines cross."""
    cheapest = sum(min(C[t]) for t in tasks)
    if budget < cheapest * (1 - 1e-12):  # the cheapest choice, the best of equal cost
        return sum(max(S[t][j] for j in range(K) if C[t][j] == min(C[t])) for t in tasks) / N, \
            cheapest, False
    lams = {0.0}
    for t in tasks:
        for a in range(K):
            for b in range(K):
                if C[t][a] != C[t][b] and (S[t][a] - S[t][b]) / (C[t][a] - C[t][b]) > 0:
                    lams.add((S[t][a] - S[t][b]) / (C[t][a] - C[t][b]))
    dual = min(lam * budget + sum(max(S[t][j] - lam * C[t][j] for j in range(K)) for t in tasks)
               for lam in lams)
    return dual / N, cheapest, True


def best_mix():
    """(success rate, cost) of every task on its most successful model, the
    cheapest of those that tie: the most success any budget buys, at the
    least cost it takes."""
    top = {t: max(S[t]) for t in tasks}
    return (sum(top.values()) / N,
            sum(min(C[t][j] for j in range(K) if S[t][j] == top[t]) for t in tasks))


if res["queries"] != N:
    errors.append("queries: eval %s, recomputed %d" % (res["queries"], N))
first = {}
for r in res["results"]:
    first.setdefault(r["strategy"], r)
for name, (s, c, share) in want.items():
    r = first.get(name)
    if r is None:
        errors.append("%s: no such row" % name)
        continue
    if not close(r["success_rate"], s):
        errors.append("%s success_rate: eval %r, recomputed %r" % (name, r["success_rate"], s))
    if not close(r["total_cost"], c):
        errors.append("%s total_cost: eval %r, recomputed %r" % (name, r["total_cost"], c))
    if sorted(r["model_share"]) != sorted(cands) or \
            any(not close(r["model_share"][m], share[m]) for m in cands):
        errors.append("%s model_share: eval %r, recomputed %r" % (name, r["model_share"], share))

for r in res["results"]:
    if r["strategy"] != "task-ceiling":
        continue
    s, cheapest, feasible = ceiling(r["budget"])
    tag = "task-ceiling at %r" % r["budget"]
    if r["feasible"] is not feasible or not close(r["success_rate"], s, 1e-9):
        errors.append("%s: eval %r (feasible %r), recomputed %r (feasible %r)"
                      % (tag, r["success_rate"], r["feasible"], s, feasible))
    if feasible and (r["total_cost"] > r["budget"] or r["within_budget"] is not True):
        errors.append("%s: costs %r, within %r" % (tag, r["total_cost"], r["within_budget"]))
    if not feasible and not close(r["total_cost"], cheapest, 1e-9):
        errors.append("%s: costs %r, the cheapest choice %r" % (tag, r["total_cost"], cheapest))
    if abs(sum(r["model_share"].values()) - 1) > 1e-9:
        errors.append("%s: shares sum to %r" % (tag, sum(r["model_share"].values())))
    # Below the best mix's cost the ceiling spends its budget (exactly, where
    # a task is split: a fraction of a query moved); at or above it, it is
    # the best mix, which costs no more than it must.
    top_s, top_c = best_mix()
    split = any(abs(v * N - round(v * N)) > 1e-6 for v in r["model_share"].values())
    if feasible and r["budget"] >= top_c:
        if not close(r["success_rate"], top_s, 1e-9) or not close(r["total_cost"], top_c, 1e-9):
            errors.append("%s: %r at %r, the best mix %r at %r"
                          % (tag, r["success_rate"], r["total_cost"], top_s, top_c))
    elif feasible and (not close(r["total_cost"], r["budget"], 1e-9) or
                       split and r["total_cost"] != r["budget"]):
        errors.append("%s: costs %r, not its budget" % (tag, r["total_cost"]))

# Smart rows: whole queries per model, and figures that an assignment of
# those counts can reach (between each model's worst and best queries).
for r in res["results"]:
    if r["predictor"] is None:
        continue
    tag = "%s (%s) alpha %r budget %r" % (r["strategy"], r["predictor"], r["alpha"], r["budget"])
    counts = {m: r["model_share"][m] * N for m in cands}
    if any(abs(q - round(q)) > 1e-6 for q in counts.values()) or \
            round(sum(counts.values())) != N:
        errors.append("%s: shares are not whole queries: %r" % (tag, counts))
        continue
    lo_s = hi_s = lo_c = hi_c = 0.0
    for j, m in enumerate(cands):
        k = int(round(counts[m]))
        ok, cost = sorted(OK[i][j] for i in range(N)), sorted(COST[i][j] for i in range(N))
        lo_s, hi_s = lo_s + sum(ok[:k]), hi_s + sum(ok[N - k:] if k else [])
        lo_c, hi_c = lo_c + sum(cost[:k]), hi_c + sum(cost[N - k:] if k else [])
    if not lo_s / N - 1e-12 <= r["success_rate"] <= hi_s / N + 1e-12:
        errors.append("%s: success %r outside [%r, %r]" % (tag, r["success_rate"], lo_s / N, hi_s / N))
    if not lo_c * (1 - 1e-12) <= r["total_cost"] <= hi_c * (1 + 1e-12):
        errors.append("%s: cost %r outside [%r, %r]" % (tag, r["total_cost"], lo_c, hi_c))


# frontier: exactly the smart rows that no smart row of the same predictor
# beats (at least as good in success and real cost, better in one).
def beats(o, r):
    return (o["total_cost"] <= r["total_cost"] and o["success_rate"] >= r["success_rate"] and
            (o["total_cost"] < r["total_cost"] or o["success_rate"] > r["success_rate"]))


for r in res["results"]:
    want_front = r["predictor"] is not None and not any(
        o is not r and o["predictor"] == r["predictor"] and beats(o, r) for o in res["results"])
    if r["frontier"] is not want_front:
        errors.append("%s (%s) alpha %r budget %r: frontier %r, recomputed %r"
                      % (r["strategy"], r["predictor"], r["alpha"], r["budget"], r["frontier"],
                         want_front))

# versus_single: each single model beside the point of the swept
# predictor's frontier with the most success at no more real cost (the
# cheapest of those), named by its row's strategy, alpha and budget.
swept = {r["predictor"] for r in res["results"] if r["sweep"] and r["predictor"]}
for v in res.get("versus_single", []):
    s = first["single:" + v["model"]]
    pts = [r for r in res["results"] if r["frontier"] and r["predictor"] in swept and
           r["total_cost"] <= s["total_cost"]]
    best = max(((r["success_rate"], -r["total_cost"]) for r in pts), default=None)
    named = [r for r in pts if (r["strategy"], r["alpha"], r["budget"]) ==
             (v["frontier_strategy"], v["frontier_alpha"], v["frontier_budget"])]
    if best is None:
        ok = all(v[k] is None for k in ("frontier_strategy", "frontier_alpha", "frontier_budget",
                                         "frontier_success_rate", "frontier_total_cost"))
        rel = "below"
    else:
        ok = (any((r["success_rate"], -r["total_cost"]) == best for r in named) and
              (v["frontier_success_rate"], -v["frontier_total_cost"]) == best)
        rel = ("below" if best[0] < s["success_rate"] else "higher" if best[0] > s["success_rate"]
               else "cheaper" if -best[1] < s["total_cost"] else "same")
    if not ok or v["relation"] != rel or v["above"] is not (rel != "below"):
        errors.append("versus_single %s: %r, recomputed %r (%s)" % (v["model"], v, best, rel))

# The documented fields, in order.
FIELDS = ["strategy", "predictor", "alpha", "budget", "frontier", "sweep", "feasible",
          "success_rate", "total_cost", "predicted_cost", "within_budget", "predicted_quality",
          "model_share", "decision_timing", "decision_us_p50", "decision_us_p99"]
VERSUS = ["model", "success_rate", "total_cost", "frontier_strategy", "frontier_alpha",
          "frontier_budget", "frontier_success_rate", "frontier_total_cost", "above", "relation"]
top = ["queries", "queries_in_store", "results"] + (["versus_single"] if "versus_single" in res else [])
if list(res) != top:
    errors.append("top level: %r" % list(res))
errors += ["result fields: %r" % list(r) for r in res["results"] if list(r) != FIELDS][:1]
errors += ["versus_single fields: %r" % list(v) for v in res.get("versus_single", [])
           if list(v) != VERSUS][:1]

# The CSV: the same rows and figures, each reading back as the JSON's.
rows = list(csv.DictReader(open(csv_path, newline="")))
if list(rows[0]) != [f for f in FIELDS if f != "model_share"] + ["share:" + m for m in cands]:
    errors.append("csv columns: %r" % list(rows[0]))
if [c["strategy"] for c in rows] != [r["strategy"] for r in res["results"]]:
    errors.append("csv rows: %r" % [c["strategy"] for c in rows])


def csv_reads_as(text, value):
    """Whether a CSV field says what the JSON's value does: empty for null,
    1 and 0 for true and false, a number that reads back as the same double."""
    if value is None or isinstance(value, (bool, str)):
        return text == {None: "", True: "1", False: "0"}.get(value, value)
    return text != "" and float(text) == value


for c, r in zip(rows, res["results"]):
    # Every field but the decision times, which the two runs took apart:
    # of those, only whether there is one.
    fields = [f for f in FIELDS if f not in ("model_share", "decision_us_p50", "decision_us_p99")]
    figures = [(f, c[f], r[f]) for f in fields]
    figures += [("share:" + m, c["share:" + m], r["model_share"][m]) for m in cands]
    wrong = [x for x in figures if not csv_reads_as(x[1], x[2])]
    wrong += [(f, c[f], r[f]) for f in ("decision_us_p50", "decision_us_p99")
              if (c[f] == "") != (r[f] is None)]
    if wrong:
        errors.append("csv %s: %r against the json's" % (c["strategy"], wrong))

for e in errors:
    print("DIFF:", e)
print("%d scored queries, %d candidates; %d rows recomputed, %d smart rows bounded, %d differences"
      % (N, K, len(want) + sum(r["strategy"] == "task-ceiling" for r in res["results"]),
         sum(r["predictor"] is not None for r in res["results"]), len(errors)))
sys.exit(1 if errors else 0)
