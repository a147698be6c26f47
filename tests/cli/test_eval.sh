#!/usr/bin/env bash
# End-to-end tests of `llmroute import` and `llmroute eval` on a small
# synthetic fixture made here: imports, bad data that must leave the store as
# it was, and eval's scores checked against an independent computation.
#   usage: test_eval.sh /path/to/llmroute /path/to/source
set -u
BIN=$1
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
. "$(dirname "$0")/lib.sh"


# A fixture: three topics; "strong" is right on all, costly; "cheap" is right
# on arithmetic only; "mid" on arithmetic and geography.
python3 - "$TMP" <<'PY'
import json, random, sys
out = sys.argv[1]
random.seed(7)
topics = {
    "math": ["What is %d plus %d?" % (a, b) for a in range(1, 30) for b in range(1, 4)],
    "geo": ["Which river flows through the capital city number %d of the atlas?" % i for i in range(87)],
    "code": ["Write a python function named f%d that sorts a list of integers" % i for i in range(87)],
}
right = {"strong": {"math", "geo", "code"}, "mid": {"math", "geo"}, "cheap": {"math"}}
length = {"strong": 40, "mid": 30, "cheap": 20}
recs = []
for topic, qs in topics.items():
    for i, q in enumerate(qs):
        recs.append({"query": q, "input_token_length": 12, "split": "train" if i % 3 else "test",
                     "eval_name": topic,
                     "outputs": [{"model_name": m, "correctness": topic in right[m],
                                  "output_token_length": length[m]} for m in right]})
json.dump(recs, open(out + "/data.json", "w"))
with open(out + "/data.jsonl", "w") as f:
    for r in recs:
        f.write(json.dumps(r) + "\n")
cfg = {"models": [
    {"name": "strong", "cost_per_input_token": 1e-5, "cost_per_output_token": 3e-5},
    {"name": "mid", "cost_per_input_token": 1e-6, "cost_per_output_token": 2e-6},
    {"name": "cheap", "cost_per_input_token": 1e-7, "cost_per_output_token": 2e-7},
    {"name": "unused", "cost_per_input_token": 0, "cost_per_output_token": 0}],
    "router": {"strategy": "smart", "n_similar": 8}}
json.dump(cfg, open(out + "/cfg.json", "w"))
noprice = dict(cfg, models=[dict(m) for m in cfg["models"]])
del noprice["models"][1]["cost_per_output_token"]
json.dump(noprice, open(out + "/noprice.json", "w"))
PY

# --- import ---
expect "import train split" 0 "imported 174 of 261 records (87 in other splits)" -- \
    "$BIN" import --store "$TMP/h.db" --split train "$TMP/data.json"
[ "$(count "$TMP/h.db")" = "$TMP/h.db: 174 records" ] && ok || bad "store count after import"

# Bad data leaves the store as it was.
head -c 3000 "$TMP/data.json" >"$TMP/trunc.json"
expect "truncated file" 1 "trunc.json" -- \
    "$BIN" import --store "$TMP/h.db" "$TMP/trunc.json"
grep -qF "nothing imported" "$TMP/err" && grep -qF "end of input" "$TMP/err" && ok || bad "truncated file: says where and that nothing was imported"
[ "$(count "$TMP/h.db")" = "$TMP/h.db: 174 records" ] && ok || bad "store changed by a truncated file"
python3 - "$TMP" <<'PY'
import json, sys
out = sys.argv[1]
recs = [json.loads(l) for l in open(out + "/data.jsonl")][:5]
recs[2]["outputs"][1]["output_token_length"] = "thirty"
with open(out + "/typo.jsonl", "w") as f:
    for r in recs:
        f.write(json.dumps(r) + "\n")
PY
cp "$TMP/h.db" "$TMP/h.copy"
expect "strict import of a bad record" 1 "record 2 (line 3): outputs[1].output_token_length" -- \
    "$BIN" import --store "$TMP/h.db" --strict "$TMP/typo.jsonl"
[ "$(count "$TMP/h.db")" = "$TMP/h.db: 174 records" ] && ok || bad "store changed by a strict failure"
cmp -s "$TMP/h.db" "$TMP/h.copy" && ok || bad "store file changed by a strict failure"
rm -f "$TMP/h.copy"
# With several files, the message says which one the bad record is in, and
# only that file is left out.
expect "strict import names the file" 1 "typo.jsonl: record 2 (line 3)" -- \
    "$BIN" import --store "$TMP/m.db" --strict "$TMP/data.jsonl" "$TMP/typo.jsonl"
[ "$(count "$TMP/m.db")" = "$TMP/m.db: 261 records" ] && ok || bad "a strict failure changed the store beyond its good file"
expect "lenient import skips the bad record" 0 "imported 4 of 5 records, skipped 1 bad" -- \
    "$BIN" import --store "$TMP/h2.db" "$TMP/typo.jsonl"
expect "import with no data creates the store" 0 "empty.db: 0 records" -- "$BIN" import --store "$TMP/empty.db"
expect "import needs --store" 2 "--store FILE is required" -- "$BIN" import "$TMP/data.json"
expect "import of a missing file" 1 "/nonexistent.json" -- "$BIN" import --store "$TMP/h.db" /nonexistent.json
# An array element that is not an object is a bad record, as eval has it:
# skipped and counted, or with --strict the whole file fails.
R='{"query": "q", "outputs": [{"model_name": "m", "correctness": 1, "output_token_length": 3}]}'
printf '[%s, 5, %s]\n' "$R" "$R" >"$TMP/arr.json"
expect "import skips an element that is not an object" 0 \
    "imported 2 of 3 records, skipped 1 bad (first: record 1 (line 1): expected an object)" -- \
    "$BIN" import --store "$TMP/arr.db" "$TMP/arr.json"
expect "strict import of an element that is not an object" 1 \
    "arr.json: record 1 (line 1): expected an object" -- \
    "$BIN" import --store "$TMP/arr.db" --strict "$TMP/arr.json"
[ "$(count "$TMP/arr.db")" = "$TMP/arr.db: 2 records" ] && ok || bad "strict import added records"

# --- smart routing from the store ---
# AIOS's rule with plain means: the arithmetic neighbours are all right for
# "cheap", so the cheapest model meeting 0.7 is "cheap".
"$BIN" route --config "$TMP/cfg.json" --store "$TMP/h.db" --models strong,mid,cheap --json \
    --predictor aios "What is 31 plus 2?" >"$TMP/route.json" 2>"$TMP/err"
rc=$?
[ $rc -eq 0 ] && ok || bad "smart route (aios): exit $rc: $(cat "$TMP/err")"
python3 - "$TMP/route.json" <<'PY' && ok || bad "smart route (aios) picks the cheap model for arithmetic: $(cat "$TMP/route.json" "$TMP/err")"
import json, sys
d = json.loads(open(sys.argv[1]).read())
assert d["model"] == "cheap", d
assert d["strategy"] == "smart"
assert d["predicted_quality"] >= 0.7, d
assert all(c["estimated_cost"] is not None for c in d["ranking"]), d
PY
# The default predictor shrinks toward each model's mean, but still finds a
# model that meets the requirement well below the strong model's price.
"$BIN" route --config "$TMP/cfg.json" --store "$TMP/h.db" --models strong,mid,cheap --json \
    "Write a python function named g5 that sorts a list of integers" "What is 31 plus 2?" >"$TMP/route.json" 2>"$TMP/err"
rc=$?
[ $rc -eq 0 ] && ok || bad "smart route (default): exit $rc: $(cat "$TMP/err")"
python3 - "$TMP/route.json" <<'PY' && ok || bad "smart route (default): $(cat "$TMP/route.json" "$TMP/err")"
import json, sys
code, math = (json.loads(l) for l in open(sys.argv[1]).read().splitlines())
assert code["model"] == "strong", code  # only strong writes code
assert math["model"] != "strong" and math["predicted_quality"] >= 0.7, math
PY
# Without --batch, --alpha is the per-query requirement: at 0.99 only the
# model that is right everywhere qualifies.
out=$("$BIN" route --config "$TMP/cfg.json" --store "$TMP/h.db" --models strong,mid,cheap \
      --alpha 0.99 "What is 31 plus 2?" 2>&1)
rc=$?
[ $rc -eq 0 ] && [ "$out" = "strong" ] && ok ||
    bad "route --alpha as the requirement: exit $rc, got [$out]"
expect "smart route with a model without price" 2 "model 'mid' has no cost_per_output_token" -- \
    "$BIN" route --config "$TMP/noprice.json" --store "$TMP/h.db" --models strong,mid "What is 1 plus 1?"
expect "smart route with one unpriced candidate passes it through" 0 "" -- \
    "$BIN" route --config "$TMP/noprice.json" --store "$TMP/h.db" --models mid "What is 1 plus 1?"
expect "smart route with a store that does not exist" 2 "does not exist: create it" -- \
    "$BIN" route --config "$TMP/cfg.json" --store "$TMP/none.db" "What is 1 plus 1?"
expect "smart route with an empty store" 2 "the history store is empty" -- \
    "$BIN" route --config "$TMP/cfg.json" --store "$TMP/empty.db" "What is 1 plus 1?"
# A batch names its bad query as a route without --batch does: from 1.
expect "route names a bad query by its place" 2 "query 3: argument 3 is empty" -- \
    "$BIN" route --config "$TMP/cfg.json" --store "$TMP/h.db" "What is 1 plus 1?" "x" ""
expect "route --batch names a bad query by its place" 2 "query 3: argument 3 is empty" -- \
    "$BIN" route --config "$TMP/cfg.json" --store "$TMP/h.db" --batch "What is 1 plus 1?" "x" ""
# A batch has one constraint: --alpha (least cost at that mean quality) or
# --budget (most quality within it). Both given, --alpha was dropped without
# a word and the budget's assignment printed.
expect "route --batch with --alpha and --budget" 2 "give --alpha or --budget with --batch, not both" -- \
    "$BIN" route --config "$TMP/cfg.json" --store "$TMP/h.db" --batch --alpha 0.99 --budget 1 \
    "What is 1 plus 1?" "x"
[ ! -s "$TMP/out" ] && ok || bad "route --batch with both printed an assignment: $(cat "$TMP/out")"

# --- eval ---
"$BIN" eval --config "$TMP/cfg.json" --store "$TMP/h.db" --data "$TMP/data.json" --split test \
    --alpha 0.7,0.9 --budget 0.01 --sweep --format json --plot "$TMP/plot.svg" >"$TMP/eval.json" 2>"$TMP/err"
rc=$?
[ $rc -eq 0 ] && ok || bad "eval exit $rc: $(cat "$TMP/err")"
grep -qF "model 'unused' has no outcomes" "$TMP/err" && ok || bad "eval warns about a model without data"
# Each check below reads the JSON through this prelude.
cat >"$TMP/prelude.py" <<'PY'
import json, sys
out = sys.argv[1]
res = json.load(open(out + "/eval.json"))
data = [r for r in json.load(open(out + "/data.json")) if r["split"] == "test"]
rows = {}
for r in res["results"]:  # the first row of each kind: the given one before a swept one
    rows.setdefault((r["strategy"], r["predictor"], r["alpha"]), r)
price = {"strong": (1e-5, 3e-5), "mid": (1e-6, 2e-6), "cheap": (1e-7, 2e-7)}
def real(r, m):
    o = [o for o in r["outputs"] if o["model_name"] == m][0]
    return float(o["correctness"]), r["input_token_length"] * price[m][0] + o["output_token_length"] * price[m][1]
PY
python3 - "$TMP" <<'PY' && ok || bad "eval json scores"
import sys
exec(open(sys.argv[1] + "/prelude.py").read())
assert res["queries"] == len(data) == 87, res["queries"]
# The store holds the train split only: no scored query is in it.
assert res["queries_in_store"] == 0, res["queries_in_store"]
for m in price:
    row = rows[("single:" + m, None, None)]
    s = sum(real(r, m)[0] for r in data) / len(data)
    c = sum(real(r, m)[1] for r in data)
    assert abs(row["success_rate"] - s) < 1e-12 and abs(row["total_cost"] - c) <= 1e-12 * c, (m, row, s, c)
    assert row["model_share"][m] == 1.0
# The oracle: cheapest correct model everywhere; success 1 on this fixture.
orc = rows[("oracle", None, None)]
oc = sum(min(real(r, m)[1] for m in price if real(r, m)[0] == 1) for r in data)
assert orc["success_rate"] == 1.0 and abs(orc["total_cost"] - oc) <= 1e-12 * oc, orc
# Smart per query at 0.7 must beat the single strong model on cost at equal success here.
sm = rows[("smart", "default", 0.7)]
strong = rows[("single:strong", None, None)]
assert sm["success_rate"] >= 0.95 and sm["total_cost"] < strong["total_cost"] / 2, sm
assert sm["decision_us_p50"] is not None and sm["decision_us_p50"] > 0
assert ("smart", "aios", 0.7) in rows
b = rows[("smart-batch", "default", 0.9)]
assert b["feasible"] is True and b["predicted_quality"] >= 0.9 - 1e-9, b
assert any(r["strategy"] == "smart-budget" and r["budget"] == 0.01 for r in res["results"])
PY
python3 - "$TMP" <<'PY' && ok || bad "eval json: a total cost reads back as the exact sum"
import sys
exec(open(sys.argv[1] + "/prelude.py").read())
# A single model's total cost is the sum of its records' costs, added in the
# data's order as here: it must read back as that very double. At 15 digits
# strong's 0.11484000000000012 printed as 0.11484, another number.
for m in price:
    row = rows[("single:" + m, None, None)]
    assert row["total_cost"] == sum(real(r, m)[1] for r in data), (m, row["total_cost"])
PY
python3 - "$TMP" <<'PY' && ok || bad "eval random is the expectation of a uniform choice"
import sys
exec(open(sys.argv[1] + "/prelude.py").read())
# random is the exact expectation of a uniform choice per query, by hand:
# each query's mean over the three models, and a third of the queries each.
rnd = rows[("random", None, None)]
es = sum(sum(real(r, m)[0] for m in price) / 3 for r in data) / len(data)
ec = sum(sum(real(r, m)[1] for m in price) / 3 for r in data)
assert abs(rnd["success_rate"] - es) < 1e-12 and abs(rnd["total_cost"] - ec) <= 1e-12 * ec, (rnd, es, ec)
assert all(abs(v - 1 / 3) < 1e-12 for v in rnd["model_share"].values()), rnd
assert not any(r["strategy"].startswith("random-draw") for r in res["results"])
PY
python3 - "$TMP" <<'PY' && ok || bad "eval predicted_cost and within_budget"
import sys
exec(open(sys.argv[1] + "/prelude.py").read())
# Smart rows carry the router's predicted total cost beside the real one;
# the others have none. A budget caps the predicted cost, and within_budget
# compares the real one, for the rows with a budget only.
for r in res["results"]:
    smart = r["predictor"] is not None
    assert (r["predicted_cost"] is not None) == smart, r
    if r["budget"] is None:
        assert r["within_budget"] is None, r
    else:
        assert r["within_budget"] == (r["total_cost"] <= r["budget"]), r
        if r["strategy"] == "smart-budget" and r["feasible"]:
            assert r["predicted_cost"] <= r["budget"] * (1 + 1e-12), r
PY
python3 - "$TMP" <<'PY' && ok || bad "eval decision_timing: percentiles per query, a mean per batch"
import sys
exec(open(sys.argv[1] + "/prelude.py").read())
# Timing: per query, p50 and p99 are percentiles of single decisions; a batch
# is timed whole, so p50 is its time per query and there is no p99.
for r in res["results"]:
    if r["strategy"] in ("smart-batch", "smart-budget"):
        assert r["decision_timing"] == "batch_mean" and r["decision_us_p50"] > 0, r
        assert r["decision_us_p99"] is None, r
    elif r["strategy"] in ("smart", "sequential"):
        assert r["decision_timing"] == "per_query", r
        assert 0 <= r["decision_us_p50"] <= r["decision_us_p99"], r
    else:
        assert r["decision_timing"] is None and r["decision_us_p50"] is None, r
PY
python3 - "$TMP" <<'PY' && ok || bad "eval frontier and sweep flags"
import sys
exec(open(sys.argv[1] + "/prelude.py").read())
# frontier: exactly the smart rows that no smart row of the same predictor
# dominates (at least as good in success and real cost, better in one).
def dominated(r):
    return any(o is not r and o["predictor"] == r["predictor"] and
               o["total_cost"] <= r["total_cost"] and o["success_rate"] >= r["success_rate"] and
               (o["total_cost"] < r["total_cost"] or o["success_rate"] > r["success_rate"])
               for o in res["results"])
for r in res["results"]:
    assert r["frontier"] == (r["predictor"] is not None and not dominated(r)), r
frontier = [r for r in res["results"] if r["frontier"] and r["predictor"] == "default"]
assert len(frontier) >= 2 and any(r["frontier"] and r["predictor"] == "aios" for r in res["results"])
# On this fixture some swept rows are dominated: the flag is not "made by
# --sweep".
assert any(r["sweep"] and not r["frontier"] for r in res["results"] if r["predictor"])
# --sweep: its rows are marked sweep: the batch at alpha 0.50..0.98 and the
# budget form at each single model's real cost (first predictor), and the
# task ceiling at those costs; no other row.
singles = {r["strategy"][7:]: r for r in res["results"] if r["strategy"].startswith("single:")}
swept = [r for r in res["results"] if r["sweep"]]
assert sorted(round(r["alpha"], 2) for r in swept if r["strategy"] == "smart-batch") == \
    [round(0.5 + 0.02 * k, 2) for k in range(25)], swept
assert sorted(r["budget"] for r in swept if r["strategy"] == "smart-budget") == \
    sorted(s["total_cost"] for s in singles.values())
assert all(r["predictor"] in ("default", None) for r in swept)
assert all(r["strategy"] in ("smart-batch", "smart-budget", "task-ceiling") for r in swept)
# The task ceiling at each single model's cost is swept, at the given budget not.
ceilings = [r for r in res["results"] if r["strategy"] == "task-ceiling"]
assert sorted(r["budget"] for r in ceilings if r["sweep"]) == \
    sorted(s["total_cost"] for s in singles.values()), ceilings
assert [r["budget"] for r in ceilings if not r["sweep"]] == [0.01], ceilings
PY
python3 - "$TMP" <<'PY' && ok || bad "eval versus_single"
import sys
exec(open(sys.argv[1] + "/prelude.py").read())
frontier = [r for r in res["results"] if r["frontier"] and r["predictor"] == "default"]
singles = {r["strategy"][7:]: r for r in res["results"] if r["strategy"].startswith("single:")}
# Every single model is compared with the best point of the first
# predictor's frontier at no higher cost.
vs = {v["model"]: v for v in res["versus_single"]}
assert set(vs) == set(singles), vs
for m, v in vs.items():
    s = singles[m]
    cheaper = [r for r in frontier if r["total_cost"] <= s["total_cost"]]
    best = max((r["success_rate"] for r in cheaper), default=None)
    assert v["frontier_success_rate"] == best, (m, v, best)
    assert best is None or v["frontier_total_cost"] <= s["total_cost"]
    assert v["above"] == (best is not None and best >= s["success_rate"]), v
    # relation: more success for no more cost, the same for less, the very
    # same point, or below.
    want = ("below" if best is None or best < s["success_rate"] else
            "higher" if best > s["success_rate"] else
            "cheaper" if v["frontier_total_cost"] < s["total_cost"] else "same")
    assert v["relation"] == want, (v, want)
# On this fixture the router reaches the strong model's success for less.
assert vs["strong"]["above"] and vs["strong"]["frontier_total_cost"] < singles["strong"]["total_cost"], vs["strong"]
PY
python3 -c "import sys, xml.dom.minidom as m; d = m.parse(sys.argv[1]); assert d.documentElement.tagName == 'svg'; t = [x.firstChild.data for x in d.getElementsByTagName('text') if x.firstChild]; assert 'strong' in t and 'cheap' in t, t" "$TMP/plot.svg" \
    && ok || bad "eval --plot writes an SVG with labelled models"
# The plot's line for a predictor joins exactly its rows marked frontier, by
# cost.
python3 - "$TMP" <<'PY' && ok || bad "eval --plot: one line per predictor through its frontier rows"
import json, sys, xml.dom.minidom as m
out = sys.argv[1]
res = json.load(open(out + "/eval.json"))["results"]
d = m.parse(out + "/plot.svg")
lines = {}
for pl in d.getElementsByTagName("polyline"):
    title = pl.getElementsByTagName("title")[0].firstChild.data
    lines[title] = [tuple(map(float, p.split(","))) for p in pl.getAttribute("points").split()]
assert set(lines) == {"frontier, default predictor", "frontier, aios predictor"}, lines
for p in ("default", "aios"):
    front = sorted((r for r in res if r["predictor"] == p and r["frontier"]),
                   key=lambda r: (r["total_cost"], r["success_rate"]))
    pts = lines["frontier, %s predictor" % p]
    assert len(pts) == len(front), (p, pts, front)
    xs, ys = [x for x, _ in pts], [y for _, y in pts]
    assert xs == sorted(xs) and ys == sorted(ys, reverse=True), pts  # cost up, success up
PY
# The cost axis has gridlines below its first power of ten too: the
# cheapest point must not sit in a stretch without any.
python3 - "$TMP" <<'PY' && ok || bad "eval --plot: gridlines left of the cheapest point"
import sys, xml.dom.minidom as m
d = m.parse(sys.argv[1] + "/plot.svg")
xs = [float(c.getAttribute("cx")) for c in d.getElementsByTagName("circle")]
grid = [float(l.getAttribute("x1")) for l in d.getElementsByTagName("line")
        if l.getAttribute("x1") == l.getAttribute("x2")]
assert xs and any(g < min(xs) for g in grid), (min(xs), sorted(grid)[:3])
PY
# The grey task-ceiling dots are drawn first and smaller, so that a model's
# dot at the same place is not hidden under one.
python3 - "$TMP" <<'PY' && ok || bad "eval --plot: the task ceiling beneath the models"
import sys, xml.dom.minidom as m
d = m.parse(sys.argv[1] + "/plot.svg")
circles = [(c.getAttribute("r"), c.getElementsByTagName("title")[0].firstChild.data)
           for c in d.getElementsByTagName("circle") if c.getElementsByTagName("title")]
ceil = [i for i, (_, t) in enumerate(circles) if t.startswith("task-ceiling")]
single = [i for i, (_, t) in enumerate(circles) if t.startswith("single:")]
assert ceil and single and max(ceil) < min(single), circles
assert all(float(circles[i][0]) < float(circles[single[0]][0]) for i in ceil), circles
PY
# The per-query smart row's predicted cost is the sum of what route predicts
# for each test query with the record's own input token count (12 here).
python3 - "$TMP" <<'PY'
import json, sys
out = sys.argv[1]
open(out + "/test_queries.txt", "w").write(
    "".join(r["query"] + "\n" for r in json.load(open(out + "/data.json")) if r["split"] == "test"))
PY
"$BIN" route --config "$TMP/cfg.json" --store "$TMP/h.db" --models strong,mid,cheap --strategy smart \
    --predictor default --alpha 0.7 --input-tokens 12 --json <"$TMP/test_queries.txt" >"$TMP/route.json" 2>"$TMP/err"
python3 - "$TMP" <<'PY' && ok || bad "eval's predicted cost of a smart row is route's, query by query"
import json, sys
out = sys.argv[1]
decisions = [json.loads(l) for l in open(out + "/route.json")]
assert len(decisions) == 87 and all(d["input_tokens"] == 12 for d in decisions)
want = sum(d["estimated_cost"] for d in decisions)
row = [r for r in json.load(open(out + "/eval.json"))["results"]
       if (r["strategy"], r["predictor"], r["alpha"]) == ("smart", "default", 0.7)][0]
assert abs(row["predicted_cost"] - want) <= 1e-9 * want, (row["predicted_cost"], want)
PY
python3 - "$TMP" <<'PY' && ok || bad "route --json: an estimated cost reads back as the exact one"
import json, sys
out = sys.argv[1]
# A candidate's estimated cost is its input tokens at its input price plus
# its predicted output tokens at its output price, both as printed: each
# must read back as the double it was. At ten digits a cost at 1e-7-scale
# prices was another number, and two that differ could print alike.
price = {m["name"]: (m["cost_per_input_token"], m["cost_per_output_token"])
         for m in json.load(open(out + "/cfg.json"))["models"]}
for d in (json.loads(l) for l in open(out + "/route.json")):
    for c in d["ranking"]:
        p = price[c["model"]]
        want = d["input_tokens"] * p[0] + c["predicted_output_tokens"] * p[1]
        assert c["estimated_cost"] == want, (c, want)
    assert d["estimated_cost"] == d["ranking"][0]["estimated_cost"], d
PY
"$BIN" eval --config "$TMP/cfg.json" --store "$TMP/h.db" --data "$TMP/data.jsonl" --split test --format csv >"$TMP/eval.csv" 2>"$TMP/err"
rc=$?
[ $rc -eq 0 ] && ok || bad "eval --format csv: exit $rc: $(cat "$TMP/err")"
python3 -c "import csv, sys; rows = list(csv.DictReader(open(sys.argv[1]))); assert len(rows) >= 8 and 'share:strong' in rows[0], rows[0]" "$TMP/eval.csv" \
    && ok || bad "eval --format csv"
python3 - "$TMP" <<'PY' && ok || bad "eval --format csv: a total cost reads back as the exact sum"
import csv, sys
exec(open(sys.argv[1] + "/prelude.py").read())
# As in the JSON: at ten digits strong's total cost read 0.11484.
csv_rows = {r["strategy"]: r for r in csv.DictReader(open(sys.argv[1] + "/eval.csv"))}
for m in price:
    got = float(csv_rows["single:" + m]["total_cost"])
    assert got == sum(real(r, m)[1] for r in data), (m, got)
PY
expect "eval table" 0 "oracle" -- "$BIN" eval --config "$TMP/cfg.json" --store "$TMP/h.db" --data "$TMP/data.json" --split test
# Without --alpha, the batch rows meet router.alpha, the target route --batch
# meets, and the per-query rows the performance requirement: the batch rows
# were run at the requirement, whatever router.alpha said.
python3 - "$TMP" <<'PY'
import json, sys
cfg = json.load(open(sys.argv[1] + "/cfg.json"))
cfg["router"] = dict(cfg["router"], performance_requirement=0.6, alpha=0.9)
json.dump(cfg, open(sys.argv[1] + "/alpha_cfg.json", "w"))
PY
"$BIN" eval --config "$TMP/alpha_cfg.json" --store "$TMP/h.db" --data "$TMP/data.json" --split test \
    --format json >"$TMP/alpha.json" 2>"$TMP/err" &&
python3 - "$TMP" <<'PY' && ok || bad "eval without --alpha: the batch at router.alpha: $(cat "$TMP/err")"
import json, sys
res = json.load(open(sys.argv[1] + "/alpha.json"))["results"]
assert sorted(r["alpha"] for r in res if r["strategy"] == "smart") == [0.6, 0.6], res
assert sorted(r["alpha"] for r in res if r["strategy"] == "smart-batch") == [0.9, 0.9], res
PY
# --sweep-alpha LO:HI:STEP: the swept batch rows at exactly those alphas (each
# the double nearest its decimal), the budget rows as with --sweep, and the
# table's note names the range.
"$BIN" eval --config "$TMP/cfg.json" --store "$TMP/h.db" --data "$TMP/data.json" --split test \
    --sweep-alpha 0.2:0.5:0.1 --format json >"$TMP/sweep.json" 2>"$TMP/err" &&
python3 - "$TMP" <<'PY' && ok || bad "eval --sweep-alpha rows: $(cat "$TMP/err")"
import json, sys
res = json.load(open(sys.argv[1] + "/sweep.json"))["results"]
swept = [r for r in res if r["sweep"]]
assert [r["alpha"] for r in swept if r["strategy"] == "smart-batch"] == [0.2, 0.3, 0.4, 0.5], swept
singles = sorted(r["total_cost"] for r in res if r["strategy"].startswith("single:"))
assert sorted(r["budget"] for r in swept if r["strategy"] == "smart-budget") == singles, swept
PY
# LO may be HI: one alpha. A STEP that passes HI by less than the nine
# decimals each alpha is rounded to ends at HI, not above 1.
for spec in 0.6:0.6:0.1 0.3:1:0.7000000006; do
    "$BIN" eval --config "$TMP/cfg.json" --store "$TMP/h.db" --data "$TMP/data.json" --split test \
        --predictors default --sweep-alpha $spec --format json >"$TMP/sweep.json" 2>"$TMP/err" &&
    python3 - "$TMP" $spec <<'PY' && ok || bad "eval --sweep-alpha $spec: $(cat "$TMP/err")"
import json, sys
lo, hi, step = map(float, sys.argv[2].split(":"))
res = json.load(open(sys.argv[1] + "/sweep.json"))["results"]
alphas = [r["alpha"] for r in res if r["sweep"] and r["strategy"] == "smart-batch"]
assert alphas == ([lo] if lo == hi else [lo, hi]), alphas
PY
done
expect "eval --sweep-alpha names its range in the table" 0 "batch over alpha 0.25..0.75" -- \
    "$BIN" eval --config "$TMP/cfg.json" --store "$TMP/h.db" --data "$TMP/data.json" --split test \
    --sweep-alpha 0.25:0.8:0.25
expect "eval --sweep-alpha LO above HI" 2 "--sweep-alpha: LO 0.9 is above HI 0.1" -- \
    "$BIN" eval --config "$TMP/cfg.json" --store "$TMP/h.db" --data "$TMP/data.json" --sweep-alpha 0.9:0.1:0.1
expect "eval --sweep-alpha without STEP" 2 "--sweep-alpha: expected LO:HI:STEP, got '0.1:0.5'" -- \
    "$BIN" eval --config "$TMP/cfg.json" --store "$TMP/h.db" --data "$TMP/data.json" --sweep-alpha 0.1:0.5
expect "eval --sweep-alpha STEP 0" 2 "--sweep-alpha: STEP must be above 0" -- \
    "$BIN" eval --config "$TMP/cfg.json" --store "$TMP/h.db" --data "$TMP/data.json" --sweep-alpha 0.1:0.5:0
expect "eval --sweep-alpha HI above 1" 2 "--sweep-alpha HI" -- \
    "$BIN" eval --config "$TMP/cfg.json" --store "$TMP/h.db" --data "$TMP/data.json" --sweep-alpha 0.1:1.5:0.1
expect "eval --sweep-alpha not a number" 2 "--sweep-alpha LO" -- \
    "$BIN" eval --config "$TMP/cfg.json" --store "$TMP/h.db" --data "$TMP/data.json" --sweep-alpha x:0.5:0.1
expect "eval --sweep-alpha with too many steps" 2 "makes more than 1001 alphas" -- \
    "$BIN" eval --config "$TMP/cfg.json" --store "$TMP/h.db" --data "$TMP/data.json" --sweep-alpha 0:1:0.0001
expect "eval with a model without price" 2 "models[1] 'mid' has no cost_per_output_token" -- \
    "$BIN" eval --config "$TMP/noprice.json" --store "$TMP/h.db" --data "$TMP/data.json"
expect "eval with a truncated data file" 2 "trunc.json:1:" -- \
    "$BIN" eval --config "$TMP/cfg.json" --store "$TMP/h.db" --data "$TMP/trunc.json"
expect "eval with an unknown split" 2 "no records in split dev (261 in other splits)" -- \
    "$BIN" eval --config "$TMP/cfg.json" --store "$TMP/h.db" --data "$TMP/data.json" --split dev
# A split whose every record is bad is said to be so (it read "no records in
# split test", as if the split were not in the file).
python3 - "$TMP" <<'PY'
import json, sys
out = sys.argv[1]
recs = json.load(open(out + "/data.json"))
for r in recs:
    if r["split"] == "test":
        r["outputs"][0]["correctness"] = "yes"
json.dump(recs, open(out + "/badtest.json", "w"))
PY
expect "eval of a split whose records are all bad" 2 \
    "badtest.json: no good records in split test (87 bad, 174 in other splits)" -- \
    "$BIN" eval --config "$TMP/cfg.json" --store "$TMP/h.db" --data "$TMP/badtest.json" --split test
# A file whose records name no split is in none: --split drops every record,
# and the message says why (it read "no records in split test (261 in other
# splits)", as if other splits were in the file). A record with "split":
# null names none either; the others are counted apart.
python3 - "$TMP" <<'PY'
import json, sys
out = sys.argv[1]
recs = json.load(open(out + "/data.json"))
for r in recs:
    del r["split"]
json.dump(recs, open(out + "/nosplit.json", "w"))
recs[0]["split"] = "train"
recs[1]["split"] = None
json.dump(recs, open(out + "/somesplit.json", "w"))
PY
expect "eval --split of a file with no split field" 2 \
    "nosplit.json: no record has a \"split\" field, so --split test dropped all 261" -- \
    "$BIN" eval --config "$TMP/cfg.json" --store "$TMP/h.db" --data "$TMP/nosplit.json" --split test
expect "eval --split of a file with few split fields" 2 \
    "somesplit.json: no records in split test (1 in other splits, 260 with no \"split\" field)" -- \
    "$BIN" eval --config "$TMP/cfg.json" --store "$TMP/h.db" --data "$TMP/somesplit.json" --split test
echo '[]' >"$TMP/none.json"
expect "eval of an empty array with a split" 2 "none.json: the file holds no records" -- \
    "$BIN" eval --config "$TMP/cfg.json" --store "$TMP/h.db" --data "$TMP/none.json" --split test
# Scored queries that the history store also holds are counted and named:
# the smart rows would see their own outcomes.
"$BIN" import --store "$TMP/all.db" "$TMP/data.json" >/dev/null 2>&1
expect "eval warns when the scored queries are in the store" 0 \
    "warning: 87 of the 87 scored queries are also in the history store '$TMP/all.db'" -- \
    "$BIN" eval --config "$TMP/cfg.json" --store "$TMP/all.db" --data "$TMP/data.json" --split test
grep -qF "87 queries, 3 candidate models; 87 of the queries are in the history store: not held out" "$TMP/out" \
    && ok || bad "eval table names the queries in the store: $(head -2 "$TMP/out")"
"$BIN" eval --config "$TMP/cfg.json" --store "$TMP/all.db" --data "$TMP/data.json" --format json \
    >"$TMP/all.json" 2>"$TMP/err"
python3 -c "import json, sys; r = json.load(open(sys.argv[1])); assert r['queries'] == 261 and r['queries_in_store'] == 261, (r['queries'], r['queries_in_store'])" \
    "$TMP/all.json" && ok || bad "eval json queries_in_store: $(cat "$TMP/err")"
grep -qF "warning: 261 of the 261 scored queries" "$TMP/err" && ok || bad "eval without --split warns: $(cat "$TMP/err")"
# One such query is warned of as well.
python3 - "$TMP" <<'PY'
import json, sys
out = sys.argv[1]
recs = json.load(open(out + "/data.json"))
json.dump([r for r in recs if r["split"] == "train"] + [recs[0]], open(out + "/one_in.json", "w"))
PY
"$BIN" import --store "$TMP/one_in.db" "$TMP/one_in.json" >/dev/null 2>&1
expect "eval warns of one scored query in the store" 0 \
    "warning: 1 of the 87 scored queries are also in the history store '$TMP/one_in.db'" -- \
    "$BIN" eval --config "$TMP/cfg.json" --store "$TMP/one_in.db" --data "$TMP/data.json" \
    --split test
grep -qF "87 queries, 3 candidate models; 1 of the queries are in the history store" "$TMP/out" \
    && ok || bad "eval table names one query in the store: $(head -2 "$TMP/out")"
# A candidate the history store has no outcome of is named: smart routing
# cannot predict it, whatever the data holds, and each predictor's rows stand
# on its fallback for it.
python3 - "$TMP" <<'PY'
import json, sys
out = sys.argv[1]
recs = [r for r in json.load(open(out + "/data.json")) if r["split"] == "train"]
for r in recs:
    r["outputs"] = [o for o in r["outputs"] if o["model_name"] != "mid"]
json.dump(recs, open(out + "/nomid.json", "w"))
PY
"$BIN" import --store "$TMP/nomid.db" "$TMP/nomid.json" >/dev/null 2>&1
expect "eval names a candidate the store has no outcome of" 0 \
    "warning: candidate 'mid' has no outcomes in the history store '$TMP/nomid.db'" -- \
    "$BIN" eval --config "$TMP/cfg.json" --store "$TMP/nomid.db" --data "$TMP/data.json" --split test
grep -qF "the default predictor ranks it after every candidate the store knows" "$TMP/err" &&
    grep -qF "aios predicts it quality 0 and no output tokens" "$TMP/err" && ok ||
    bad "eval: what each predictor does with a candidate the store lacks: $(cat "$TMP/err")"
expect "eval with one predictor names only its fallback" 0 "" -- \
    "$BIN" eval --config "$TMP/cfg.json" --store "$TMP/nomid.db" --data "$TMP/data.json" \
    --split test --predictors default
grep -qF "candidate 'mid' has no outcomes" "$TMP/err" && ! grep -qF "aios" "$TMP/err" && ok ||
    bad "eval --predictors default: the warning on 'mid': $(cat "$TMP/err")"
expect "eval with every candidate in the store" 0 "" -- \
    "$BIN" eval --config "$TMP/cfg.json" --store "$TMP/h.db" --data "$TMP/data.json" --split test
! grep -qF "no outcomes in the history store" "$TMP/err" && ok ||
    bad "eval warned of a candidate the store holds: $(cat "$TMP/err")"
# A model of the data that the config does not name is said, not dropped
# unseen.
python3 - "$TMP" <<'PY'
import json, sys
out = sys.argv[1]
recs = [r for r in json.load(open(out + "/data.json")) if r["split"] == "test"][:20]
for r in recs:
    r["outputs"].append({"model_name": "extra", "correctness": 1, "output_token_length": 3})
json.dump(recs, open(out + "/extra.json", "w"))
PY
# Records that lack a candidate's outcome are not scored; the note says which
# candidate each lacks (it gave only their number).
python3 - "$TMP" <<'PY'
import json, sys
out = sys.argv[1]
recs = [r for r in json.load(open(out + "/data.json")) if r["split"] == "test"]
for i, r in enumerate(recs[:5]):
    drop = "mid" if i < 3 else "cheap"
    r["outputs"] = [o for o in r["outputs"] if o["model_name"] != drop]
json.dump(recs, open(out + "/lacking.json", "w"))
PY
expect "eval names the candidates records lack" 0 \
    "5 records lack an outcome for some candidate and are not scored: 'mid' has none in 3 records, 'cheap' has none in 2 records" -- \
    "$BIN" eval --config "$TMP/cfg.json" --store "$TMP/h.db" --data "$TMP/lacking.json"
grep -qF "82 queries, 3 candidate models" "$TMP/out" && ok || bad "eval of records lacking outcomes: $(head -1 "$TMP/out")"
expect "eval names a data model missing from the config" 0 \
    "warning: model 'extra' has outcomes in the data but is not in the config: they are not scored" -- \
    "$BIN" eval --config "$TMP/cfg.json" --store "$TMP/h.db" --data "$TMP/extra.json"
# A row whose constraint could not be met is marked in the table, and so is
# a frontier point that compares with a single model.
expect "eval marks infeasible rows" 0 \
    "task-ceiling budget 0: below the cheapest choice for every query" -- \
    "$BIN" eval --config "$TMP/cfg.json" --store "$TMP/h.db" --data "$TMP/data.json" --split test \
    --predictors default --budget 0
grep -E -q '^smart-budget \(default\) (\* )?! ' "$TMP/out" && grep -qF "! infeasible:" "$TMP/out" \
    && ok || bad "eval table marks an infeasible budget row: $(grep smart-budget "$TMP/out")"
# At prices a millionth as high, the cheapest choice is a fraction of a
# cent: it read "below the cheapest choice for every query (0.000000)".
python3 - "$TMP/cfg.json" "$TMP/cheap_cfg.json" <<'PY'
import json, sys
cfg = json.load(open(sys.argv[1]))
for m in cfg["models"]:
    for k in ("cost_per_input_token", "cost_per_output_token"):
        m[k] = m[k] * 1e-6
json.dump(cfg, open(sys.argv[2], "w"))
PY
expect "eval: a task-ceiling budget below a tiny cheapest choice" 0 \
    "task-ceiling budget 1e-12: below the cheapest choice for every query (" -- \
    "$BIN" eval --config "$TMP/cheap_cfg.json" --data "$TMP/data.json" --split test --budget 1e-12
grep -F "task-ceiling budget 1e-12" "$TMP/err" | grep -qF "(0.000000)" &&
    bad "eval: the cheapest choice printed as nothing: $(grep -F task-ceiling "$TMP/err")" || ok
# A record with an empty query is one bad record, skipped and named; the
# other records are still scored (it used to stop the smart rows, exit 2).
python3 - "$TMP" <<'PY'
import json, sys
out = sys.argv[1]
recs = [r for r in json.load(open(out + "/data.json")) if r["split"] == "test"][:20]
recs[4]["query"] = ""
json.dump(recs, open(out + "/emptyq.json", "w"))
PY
expect "eval skips a record with an empty query" 0 \
    "skipped 1 bad (first: record 4 (line 1): query: expected a non-empty string)" -- \
    "$BIN" eval --config "$TMP/cfg.json" --store "$TMP/h.db" --data "$TMP/emptyq.json"
grep -qF "19 queries" "$TMP/out" && ok || bad "eval with an empty query: $(cat "$TMP/out")"
expect "eval of a directory" 2 "cannot read '$TMP': it is a directory" -- \
    "$BIN" eval --config "$TMP/cfg.json" --store "$TMP/h.db" --data "$TMP"
# A file that is not a history store: the same exit code from eval as from route.
expect "route with a store that is not one" 1 "is not a database" -- \
    "$BIN" route --config "$TMP/cfg.json" --store "$TMP/data.json" "What is 1 plus 1?"
expect "eval with a store that is not one" 1 "is not a database" -- \
    "$BIN" eval --config "$TMP/cfg.json" --store "$TMP/data.json" --data "$TMP/data.json"
expect "eval with a bad format" 2 "--format: expected table, json or csv" -- \
    "$BIN" eval --config "$TMP/cfg.json" --data "$TMP/data.json" --format xml
# What eval can tell from its options is refused before the data is scored
# (a run over a large file takes minutes): a store that does not exist, as
# route refuses it (it ran the baselines, then exited 1 with SQLite's "unable
# to open database file"), and a plot file that cannot be written (found out
# after the whole run, the table printed, exit 1).
expect "eval with a store that does not exist" 2 \
    "history store '$TMP/none.db' does not exist: create it with 'llmroute import --store" -- \
    "$BIN" eval --config "$TMP/cfg.json" --store "$TMP/none.db" --data "$TMP/data.json"
[ ! -e "$TMP/none.db" ] && ok || bad "eval made the store it was given"
[ ! -s "$TMP/out" ] && ok || bad "eval with a missing store printed results: $(cat "$TMP/out")"
expect "eval --plot into a folder that does not exist" 2 "--plot $TMP/nodir/p.svg: cannot write" -- \
    "$BIN" eval --config "$TMP/cfg.json" --store "$TMP/h.db" --data "$TMP/data.json" \
    --plot "$TMP/nodir/p.svg"
[ ! -s "$TMP/out" ] && ok || bad "eval with an unwritable plot printed results: $(cat "$TMP/out")"
expect "eval --plot that is a folder" 2 "--plot $TMP: is a directory" -- \
    "$BIN" eval --config "$TMP/cfg.json" --data "$TMP/data.json" --plot "$TMP"
# The plot is SVG: a name that asks for another format is refused before
# the work, and no file of that name is left behind.
expect "eval --plot naming another format" 2 \
    "--plot $TMP/frontier.png: the plot is written as SVG, not as .png; give a name ending in .svg" -- \
    "$BIN" eval --config "$TMP/cfg.json" --data "$TMP/data.json" --plot "$TMP/frontier.png"
[ ! -e "$TMP/frontier.png" ] && [ ! -s "$TMP/out" ] && ok ||
    bad "eval --plot frontier.png left a file or printed results: $(ls "$TMP/frontier.png" 2>&1) $(cat "$TMP/out")"
# A plot that fails while it is written (a full disk, a file size limit) says
# why, exits 1 and leaves no half-written SVG behind (it said "write error"
# and kept the first part of the file).
if [ -c /dev/full ]; then
    expect "eval --plot on a full device" 1 \
        "--plot /dev/full: cannot write the file: $(python3 -c 'import os; print(os.strerror(28))')" -- \
        "$BIN" eval --config "$TMP/cfg.json" --data "$TMP/data.json" --split test --plot /dev/full
    [ -c /dev/full ] && ok || bad "eval --plot removed /dev/full"
fi
(
    trap '' XFSZ
    ulimit -f 2
    "$BIN" eval --config "$TMP/cfg.json" --data "$TMP/data.json" --split test \
        --plot "$TMP/cut.svg" >/dev/null 2>"$TMP/err"
)
rc=$?
[ $rc -eq 1 ] && [ ! -e "$TMP/cut.svg" ] &&
    grep -qF -- "--plot $TMP/cut.svg: cannot write the file: $(python3 -c 'import errno, os; print(os.strerror(errno.EFBIG))') (the incomplete file is removed)" "$TMP/err" &&
    ok || bad "eval --plot over a file size limit: exit $rc, $(ls "$TMP/cut.svg" 2>&1): $(cat "$TMP/err")"
# A plot named as one of eval's own inputs (a slip of the shell's completion)
# was written over it: the history store became an SVG, exit 0.
cp "$TMP/h.db" "$TMP/plotted.db"
for input in store data config; do
    case $input in
    store) args=(--config "$TMP/cfg.json" --store "$TMP/plotted.db" --data "$TMP/data.json"
                 --plot "$TMP/plotted.db") ;;
    data) args=(--config "$TMP/cfg.json" --data "$TMP/data.json" --plot "$TMP/./data.json") ;;
    config) args=(--config "$TMP/cfg.json" --data "$TMP/data.json" --plot "$TMP/cfg.json") ;;
    esac
    expect "eval --plot naming its own --$input" 2 "is the file --$input names" -- \
        "$BIN" eval "${args[@]}"
done
cmp -s "$TMP/h.db" "$TMP/plotted.db" && ok || bad "eval --plot over its store changed the store"
# Nor over SQLite's files beside the store: an SVG written over its -wal
# while another process (here a reader, as a gateway is) held the store
# left the records committed since in the -wal lost, the store "malformed".
cp "$TMP/h.db" "$TMP/walled.db"
want=$(count "$TMP/walled.db")
want=${want##*: }
want=${want% records}
python3 - "$TMP/walled.db" "$TMP/reader.go" "$TMP/reader.done" <<'PY' &
import os, sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("BEGIN")
c.execute("SELECT count(*) FROM records").fetchall()
open(sys.argv[2], "w").close()
for _ in range(300):
    if os.path.exists(sys.argv[3]):
        break
    time.sleep(0.1)
c.execute("COMMIT")
c.close()
PY
reader=$!
for _ in $(seq 100); do [ -e "$TMP/reader.go" ] && break; sleep 0.1; done
printf '{"query": "held in the wal", "outputs": [{"model_name": "gpt-4o", "correctness": 1, "output_token_length": 5}]}\n' \
    >"$TMP/walrec.jsonl"
"$BIN" import --store "$TMP/walled.db" "$TMP/walrec.jsonl" >/dev/null 2>&1 || bad "import beside a reader"
for side in -wal -shm -journal; do
    expect "eval --plot naming the store's $side file" 2 \
        "--plot $TMP/walled.db$side: is the history store's $side file (--store)" -- \
        "$BIN" eval --config "$TMP/cfg.json" --store "$TMP/walled.db" --data "$TMP/data.json" \
        --plot "$TMP/walled.db$side"
done
: >"$TMP/reader.done"
wait "$reader"
[ "$(count "$TMP/walled.db")" = "$TMP/walled.db: $((want + 1)) records" ] && ok ||
    bad "eval --plot beside the store lost records: $(count "$TMP/walled.db" 2>&1) ($want before the import)"
# An empty split name matched no record and said only "0 of N imported".
expect "import --split with no name" 2 "--split: expected a split name" -- \
    "$BIN" import --store "$TMP/h.db" --split "" "$TMP/data.json"
expect "eval --split with no name" 2 "--split: expected a split name" -- \
    "$BIN" eval --config "$TMP/cfg.json" --data "$TMP/data.json" --split ""
# The random row's generator takes seed 0 as 1 (xorshift has no zero
# state): --seed 0 gave seed 1's row. Seeds start at 1.
expect "eval --seed 0" 2 "--seed: expected an integer from 1 to 2147483647, got '0'" -- \
    "$BIN" eval --config "$TMP/cfg.json" --data "$TMP/data.json" --seed 0
# The table's bounds read as the numbers given: 0.7001 and 0.7004 printed
# alike at three decimals, budgets under a millionth all as 0.000000.
"$BIN" eval --config "$TMP/cfg.json" --store "$TMP/h.db" --data "$TMP/data.json" --split test \
    --alpha 0.7001,0.7004 --budget 0.0000001,0.0000002 >"$TMP/out" 2>"$TMP/err"
rc=$?
if [ $rc -eq 0 ] && grep -qE "^smart \(default\)[ *!]* 0\.7001 " "$TMP/out" &&
    grep -qE "^smart \(default\)[ *!]* 0\.7004 " "$TMP/out" && grep -q " 1e-07 " "$TMP/out" &&
    grep -q " 2e-07 " "$TMP/out"; then
    ok
else
    bad "eval table bounds: exit $rc: $(grep -E '^smart' "$TMP/out" | head -8) $(cat "$TMP/err")"
fi
# A value given twice printed its rows twice; an empty list asked for names.
expect "eval --alpha with a value twice" 2 "--alpha: 0.7 is given twice ('0.7' and '0.70')" -- \
    "$BIN" eval --config "$TMP/cfg.json" --store "$TMP/h.db" --data "$TMP/data.json" --alpha 0.7,0.8,0.70
expect "eval --budget with a value twice" 2 "--budget: '0.5' is given twice" -- \
    "$BIN" eval --config "$TMP/cfg.json" --store "$TMP/h.db" --data "$TMP/data.json" --budget 0.5,0.5
expect "eval --predictors with a name twice" 2 "--predictors: 'aios' is given twice" -- \
    "$BIN" eval --config "$TMP/cfg.json" --store "$TMP/h.db" --data "$TMP/data.json" --predictors aios,aios
expect "eval --alpha with an empty list" 2 "--alpha: the list is empty; give one or more numbers" -- \
    "$BIN" eval --config "$TMP/cfg.json" --data "$TMP/data.json" --alpha ""
expect "eval --budget below 0" 2 "--budget: expected a number from 0 to" -- \
    "$BIN" eval --config "$TMP/cfg.json" --data "$TMP/data.json" --budget 0.5,-0.5
expect "eval --alpha with an empty item" 2 "--alpha: number 2 of the list is empty" -- \
    "$BIN" eval --config "$TMP/cfg.json" --data "$TMP/data.json" --alpha 0.5,,0.6
# Spaces around an item are not part of it: "0.7, 0.70" is 0.7 twice.
expect "eval --alpha with spaces in the list" 2 "--alpha: 0.7 is given twice ('0.7' and '0.70')" -- \
    "$BIN" eval --config "$TMP/cfg.json" --store "$TMP/h.db" --data "$TMP/data.json" --alpha "0.7, 0.70"
expect "route --models with a name twice" 2 "--models: 'mid' is given twice" -- \
    "$BIN" route --config "$TMP/cfg.json" --strategy sequential --models mid,cheap,mid "What is 1 plus 1?"
# A model name with a quote or a blank (a comma is refused by the config):
# the CSV header's share column is one field (it was share: followed by a
# separately quoted name).
python3 - "$TMP" <<'PY'
import json, sys
out = sys.argv[1]
names = ["a b", 'q"x']
json.dump({"models": [{"name": n, "cost_per_input_token": 1e-6, "cost_per_output_token": 1e-6}
                      for n in names]}, open(out + "/comma_cfg.json", "w"))
json.dump([{"query": "q%d" % i, "input_token_length": 3,
            "outputs": [{"model_name": n, "correctness": (i + j) % 2, "output_token_length": 4}
                        for j, n in enumerate(names)]} for i in range(4)],
          open(out + "/comma.json", "w"))
PY
"$BIN" eval --config "$TMP/comma_cfg.json" --data "$TMP/comma.json" --format csv >"$TMP/comma.csv" 2>"$TMP/err"
rc=$?
[ $rc -eq 0 ] && ok || bad "eval csv with a comma in a model name: exit $rc: $(cat "$TMP/err")"
python3 - "$TMP/comma.csv" <<'PY' && ok || bad "eval csv with a comma in a model name: $(cat "$TMP/comma.csv")"
import csv, sys
rows = list(csv.reader(open(sys.argv[1])))
assert all(len(r) == len(rows[0]) for r in rows), [len(r) for r in rows]
assert rows[0][-2:] == ["share:a b", 'share:q"x'], rows[0]
single = [r for r in rows if r[0] == "single:a b"][0]
assert float(single[-2]) == 1.0 and float(single[-1]) == 0.0, single
PY

# --- a budget caps the predicted cost, not the real one ---
# The history says "b" answers in 10 tokens; on the test queries it takes
# 100. A budget that the predicted cost of sending everything to "b" fits is
# feasible, and the real cost ends far above it: the row says so
# (within_budget false) and shows the predicted cost beside the real one.
# One test record has no input_token_length: eval routes and prices it with
# the estimate from its query (a token per 4 bytes, rounded up).
python3 - "$TMP" <<'PY'
import json, sys
out = sys.argv[1]
json.dump({"models": [{"name": "a", "cost_per_input_token": 1e-6, "cost_per_output_token": 1e-6},
                      {"name": "b", "cost_per_input_token": 1e-5, "cost_per_output_token": 1e-5}]},
          open(out + "/over_cfg.json", "w"))
recs = []
for i in range(30):
    test = i % 3 == 0
    recs.append({"query": "question number %d about the weather" % i, "input_token_length": 5,
                 "split": "test" if test else "train",
                 "outputs": [{"model_name": "a", "correctness": 0, "output_token_length": 10},
                             {"model_name": "b", "correctness": 1,
                              "output_token_length": 100 if test else 10}]})
del recs[3]["input_token_length"]
json.dump(recs, open(out + "/over.json", "w"))
PY
"$BIN" import --store "$TMP/over.db" --split train "$TMP/over.json" >/dev/null 2>"$TMP/err" &&
    "$BIN" eval --config "$TMP/over_cfg.json" --store "$TMP/over.db" --data "$TMP/over.json" \
        --split test --predictors default --alpha 0.9 --budget 0.0016 --format json \
        >"$TMP/over_eval.json" 2>"$TMP/err" && ok || bad "eval of the overrun fixture: $(cat "$TMP/err")"
python3 - "$TMP" <<'PY' && ok || bad "eval shows a real cost over a budget that the predicted cost meets: $(cat "$TMP/over_eval.json")"
import json, sys
out = sys.argv[1]
res = json.load(open(out + "/over_eval.json"))["results"]
data = [r for r in json.load(open(out + "/over.json")) if r["split"] == "test"]
row = [r for r in res if r["strategy"] == "smart-budget"][0]
assert row["budget"] == 0.0016 and row["model_share"]["b"] == 1.0, row
assert row["feasible"] is True and row["predicted_cost"] <= 0.0016, row
assert row["total_cost"] > 0.0016 and row["within_budget"] is False, row
# The record without input_token_length: (len + 3) // 4 input tokens.
tok = [r.get("input_token_length", (len(r["query"]) + 3) // 4) for r in data]
assert tok[1] == (len(data[1]["query"]) + 3) // 4 != 5, tok
real_b = sum(t * 1e-5 + 100 * 1e-5 for t in tok)
assert abs(row["total_cost"] - real_b) <= 1e-12 * real_b, (row, real_b)
single = [r for r in res if r["strategy"] == "single:b"][0]
assert abs(single["total_cost"] - real_b) <= 1e-12 * real_b, single
# Predicted: the same input tokens, 10 output tokens each.
pred_b = sum(t * 1e-5 + 10 * 1e-5 for t in tok)
assert abs(row["predicted_cost"] - pred_b) <= 1e-6 * pred_b, (row, pred_b)
PY
# The table prints the budget with the cost's six decimals (0.002 and 0.0016
# looked alike at three), the predicted cost, and NO under "within".
expect "eval table with a budget overrun" 0 "A budget caps the predicted total cost (pred.cost), not the real one" -- \
    "$BIN" eval --config "$TMP/over_cfg.json" --store "$TMP/over.db" --data "$TMP/over.json" \
    --split test --predictors default --alpha 0.9 --budget 0.0016
python3 - "$TMP/out" "$TMP/over_eval.json" <<'PY' && ok || bad "eval table row of a budget overrun: $(cat "$TMP/out")"
import json, sys
lines = open(sys.argv[1]).read().splitlines()
row = [r for r in json.load(open(sys.argv[2]))["results"] if r["strategy"] == "smart-budget"][0]
head = [l for l in lines if l.startswith("strategy")][0].split()
assert head[:10] == ["strategy", "alpha", "budget", "success", "cost($)", "pred.cost", "within",
                     "pred.q", "p50(us)", "p99(us)"], head
f = [l for l in lines if l.startswith("smart-budget (default)")][0].split()
# name (2 words, and the frontier mark), alpha, budget, success, cost, pred.cost, within, pred.q, p50, p99
f = f[f.index("-"):]
assert f[1] == "0.001600", f
assert f[3] == "%.6f" % row["total_cost"] and f[4] == "%.6f" % row["predicted_cost"], f
assert f[5] == "NO" and f[8] == "-", f  # within; no p99 for a batch
# Every row, in the JSON's order, with its success and cost at the table's
# four and six decimals (after the 44 characters of its name).
results = json.load(open(sys.argv[2]))["results"]
start = lines.index([l for l in lines if l.startswith("strategy")][0]) + 1
table = lines[start:start + len(results)]
assert [(l[44:].split()[2], l[44:].split()[3]) for l in table] == \
    [("%.4f" % r["success_rate"], "%.6f" % r["total_cost"]) for r in results], table
PY
# CSV: the same columns, a batch row's p99 empty.
"$BIN" eval --config "$TMP/over_cfg.json" --store "$TMP/over.db" --data "$TMP/over.json" \
    --split test --predictors default --alpha 0.9 --budget 0.0016 --seed 3 --format csv >"$TMP/over.csv" 2>"$TMP/err"
python3 - "$TMP/over.csv" <<'PY' && ok || bad "eval csv columns: $(cat "$TMP/over.csv")"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
assert list(rows[0])[:15] == ["strategy", "predictor", "alpha", "budget", "frontier", "sweep",
                              "feasible", "success_rate", "total_cost", "predicted_cost",
                              "within_budget", "predicted_quality", "decision_timing",
                              "decision_us_p50", "decision_us_p99"], list(rows[0])
by = {r["strategy"]: r for r in rows}
b = by["smart-budget"]
assert b["within_budget"] == "0" and b["feasible"] == "1" and float(b["predicted_cost"]) <= 0.0016, b
assert b["decision_timing"] == "batch_mean" and b["decision_us_p99"] == "" and float(b["decision_us_p50"]) > 0, b
assert by["smart"]["decision_timing"] == "per_query" and by["smart"]["decision_us_p99"] != "", by["smart"]
assert by["single:a"]["within_budget"] == "" and by["single:a"]["predicted_cost"] == "", by["single:a"]
# --seed adds one draw beside the expectation; its shares are whole queries.
d = by["random-draw:3"]
assert float(by["random"]["share:a"]) == float(by["random"]["share:b"]) == 0.5, by["random"]
assert all(round(float(d[k]) * 10) == float(d[k]) * 10 for k in ("share:a", "share:b")), d
assert float(by["random"]["success_rate"]) == 0.5, by["random"]
PY
# The help says what a budget caps, how random and the timings are made, and
# where a record's input tokens come from.
"$BIN" eval --help >"$TMP/help" 2>&1
for want in "caps on the PREDICTED total cost" "exact expectation of a uniform choice" \
    "batch_mean (smart-batch, smart-budget)" "its own input_token_length as the request's input" \
    "frontier: a smart row that no smart row of the same predictor beats" \
    "oracle: for each query the cheapest" "nearest-rank percentiles"; do
    grep -qF "$want" "$TMP/help" && ok || bad "eval --help lacks: $want"
done

# import and eval read a record on the same rules (record.c): a bad record
# in the split both use is refused by both, with the same field named. The
# first three kinds were each accepted by one of them and refused by the other.
python3 - "$TMP" <<'PY'
import json, sys
out = sys.argv[1]
recs = [r for r in json.load(open(out + "/data.json")) if r["split"] == "test"][:10]
bad = {"frac": ("input_token_length", 2.5), "noout": ("outputs", []), "task": ("task", 7),
       "corr": ("outputs", [{"model_name": "mid", "correctness": 2, "output_token_length": 1}])}
for name, (key, value) in bad.items():
    with open(out + "/bad_%s.jsonl" % name, "w") as f:
        for i, r in enumerate(recs):
            r = dict(r)
            if i == 3:
                r[key] = value
            f.write(json.dumps(r) + "\n")
PY
for kind in "frac|input_token_length: expected a non-negative integer" \
            "noout|outputs: expected a non-empty array" \
            "task|task: expected a string" \
            "corr|outputs[0].correctness: expected a boolean or a number in [0,1]"; do
    name=${kind%%|*} want="record 3 (line 4): ${kind#*|}"
    rm -f "$TMP/bad.db"
    expect "import refuses bad_$name" 0 "$want" -- \
        "$BIN" import --store "$TMP/bad.db" --split test "$TMP/bad_$name.jsonl"
    grep -qF "imported 9 of 10" "$TMP/out" "$TMP/err" && ok ||
        bad "import bad_$name: $(cat "$TMP/out")"
    expect "eval refuses bad_$name" 0 "$want" -- \
        "$BIN" eval --config "$TMP/cfg.json" --store "$TMP/h.db" --data "$TMP/bad_$name.jsonl" \
        --split test
    grep -qF "9 queries" "$TMP/out" && ok || bad "eval bad_$name: $(cat "$TMP/out")"
done

# With --split, a record of another split is skipped unread, by import as by
# eval: a bad one there made `import --split train --strict` refuse the file
# (and without --strict counted it as bad), while eval took the file.
R='"outputs": [{"model_name": "mid", "correctness": 1, "output_token_length": 3}]'
printf '{"query": "q1", "split": "test", "outputs": [{"model_name": "mid", "correctness": 2, "output_token_length": 3}]}\n{"query": "q2", "split": "train", %s}\n5\n' "$R" >"$TMP/splitbad.jsonl"
rm -f "$TMP/splitbad.db"
expect "strict import of one split skips a bad record of another" 0 \
    "imported 1 of 3 records (1 in other splits), skipped 1 bad (first: record 2 (line 3): expected an object)" -- \
    "$BIN" import --store "$TMP/splitbad.db" --split train "$TMP/splitbad.jsonl"
printf '{"query": "q1", "split": "test", "outputs": [{"model_name": "mid", "correctness": 2, "output_token_length": 3}]}\n{"query": "q2", "split": "train", %s}\n' "$R" >"$TMP/splitbad.jsonl"
rm -f "$TMP/splitbad.db"
expect "strict import of one split" 0 "imported 1 of 2 records (1 in other splits)" -- \
    "$BIN" import --store "$TMP/splitbad.db" --split train --strict "$TMP/splitbad.jsonl"
! grep -q "skipped" "$TMP/out" && ok || bad "import counted a record of another split as bad: $(cat "$TMP/out")"

# A JSON-lines file whose first line is a value that is no object: that line
# is one bad record, as on any other line, for import as for eval (import
# refused the whole file, "expected a JSON array or JSON lines of objects").
python3 - "$TMP" <<'PY'
import json, sys
out = sys.argv[1]
recs = [r for r in json.load(open(out + "/data.json")) if r["split"] == "test"][:4]
with open(out + "/first5.jsonl", "w") as f:
    f.write("5\n" + "".join(json.dumps(r) + "\n" for r in recs))
PY
rm -f "$TMP/f5.db"
expect "import skips a first line that is no object" 0 \
    "imported 4 of 5 records, skipped 1 bad (first: record 0 (line 1): expected an object)" -- \
    "$BIN" import --store "$TMP/f5.db" "$TMP/first5.jsonl"
expect "eval skips a first line that is no object" 0 "record 0 (line 1): expected an object" -- \
    "$BIN" eval --config "$TMP/cfg.json" --data "$TMP/first5.jsonl"
grep -qF "4 queries" "$TMP/out" && ok || bad "eval of first5.jsonl: $(cat "$TMP/out")"
printf 'query,model\nq,strong\n' >"$TMP/table.csv"
expect "import of a CSV file says what a data file is" 1 \
    "table.csv:1:5: invalid token near 'query' (expected a JSON array or JSON lines of objects)" -- \
    "$BIN" import --store "$TMP/f5.db" "$TMP/table.csv"

# A huge whole number is a number over the cap, in the record that holds it
# (skipped and counted, named with its field), not a "too big integer" that
# refused the whole file; one in a field nobody reads harms nothing.
python3 - "$TMP" <<'PY'
import json, sys
out = sys.argv[1]
recs = [r for r in json.load(open(out + "/data.json")) if r["split"] == "test"][:5]
lines = [json.dumps(r) for r in recs]
lines[2] = lines[2].replace('"input_token_length": 12', '"input_token_length": 99999999999999999999999')
lines[3] = lines[3][:-1] + ', "id": 123456789012345678901234567890}'
open(out + "/huge.jsonl", "w").write("\n".join(lines) + "\n")
open(out + "/huge.json", "w").write("[\n" + ",\n".join(lines) + "\n]\n")
PY
for f in huge.jsonl huge.json; do
    want="record 2 (line 3)"; [ $f = huge.json ] && want="record 2 (line 4)"
    rm -f "$TMP/huge.db"
    expect "import of $f" 0 \
        "imported 4 of 5 records, skipped 1 bad (first: $want: input_token_length: 1e+23 is over the cap of 1000000000)" -- \
        "$BIN" import --store "$TMP/huge.db" "$TMP/$f"
    expect "eval of $f" 0 "input_token_length: 1e+23 is over the cap of 1000000000" -- \
        "$BIN" eval --config "$TMP/cfg.json" --data "$TMP/$f"
    grep -qF "4 queries" "$TMP/out" && ok || bad "eval of $f: $(cat "$TMP/out")"
done

# A UTF-8 byte order mark (as some editors save a file) is not data: a file
# with one imports and scores as the same file without it (both refused it,
# naming neither the mark nor the problem).
python3 - "$TMP" <<'PY'
import json, sys
out = sys.argv[1]
recs = [r for r in json.load(open(out + "/data.json")) if r["split"] == "test"][:6]
open(out + "/bom.json", "w", encoding="utf-8-sig").write(json.dumps(recs))
open(out + "/bom.jsonl", "w", encoding="utf-8-sig").write("".join(json.dumps(r) + "\n" for r in recs))
PY
for f in bom.json bom.jsonl; do
    rm -f "$TMP/bom.db"
    expect "import of $f" 0 "imported 6 of 6 records" -- "$BIN" import --store "$TMP/bom.db" "$TMP/$f"
    expect "eval of $f" 0 "6 queries" -- "$BIN" eval --config "$TMP/cfg.json" --data "$TMP/$f"
done

# A record with a key twice is ambiguous (which "correctness"?): import and
# eval refuse the file and name the key and its line, as check-config does
# for a configuration; the store is left as it was. Both took the last value
# without a word.
python3 - "$TMP" <<'PY'
import json, sys
out = sys.argv[1]
recs = [r for r in json.load(open(out + "/data.json")) if r["split"] == "test"][:5]
lines = [json.dumps(r) for r in recs]
lines[2] = lines[2][:-1] + ', "query": "another"}'
open(out + "/dup.jsonl", "w").write("\n".join(lines) + "\n")
open(out + "/dup.json", "w").write("[\n" + ",\n".join(lines) + "\n]\n")
PY
for f in dup.jsonl dup.json; do
    want="line 3"; [ $f = dup.json ] && want="line 4"
    cp "$TMP/h.db" "$TMP/h.copy"
    expect "import of $f" 1 "duplicate object key near '\"query\"'" -- \
        "$BIN" import --store "$TMP/h.db" "$TMP/$f"
    grep -qF "$f:${want#line }:" "$TMP/err" && ok || bad "import of $f names $want: $(cat "$TMP/err")"
    cmp -s "$TMP/h.db" "$TMP/h.copy" && ok || bad "import of $f changed the store"
    rm -f "$TMP/h.copy"
    expect "eval of $f" 2 "$f:${want#line }:" -- \
        "$BIN" eval --config "$TMP/cfg.json" --data "$TMP/$f"
    grep -qF "duplicate object key near '\"query\"'" "$TMP/err" && ok || bad "eval of $f: $(cat "$TMP/err")"
done

# --- import and eval word a bad file alike ---
# The same fault in the same file gives the same message from both commands
# (the text after "llmroute import: " and "llmroute eval: "; import adds
# that nothing was imported). They said "f.json:1:54" and "f.json: line 1,
# column 54", "not a regular file" and "is a directory, not a data file",
# "record 1 (line 1)" and "record 1".
D=$TMP/alike
mkdir "$D"
R='{"query": "q", "input_token_length": 3, "outputs": [{"model_name": "strong", "correctness": 1, "output_token_length": 3}]}'
printf '[%s, {"query": "q", "outp' "$R" >"$D/trunc_record.json"
printf '[%s,\n' "$R" >"$D/unclosed.json"
printf '%s\n{"query": "q", "outputs": [\n' "$R" >"$D/trunc.jsonl"
printf '[%s] and more\n' "$R" >"$D/after.json"
printf '\n  query,model\nq,strong\n' >"$D/csv.json"
printf '\n\n  [%s,\n  {"query": 5, "outputs": []}]\n' "$R" >"$D/wrong_type.json"
printf '%s\n\n{"query": "q", "outputs": [{"model_name": "strong", "correctness": "yes", "output_token_length": 3}]}\n' \
    "$R" >"$D/wrong_type.jsonl"
printf '[%s, 5]\n' "$R" >"$D/not_object.json"
printf '[%s %s]\n' "$R" "$R" >"$D/no_comma.json"
printf '[%s]]\n' "$R" >"$D/bracket.json"
printf '\357AB %s\n' "$R" >"$D/not_bom.jsonl" # 0xEF first, but no byte order mark
printf '%s\n\357AB\n' "$R" >"$D/not_utf8.jsonl"
printf '[%s,\n \357]\n' "$R" >"$D/not_utf8.json"
truncate -s 1073741825 "$D/big.json" # sparse: one byte over the cap, no disk used
first_line() { head -1 "$1" | sed -e "s/^llmroute $2: //" -e 's/: nothing imported from this file$//'; }
for f in "$D/missing.json" "$D" "$D/trunc_record.json" "$D/unclosed.json" "$D/trunc.jsonl" \
    "$D/after.json" "$D/csv.json" "$D/no_comma.json" "$D/bracket.json" "$D/big.json" \
    "$D/not_bom.jsonl" "$D/not_utf8.jsonl" "$D/not_utf8.json"; do
    "$BIN" import --store "$D/s.db" "$f" >/dev/null 2>"$TMP/err"
    im=$(first_line "$TMP/err" import)
    "$BIN" eval --config "$TMP/cfg.json" --data "$f" >/dev/null 2>"$TMP/err"
    ev=$(first_line "$TMP/err" eval)
    [ -n "$im" ] && [ "$im" = "$ev" ] && ok || bad "import and eval word $f apart: [$im] [$ev]"
    rm -f "$D"/s.db*
done
# A bad record: skipped and named alike; with --strict import fails with the
# same words.
for f in "$D/wrong_type.json" "$D/wrong_type.jsonl" "$D/not_object.json"; do
    "$BIN" import --store "$D/s.db" "$f" >"$TMP/out" 2>/dev/null
    im=$(grep -o 'skipped [0-9]* bad (first: .*)' "$TMP/out")
    "$BIN" eval --config "$TMP/cfg.json" --data "$f" >/dev/null 2>"$TMP/err"
    ev=$(grep -o 'skipped [0-9]* bad (first: .*)' "$TMP/err")
    [ -n "$im" ] && [ "$im" = "$ev" ] && ok || bad "import and eval skip $f apart: [$im] [$ev]"
    rm -f "$D"/s.db*
    "$BIN" import --strict --store "$D/s.db" "$f" >/dev/null 2>"$TMP/err"
    st=$(first_line "$TMP/err" import)
    first=${ev#*(first: }
    [ "$st" = "$f: ${first%)}" ] && ok || bad "strict import and eval name the bad record of $f apart: [$st] [$ev]"
    rm -f "$D"/s.db*
done
"$BIN" eval --config "$TMP/cfg.json" --data "$D/wrong_type.json" >/dev/null 2>"$TMP/err"
grep -qF "(first: record 1 (line 4): query: expected a non-empty string)" "$TMP/err" && ok ||
    bad "eval counts the lines before an array: $(cat "$TMP/err")"
# Faults between elements and after the array name their column too.
"$BIN" eval --config "$TMP/cfg.json" --data "$D/no_comma.json" >/dev/null 2>"$TMP/err"
grep -qF "no_comma.json:1:$((${#R} + 3)): expected ',' or ']' after a record" "$TMP/err" && ok ||
    bad "eval names the column of a missing comma: $(cat "$TMP/err")"
"$BIN" eval --config "$TMP/cfg.json" --data "$D/bracket.json" >/dev/null 2>"$TMP/err"
grep -qF "bracket.json:1:$((${#R} + 3)): unexpected data after the array" "$TMP/err" && ok ||
    bad "eval names the column of data after the array: $(cat "$TMP/err")"
# A byte that is no UTF-8 is named at its own column, 1 for a line's first
# (it was the column before: 0, and for a first byte 0xEF import and eval
# said different things).
for want in "not_bom.jsonl:1:1: invalid token" "not_utf8.jsonl:2:1: unable to decode byte 0xef" \
    "not_utf8.json:2:2: unable to decode byte 0xef"; do
    "$BIN" import --store "$D/s.db" "$D/${want%%:*}" >/dev/null 2>"$TMP/err"
    grep -qF "$want" "$TMP/err" && ok || bad "import names the column of a byte: $(cat "$TMP/err")"
    rm -f "$D"/s.db*
done
rm -f "$D/big.json"

# --- the task ceiling ---
# Tasks whose models are right by chance at different rates, some models
# dearer and worse than others (off the hull), budgets from below the
# cheapest mix to above the dearest. The ceiling is checked against every
# mix of one model per task with at most one task split between two models
# (where a linear program over the shares has its optimum).
python3 - "$TMP" <<'PY'
import json, random, sys
out = sys.argv[1]
random.seed(11)
models = {"m%d" % j: (random.uniform(1e-7, 1e-5), random.uniform(1e-7, 3e-5)) for j in range(6)}
recs = []
for t in range(4):
    rate = {m: random.random() for m in models}
    length = {m: random.randint(5, 300) for m in models}
    for i in range(random.randint(3, 30)):
        recs.append({"query": "task %d question %d" % (t, i), "input_token_length": random.randint(5, 500),
                     "eval_name": "t%d" % t,
                     "outputs": [{"model_name": m, "correctness": random.random() < rate[m],
                                  "output_token_length": length[m] + random.randint(0, 50)} for m in models]})
json.dump(recs, open(out + "/tasks.json", "w"))
json.dump({"models": [{"name": m, "cost_per_input_token": p[0], "cost_per_output_token": p[1]}
                      for m, p in models.items()]}, open(out + "/tasks_cfg.json", "w"))
# Budgets spread from below the cheapest mix to above the dearest.
lo = sum(min(sum(r["input_token_length"] * models[o["model_name"]][0] + o["output_token_length"] * models[o["model_name"]][1]
                 for r in recs if r["eval_name"] == t for o in r["outputs"] if o["model_name"] == m) for m in models)
         for t in sorted({r["eval_name"] for r in recs}))
open(out + "/budgets", "w").write(",".join("%.6g" % (lo * 0.9 * 1.15 ** k) for k in range(40)))
nolabel = [dict(r) for r in recs]
del nolabel[5]["eval_name"]
json.dump(nolabel, open(out + "/tasks_nolabel.json", "w"))
PY
budgets=$(cat "$TMP/budgets")
"$BIN" eval --config "$TMP/tasks_cfg.json" --data "$TMP/tasks.json" --budget $budgets --sweep \
    --format json >"$TMP/ceiling.json" 2>"$TMP/err" && ok || bad "eval for the task ceiling: $(cat "$TMP/err")"
python3 - "$TMP" "$budgets" <<'PY' && ok || bad "task ceiling against brute force"
import itertools, json, sys
out = sys.argv[1]
recs = json.load(open(out + "/tasks.json"))
cfg = {m["name"]: (m["cost_per_input_token"], m["cost_per_output_token"]) for m in json.load(open(out + "/tasks_cfg.json"))["models"]}
res = json.load(open(out + "/ceiling.json"))
models = sorted(cfg)
tasks = sorted({r["eval_name"] for r in recs})
S = {(t, m): 0.0 for t in tasks for m in models}
C = dict(S)
for r in recs:
    for o in r["outputs"]:
        m = o["model_name"]
        S[r["eval_name"], m] += o["correctness"]
        C[r["eval_name"], m] += r["input_token_length"] * cfg[m][0] + o["output_token_length"] * cfg[m][1]
def best(budget):
    top = None
    for pure in itertools.product(models, repeat=len(tasks)):
        for split in [None] + tasks:
            for m2 in (models if split else [None]):
                base_c = sum(C[t, m] for t, m in zip(tasks, pure))
                base_s = sum(S[t, m] for t, m in zip(tasks, pure))
                if split is None:
                    f = 0.0
                else:
                    m1 = pure[tasks.index(split)]
                    dc, ds = C[split, m2] - C[split, m1], S[split, m2] - S[split, m1]
                    if dc <= 0:
                        continue
                    f = min(1.0, max(0.0, (budget - base_c) / dc))
                    base_c += f * dc
                    base_s += f * ds
                if base_c <= budget * (1 + 1e-12) and (top is None or base_s > top):
                    top = base_s
    return top
rows = [r for r in res["results"] if r["strategy"] == "task-ceiling"]
singles = [r["total_cost"] for r in res["results"] if r["strategy"].startswith("single:")]
want = [float(b) for b in sys.argv[2].split(",")] + singles
assert [r["budget"] for r in rows] == want, ([r["budget"] for r in rows], want)
cheapest = sum(min(C[t, m] for m in models) for t in tasks)
for r in rows:
    b = r["budget"]
    assert r["frontier"] is False and r["predictor"] is None and r["decision_us_p50"] is None, r
    assert abs(sum(r["model_share"].values()) - 1) < 1e-9, r
    if b < cheapest:
        assert r["feasible"] is False and abs(r["total_cost"] - cheapest) <= 1e-12 * cheapest, r
        continue
    assert r["feasible"] is True and r["total_cost"] <= b * (1 + 1e-12), r
    top = best(b)
    assert abs(r["success_rate"] - top / len(recs)) < 1e-9, (b, r["success_rate"], top / len(recs))
# Some budget must split a task (else the partial step is not tested).
split = [r for r in rows
         if 0 < r["budget"] < 1 and r["feasible"] and abs(r["total_cost"] - r["budget"]) < 1e-12]
assert split
# The shares are the mix scored: where a task is split, a fraction of a
# query (they were rounded to whole queries, a mix other than the one
# whose success and cost the row gives).
for r in split:
    counts = [v * len(recs) for v in r["model_share"].values()]
    assert any(abs(c - round(c)) > 1e-6 for c in counts), (r["budget"], counts)
# A task split between two models spends the budget whole: the row's cost
# is its budget, not a sum that rounds a little above it (and so not
# within it) or below.
for r in rows:
    if any(abs(v * len(recs) - round(v * len(recs))) > 1e-6 for v in r["model_share"].values()):
        assert r["total_cost"] == r["budget"] and r["within_budget"] is True, r
PY
# At a single model's own real cost (a --sweep budget) the ceiling can be
# that model on every task, and then it is that model's row, feasible and
# within its budget. Three records, tasks A, B, A, no input tokens; "cheap"
# costs 0.1 an output token and writes 1, 4 and 1 (real costs 0.1, 0.4 and
# 0.1), right on the first record only; "dear" costs 1 a token, writes 1
# and is right on all three. Record by record cheap costs (0.1 + 0.4) + 0.1
# = 0.6 and succeeds 1/3; task by task (0.1 + 0.1) + 0.4 =
# 0.6000000000000001, so the ceiling, summed by task, found its cheapest
# choice above the budget of 0.6 it was asked at: "below the cheapest choice
# for every query (0.6)", infeasible, not within. At dear's cost, 3, it is
# dear everywhere: success 1.
python3 - "$TMP" <<'PY'
import json, sys
out = sys.argv[1]
recs = [{"query": "question %d" % i, "input_token_length": 0, "task": t,
         "outputs": [{"model_name": "cheap", "correctness": i == 0, "output_token_length": n},
                     {"model_name": "dear", "correctness": True, "output_token_length": 1}]}
        for i, (t, n) in enumerate([("A", 1), ("B", 4), ("A", 1)])]
json.dump(recs, open(out + "/ulp.json", "w"))
json.dump({"models": [{"name": "cheap", "cost_per_input_token": 0, "cost_per_output_token": 0.1},
                      {"name": "dear", "cost_per_input_token": 0, "cost_per_output_token": 1}]},
          open(out + "/ulp_cfg.json", "w"))
PY
"$BIN" eval --config "$TMP/ulp_cfg.json" --data "$TMP/ulp.json" --sweep --format json \
    >"$TMP/ulp_out.json" 2>"$TMP/err" && ok || bad "eval of the ceiling at a model's cost: $(cat "$TMP/err")"
! grep -qF "below the cheapest choice" "$TMP/err" && ok ||
    bad "eval: the ceiling at the cheapest model's cost called below it: $(cat "$TMP/err")"
python3 - "$TMP" <<'PY' && ok || bad "eval: the task ceiling at a single model's own cost is that model"
import json, sys
res = json.load(open(sys.argv[1] + "/ulp_out.json"))["results"]
single = {r["strategy"][7:]: r for r in res if r["strategy"].startswith("single:")}
assert single["cheap"]["total_cost"] == 0.6 and single["dear"]["total_cost"] == 3.0, single
ceil = {r["budget"]: r for r in res if r["strategy"] == "task-ceiling"}
assert sorted(ceil) == [0.6, 3.0], ceil
c = ceil[0.6]
assert c["feasible"] is True and c["within_budget"] is True, c
assert c["total_cost"] == 0.6 and abs(c["success_rate"] - 1 / 3) < 1e-14, c
assert c["model_share"] == {"cheap": 1.0, "dear": 0.0}, c
d = ceil[3.0]
assert d["feasible"] is True and d["within_budget"] is True, d
assert d["total_cost"] == 3.0 and d["success_rate"] == 1.0, d
assert d["model_share"] == {"cheap": 0.0, "dear": 1.0}, d
PY
# The same at the end of the ceiling's steps: "free" costs nothing and is
# never right, "paid" costs 0.1 a token, writes 1, 4 and 1 (tasks A, B, A)
# and is always right. Its cost record by record is 0.6, task by task
# 0.6000000000000001, so the last step to it looks an ulp over the budget of
# 0.6; at its own cost the ceiling is still "paid" alone, whole, with its
# very figures, not a few 1e-17 of a query left on "free".
python3 - "$TMP" <<'PY'
import json, sys
out = sys.argv[1]
recs = [{"query": "question %d" % i, "input_token_length": 0, "task": t,
         "outputs": [{"model_name": "free", "correctness": False, "output_token_length": n},
                     {"model_name": "paid", "correctness": True, "output_token_length": n}]}
        for i, (t, n) in enumerate([("A", 1), ("B", 4), ("A", 1)])]
json.dump(recs, open(out + "/up.json", "w"))
json.dump({"models": [{"name": "free", "cost_per_input_token": 0, "cost_per_output_token": 0},
                      {"name": "paid", "cost_per_input_token": 0, "cost_per_output_token": 0.1}]},
          open(out + "/up_cfg.json", "w"))
PY
"$BIN" eval --config "$TMP/up_cfg.json" --data "$TMP/up.json" --sweep --format json \
    >"$TMP/up_out.json" 2>"$TMP/err" && ok ||
    bad "eval of the ceiling up to a model's cost: $(cat "$TMP/err")"
python3 - "$TMP" <<'PY' && ok || bad "eval: the ceiling at the best model's own cost is that model"
import json, sys
res = json.load(open(sys.argv[1] + "/up_out.json"))["results"]
paid = [r for r in res if r["strategy"] == "single:paid"][0]
assert paid["total_cost"] == 0.1 + 0.4 + 0.1, paid
c = [r for r in res if r["strategy"] == "task-ceiling" and r["budget"] == paid["total_cost"]][0]
assert c["feasible"] is True and c["within_budget"] is True, c
assert (c["success_rate"], c["total_cost"]) == (1.0, paid["total_cost"]), c
assert c["model_share"] == {"free": 0.0, "paid": 1.0}, c
PY
expect "task ceiling in the table" 0 "task-ceiling: the most success" -- \
    "$BIN" eval --config "$TMP/tasks_cfg.json" --data "$TMP/tasks.json" --budget 0.01
expect "no task ceiling without every task label" 0 "no task-ceiling rows: some scored records have no task label" -- \
    "$BIN" eval --config "$TMP/tasks_cfg.json" --data "$TMP/tasks_nolabel.json" --budget 0.01
! grep -q "^task-ceiling" "$TMP/out" && ok || bad "task-ceiling rows without every task label"

# --- every figure against a recomputation from the data ---
# eval_recompute.py recomputes, from the data and the prices alone, every
# row that does not depend on predictions (single models, random and a
# draw, sequential, the oracle, the task ceiling), bounds the smart rows by
# their shares, recomputes the frontier and versus_single from the rows,
# and checks the JSON's fields and the CSV's values. The data has what
# could trip the scoring: candidates missing from some records (skipped),
# fractional and boolean correctness, zero and fractional token counts,
# estimated input tokens of a multibyte query, a configured model with no
# outcomes, outcomes of an unconfigured one, a record only it answered, one
# no model got right, one all tie on at no cost, outcomes listed in any
# order, records of other splits and of none.
python3 - "$TMP" <<'PY'
import json, random, sys
out = sys.argv[1]
random.seed(3)
right = {"a": [1, True, 1.0, 0.75, 0], "b": [0, 1, True, False, 0.5, 0.25], "c": [0, False, 0.25, 1]}
recs = []
for i in range(120):
    q = ["add %d and %d", "name the capital of country %d near %d", "sort list %d of %d ints"][i % 3]
    q %= (i, i * 7 % 13)
    if i % 11 == 0:
        q += " \u00e9\u65e5\u672c"
    outs = [{"model_name": m, "correctness": random.choice(right[m]),
             "output_token_length": random.choice([0, 0, 3, 7.5, 40, 100])}
            for m in right if not (m == "b" and i % 17 == 5)]
    random.shuffle(outs)
    if i % 13 == 2:
        outs.append({"model_name": "ghost", "correctness": 1, "output_token_length": 5})
    r = {"query": q, "split": "train" if i % 2 else "test", "task": "t%d" % (i % 3), "outputs": outs}
    if i % 4 == 3:
        r["eval_name"] = r.pop("task")
    if i % 7 == 3:
        r["input_token_length"] = None
    elif i % 7 == 4:
        r["input_token_length"] = float(20 + i)
    elif i % 5 == 0:
        r["input_token_length"] = 0
    elif i % 5 != 1:
        r["input_token_length"] = 10 + i
    recs.append(r)
every = lambda ok, n: [{"model_name": m, "correctness": ok, "output_token_length": n} for m in right]
recs += [{"query": "nobody knows this", "split": "test", "task": "t0", "input_token_length": 4,
          "outputs": every(0, 2)},
         {"query": "all tie at no cost", "split": "test", "task": "t1", "input_token_length": 0,
          "outputs": every(1, 0)},
         {"query": "only a ghost knows", "split": "test", "input_token_length": 3,
          "outputs": [{"model_name": "ghost", "correctness": 1, "output_token_length": 1}]},
         {"query": "in no split", "input_token_length": 3, "outputs": every(1, 1)},
         {"query": "in the dev split", "split": "dev", "input_token_length": 3, "outputs": every(1, 1)}]
with open(out + "/recompute.jsonl", "w") as f:
    for r in recs:
        f.write(json.dumps(r, ensure_ascii=False) + "\n")
json.dump({"models": [
    {"name": "a", "cost_per_input_token": 3e-6, "cost_per_output_token": 1e-5},
    {"name": "b", "cost_per_input_token": 1e-6, "cost_per_output_token": 2e-6},
    {"name": "c", "cost_per_input_token": 1e-6, "cost_per_output_token": 2e-6},
    {"name": "absent", "cost_per_input_token": 0, "cost_per_output_token": 0}],
    "router": {"strategy": "smart", "n_similar": 8}}, open(out + "/recompute_cfg.json", "w"))
PY
"$BIN" import --store "$TMP/recompute.db" --split train "$TMP/recompute.jsonl" >/dev/null 2>&1
for fmt in json csv; do
    "$BIN" eval --config "$TMP/recompute_cfg.json" --store "$TMP/recompute.db" \
        --data "$TMP/recompute.jsonl" --split test --alpha 0.3,0.6 --budget 0.0001,0.005,0.02 \
        --sweep-alpha 0.3:0.7:0.1 --seed 7 --format $fmt >"$TMP/recompute.$fmt" 2>"$TMP/err" ||
        bad "eval --format $fmt for the recomputation: $(cat "$TMP/err")"
done
grep -qF "4 records lack an outcome for some candidate" "$TMP/err" && ok ||
    bad "eval of the recomputation's data: skipped records: $(cat "$TMP/err")"
python3 "$(dirname "$0")/eval_recompute.py" "$TMP/recompute.jsonl" "$TMP/recompute_cfg.json" \
    "$TMP/recompute.json" "$TMP/recompute.csv" test >"$TMP/out" && ok ||
    bad "eval's figures against a recomputation from the data: $(cat "$TMP/out")"
grep -qF "59 scored queries, 3 candidates; 13 rows recomputed" "$TMP/out" && ok ||
    bad "the recomputation covers every row: $(cat "$TMP/out")"

# Ties, recomputed alike. On the test records "x" and "y" cost the same
# (one price, one length) and "x" is never right, "y" always; "z" is dearer
# and right on task A only, so there "y" and "z" tie in success. The history
# has "x" right on 3 queries in 5 with the fewest output tokens, so smart
# routing takes "x" at a low alpha and "y" at a high one: rows at one real
# cost and different success, of which only the best are on the frontier.
# The task ceiling takes "y": of equal success the cheaper, and of equal
# cost (the cheapest choice, below every budget) the better. Without task
# labels there is no ceiling, and the last row (smart-budget) is the one
# that beats the others.
python3 - "$TMP" <<'PY'
import json, sys
out = sys.argv[1]
recs = []
for i in range(40):
    task = "A" if i % 2 == 0 else "B"
    q = "what is %d plus %d" % (i, i + 5) if task == "A" else "name the river of city %d" % i
    test = i % 4 >= 2
    right = {"x": not test and i % 5 < 3, "y": True, "z": task == "A"}
    tokens = {"x": 15, "y": 15, "z": 15} if test else {"x": 10, "y": 20, "z": 30}
    recs.append({"query": q, "input_token_length": 10, "split": "test" if test else "train",
                 "task": task,
                 "outputs": [{"model_name": m, "correctness": right[m],
                              "output_token_length": tokens[m]} for m in ("x", "y", "z")]})
json.dump(recs, open(out + "/tie.json", "w"))
for r in recs:
    del r["task"]
json.dump(recs, open(out + "/tie_nolabel.json", "w"))
json.dump({"models": [{"name": "x", "cost_per_input_token": 1e-6, "cost_per_output_token": 2e-6},
                      {"name": "y", "cost_per_input_token": 1e-6, "cost_per_output_token": 2e-6},
                      {"name": "z", "cost_per_input_token": 1e-5, "cost_per_output_token": 3e-5}]},
          open(out + "/tie_cfg.json", "w"))
PY
"$BIN" import --store "$TMP/tie.db" --split train "$TMP/tie.json" >/dev/null 2>&1
for data in tie tie_nolabel; do
    case $data in
    tie) args=(--alpha 0.3,0.95 --budget 0.0000001,1 --sweep-alpha 0.3:0.9:0.3) ;;
    tie_nolabel) args=(--alpha 0.3 --budget 1) ;;
    esac
    for fmt in json csv; do
        "$BIN" eval --config "$TMP/tie_cfg.json" --store "$TMP/tie.db" --data "$TMP/$data.json" \
            --split test --predictors default "${args[@]}" --format $fmt >"$TMP/$data.out.$fmt" \
            2>"$TMP/err" || bad "eval --format $fmt of $data.json: $(cat "$TMP/err")"
    done
    python3 "$(dirname "$0")/eval_recompute.py" "$TMP/$data.json" "$TMP/tie_cfg.json" \
        "$TMP/$data.out.json" "$TMP/$data.out.csv" test >"$TMP/out" && ok ||
        bad "eval's figures on $data.json against a recomputation: $(cat "$TMP/out")"
done
python3 - "$TMP" <<'PY' && ok || bad "eval: the ties the recomputation is to meet"
import json, sys
out = sys.argv[1]
res = json.load(open(out + "/tie.out.json"))["results"]
smart = [r for r in res if r["predictor"]]
assert len({r["total_cost"] for r in smart}) == 1, smart
assert {r["success_rate"] for r in smart} >= {0.0, 1.0}, smart
ceil = [r for r in res if r["strategy"] == "task-ceiling"]
single = {r["strategy"][7:]: r for r in res if r["strategy"].startswith("single:")}
assert [r["feasible"] for r in ceil][:2] == [False, True], ceil
assert any(r["budget"] >= single["z"]["total_cost"] for r in ceil), ceil
last = json.load(open(out + "/tie_nolabel.out.json"))["results"][-1]
assert last["strategy"] == "smart-budget" and last["success_rate"] == 1.0, last
PY

# --- the plot in odd cases, the oracle, the CSV shares ---
# Model names with every XML special character, one model that costs
# nothing (its point was left out: the log axis has no place for $0), and
# a query no model gets right.
python3 - "$TMP" <<'PY'
import json, sys
out = sys.argv[1]
names = ["free & <local> \"q\" 'x'", "mid", "dear"]
price = {names[0]: (0, 0), "mid": (1e-6, 2e-6), "dear": (2e-5, 6e-5)}
recs = []
for i in range(60):
    topic = ("sum", "river", "sort")[i % 3]
    q = {"sum": "What is %d plus %d?" % (i, i + 3),
         "river": "Which river flows through capital city number %d?" % i,
         "sort": "Write a function named f%d that sorts a list" % i}[topic]
    right = {"sum": {names[0], "mid", "dear"}, "river": {"mid", "dear"}, "sort": {"dear"}}[topic]
    if i == 4:
        right = set()  # nobody is right: the oracle takes the cheapest
    recs.append({"query": q, "input_token_length": 10, "split": "train" if i % 2 else "test",
                 "eval_name": topic,
                 "outputs": [{"model_name": m, "correctness": m in right,
                              "output_token_length": 20} for m in names]})
json.dump(recs, open(out + "/odd.json", "w"))
json.dump({"models": [{"name": m, "cost_per_input_token": p[0], "cost_per_output_token": p[1]}
                      for m, p in price.items()]}, open(out + "/odd_cfg.json", "w"))
json.dump({"models": [{"name": names[0], "cost_per_input_token": 1e-6,
                       "cost_per_output_token": 1e-6}]}, open(out + "/one_cfg.json", "w"))
PY
"$BIN" import --store "$TMP/odd.db" --split train "$TMP/odd.json" >/dev/null 2>&1
"$BIN" eval --config "$TMP/odd_cfg.json" --store "$TMP/odd.db" --data "$TMP/odd.json" --split test \
    --alpha 0.6,0.9 --budget 0.0001,0.001 --format json --plot "$TMP/odd.svg" >"$TMP/odd.out" \
    2>"$TMP/err" && ok || bad "eval of the odd fixture: $(cat "$TMP/err")"
# svgcheck.py RESULTS.json PLOT.svg: the plot is well-formed XML (expat is
# strict), and every single model of the results has a point whose tooltip
# names it and a text label that is its name, exactly.
cat >"$TMP/svgcheck.py" <<'PY'
import json, sys, xml.dom.minidom as m
res = json.load(open(sys.argv[1]))["results"]
d = m.parse(sys.argv[2])
assert d.documentElement.tagName == "svg"
titles = [t.firstChild.data for t in d.getElementsByTagName("title") if t.firstChild]
texts = [t.firstChild.data for t in d.getElementsByTagName("text") if t.firstChild]
for r in res:
    if r["strategy"].startswith("single:"):
        name = r["strategy"][7:]
        assert any(t.startswith(r["strategy"] + ":") for t in titles), (name, titles)
        assert name in texts, (name, texts)
PY
python3 "$TMP/svgcheck.py" "$TMP/odd.out" "$TMP/odd.svg" && ok ||
    bad "eval --plot: names escaped, and a point and label for each model, the free one too"
grep -qF 'free &amp; &lt;local&gt; &quot;q&quot;' "$TMP/odd.svg" && ok ||
    bad "eval --plot escapes a model's name"
# A smart row's point says which row it is: strategy, predictor and its
# alpha or budget (the tooltips said "smart-budget" for every budget).
python3 - "$TMP" <<'PY' && ok || bad "eval --plot: each smart row's point names its row"
import json, sys, xml.dom.minidom as m
out = sys.argv[1]
res = json.load(open(out + "/odd.out"))["results"]
d = m.parse(out + "/odd.svg")
titles = [t.firstChild.data for t in d.getElementsByTagName("title") if t.firstChild]
for r in res:
    if not r["predictor"]:
        continue
    want = "%s (%s) %s" % (r["strategy"], r["predictor"], "alpha %g" % r["alpha"]
                           if r["alpha"] is not None else "budget $%g" % r["budget"])
    assert sum(t.startswith(want + ":") or t.startswith(want + " (not met):")
               for t in titles) == 1, (want, titles)
# Each form has its shape: per query a circle, batch a square, budget a diamond.
for form, tag in (("smart ", "circle"), ("smart-batch ", "rect"), ("smart-budget ", "polygon")):
    shapes = {t.parentNode.tagName for t in d.getElementsByTagName("title")
              if t.firstChild and t.firstChild.data.startswith(form)}
    assert shapes == {tag}, (form, shapes)
PY
# The oracle is the cheapest model that was right; where none was, the
# cheapest model (a correctness of 0 is then the best there is).
python3 - "$TMP" <<'PY' && ok || bad "eval oracle: the cheapest correct model, else the cheapest"
import json, sys
out = sys.argv[1]
res = json.load(open(out + "/odd.out"))
recs = [r for r in json.load(open(out + "/odd.json")) if r["split"] == "test"]
price = {m["name"]: m for m in json.load(open(out + "/odd_cfg.json"))["models"]}
def cost(r, o):
    p = price[o["model_name"]]
    return (r["input_token_length"] * p["cost_per_input_token"] +
            o["output_token_length"] * p["cost_per_output_token"])
s = c = 0
share = {m: 0 for m in price}
for r in recs:
    right = [o for o in r["outputs"] if o["correctness"]] or r["outputs"]
    best = min(right, key=lambda o: cost(r, o))
    s += best["correctness"]
    c += cost(r, best)
    share[best["model_name"]] += 1
assert any(not any(o["correctness"] for o in r["outputs"]) for r in recs)
orc = [r for r in res["results"] if r["strategy"] == "oracle"][0]
assert abs(orc["success_rate"] - s / len(recs)) < 1e-12, (orc, s)
assert abs(orc["total_cost"] - c) <= 1e-12 * c, (orc, c)
assert all(abs(orc["model_share"][m] - share[m] / len(recs)) < 1e-12 for m in share), orc
PY
# Degenerate plots: one model (every row at one point, a linear cost axis),
# and no store (no smart rows): each well-formed, the model labelled.
"$BIN" eval --config "$TMP/one_cfg.json" --store "$TMP/odd.db" --data "$TMP/odd.json" \
    --split test --sweep --format json --plot "$TMP/one.svg" >"$TMP/one.out" 2>"$TMP/err" &&
    python3 "$TMP/svgcheck.py" "$TMP/one.out" "$TMP/one.svg" && ok ||
    bad "eval --plot with one model: $(cat "$TMP/err")"
"$BIN" eval --config "$TMP/odd_cfg.json" --data "$TMP/odd.json" --split test \
    --format json --plot "$TMP/nostore.svg" >"$TMP/nostore.out" 2>"$TMP/err" &&
    python3 "$TMP/svgcheck.py" "$TMP/nostore.out" "$TMP/nostore.svg" && ok ||
    bad "eval --plot without a store: $(cat "$TMP/err")"
# CSV: each row's shares sum to 1, as JSON's do (they were printed with six
# decimals: random's thirds summed to 0.999999), and a name with quotes is
# one quoted field.
"$BIN" eval --config "$TMP/odd_cfg.json" --store "$TMP/odd.db" --data "$TMP/odd.json" \
    --split test --format csv >"$TMP/odd.csv" 2>"$TMP/err" && ok ||
    bad "eval csv of the odd fixture: $(cat "$TMP/err")"
python3 - "$TMP/odd.csv" <<'PY' && ok || bad "eval csv: shares sum to 1, names quoted"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1], newline="")))
cols = [k for k in rows[0] if k.startswith("share:")]
assert "share:free & <local> \"q\" 'x'" in cols, cols
assert "single:free & <local> \"q\" 'x'" in [r["strategy"] for r in rows]
for r in rows:
    assert abs(sum(float(r[k]) for k in cols) - 1) < 1e-9, r
PY
# The table's largest shares: a model chosen for one query of 250 is "<1%",
# not "0%", and the other ">99%", not "100%" (the oracle takes "dear" where
# only it was right).
python3 - "$TMP" <<'PY'
import json, sys
out = sys.argv[1]
recs = [{"query": "question %d" % i, "input_token_length": 10,
         "outputs": [{"model_name": "cheap", "correctness": i != 7, "output_token_length": 5},
                     {"model_name": "dear", "correctness": 1, "output_token_length": 5}]}
        for i in range(250)]
json.dump(recs, open(out + "/few.json", "w"))
json.dump({"models": [{"name": "cheap", "cost_per_input_token": 1e-7, "cost_per_output_token": 1e-7},
                      {"name": "dear", "cost_per_input_token": 1e-5, "cost_per_output_token": 1e-5}]},
          open(out + "/few_cfg.json", "w"))
PY
expect "eval table of a rare choice" 0 "" -- "$BIN" eval --config "$TMP/few_cfg.json" --data "$TMP/few.json"
grep -E '^oracle .*cheap >99%, dear <1%$' "$TMP/out" >/dev/null && ok ||
    bad "eval table: a rare choice's share: $(grep '^oracle' "$TMP/out")"

# A model's name of any length the config allows comes out whole in every
# format (the row names were cut at 95 bytes, the table's shares at 159).
python3 - "$TMP" <<'PY'
import json, sys
out = sys.argv[1]
long = "acme-research/" + "instruction-tuned-long-context-model-" * 5 + "v2"
recs = json.load(open(out + "/data.json"))
for r in recs:
    for o in r["outputs"]:
        if o["model_name"] == "mid":
            o["model_name"] = long
json.dump(recs, open(out + "/long.json", "w"))
cfg = json.load(open(out + "/cfg.json"))
cfg["models"] = [dict(m, name=long) if m["name"] == "mid" else m
                 for m in cfg["models"] if m["name"] != "unused"]
json.dump(cfg, open(out + "/long_cfg.json", "w"))
open(out + "/long_name", "w").write(long)
PY
LONG=$(cat "$TMP/long_name")
"$BIN" import --store "$TMP/long.db" --split train "$TMP/long.json" >/dev/null 2>&1
for fmt in json csv table; do
    "$BIN" eval --config "$TMP/long_cfg.json" --store "$TMP/long.db" --data "$TMP/long.json" \
        --split test --predictors default --sweep-alpha 0.5:0.9:0.2 --format $fmt \
        --plot "$TMP/long.svg" >"$TMP/long_out.$fmt" 2>"$TMP/err" && ok ||
        bad "eval --format $fmt with a long model name: $(cat "$TMP/err")"
done
python3 - "$TMP" "$LONG" <<'PY' && ok || bad "eval: a long model name whole in json, csv and the plot"
import csv, json, sys
import xml.etree.ElementTree as ET
out, long = sys.argv[1], sys.argv[2]
res = json.load(open(out + "/long_out.json"))
names = [r["strategy"] for r in res["results"]]
assert "single:" + long in names, names
assert any(v["model"] == long for v in res["versus_single"]), res["versus_single"]
assert all(long in r["model_share"] for r in res["results"])
rows = list(csv.DictReader(open(out + "/long_out.csv", newline="")))
assert "single:" + long in [r["strategy"] for r in rows], [r["strategy"] for r in rows]
assert "share:" + long in rows[0], list(rows[0])
svg = ET.parse(out + "/long.svg").getroot()
texts = ["".join(t.itertext()) for t in svg.iter("{http://www.w3.org/2000/svg}text")]
assert long in texts, texts
titles = ["".join(t.itertext()) for t in svg.iter("{http://www.w3.org/2000/svg}title")]
assert any(t.startswith("single:" + long + ":") for t in titles), titles
PY
grep -qF "single:$LONG " "$TMP/long_out.table" && grep -qF "$LONG 100%" "$TMP/long_out.table" &&
    grep -qE "^oracle .*$LONG [0-9]+%" "$TMP/long_out.table" && grep -q "^$LONG " "$TMP/long_out.table" &&
    ok || bad "eval table: a long model name whole: $(cat "$TMP/long_out.table")"

summary
