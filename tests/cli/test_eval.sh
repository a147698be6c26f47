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
expect "route names a bad query by its place" 2 "query 3: smart routing needs the query text" -- \
    "$BIN" route --config "$TMP/cfg.json" --store "$TMP/h.db" "What is 1 plus 1?" "x" ""
expect "route --batch names a bad query by its place" 2 "query 3: smart routing needs the query text" -- \
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
python3 - "$TMP" <<'PY' && ok || bad "eval json scores"
import json, sys
out = sys.argv[1]
res = json.load(open(out + "/eval.json"))
data = [r for r in json.load(open(out + "/data.json")) if r["split"] == "test"]
assert res["queries"] == len(data) == 87, res["queries"]
rows = {(r["strategy"], r["predictor"], r["alpha"], r["frontier"]): r for r in res["results"]}
price = {"strong": (1e-5, 3e-5), "mid": (1e-6, 2e-6), "cheap": (1e-7, 2e-7)}
def real(r, m):
    o = [o for o in r["outputs"] if o["model_name"] == m][0]
    return float(o["correctness"]), r["input_token_length"] * price[m][0] + o["output_token_length"] * price[m][1]
for m in price:
    row = rows[("single:" + m, None, None, False)]
    s = sum(real(r, m)[0] for r in data) / len(data)
    c = sum(real(r, m)[1] for r in data)
    assert abs(row["success_rate"] - s) < 1e-12 and abs(row["total_cost"] - c) <= 1e-12 * c, (m, row, s, c)
    assert row["model_share"][m] == 1.0
# The oracle: cheapest correct model everywhere; success 1 on this fixture.
orc = rows[("oracle", None, None, False)]
oc = sum(min(real(r, m)[1] for m in price if real(r, m)[0] == 1) for r in data)
assert orc["success_rate"] == 1.0 and abs(orc["total_cost"] - oc) <= 1e-12 * oc, orc
assert abs(sum(rows[("random", None, None, False)]["model_share"].values()) - 1) < 1e-9
# Smart per query at 0.7 must beat the single strong model on cost at equal success here.
sm = rows[("smart", "default", 0.7, False)]
strong = rows[("single:strong", None, None, False)]
assert sm["success_rate"] >= 0.95 and sm["total_cost"] < strong["total_cost"] / 2, sm
assert sm["decision_us_p50"] is not None and sm["decision_us_p50"] > 0
assert ("smart", "aios", 0.7, False) in rows
b = rows[("smart-batch", "default", 0.9, False)]
assert b["feasible"] is True and b["predicted_quality"] >= 0.9 - 1e-9, b
frontier = [r for r in res["results"] if r["frontier"]]
assert len(frontier) >= 10
assert any(r["strategy"] == "smart-budget" and r["budget"] == 0.01 for r in res["results"])
# --sweep: the budget form at each single model's real cost joins the frontier,
# and every single model is compared with the best frontier point at no higher cost.
singles = {r["strategy"][7:]: r for r in res["results"] if r["strategy"].startswith("single:")}
for m, s in singles.items():
    assert any(r["frontier"] and r["strategy"] == "smart-budget" and r["budget"] == s["total_cost"]
               for r in res["results"]), m
vs = {v["model"]: v for v in res["versus_single"]}
assert set(vs) == set(singles), vs
for m, v in vs.items():
    s = singles[m]
    cheaper = [r for r in frontier if r["total_cost"] <= s["total_cost"]]
    best = max((r["success_rate"] for r in cheaper), default=None)
    assert v["frontier_success_rate"] == best, (m, v, best)
    assert best is None or v["frontier_total_cost"] <= s["total_cost"]
    assert v["above"] == (best is not None and best >= s["success_rate"]), v
# On this fixture the router reaches the strong model's success for less.
assert vs["strong"]["above"] and vs["strong"]["frontier_total_cost"] < singles["strong"]["total_cost"], vs["strong"]
PY
python3 -c "import sys, xml.dom.minidom as m; d = m.parse(sys.argv[1]); assert d.documentElement.tagName == 'svg'; assert len(d.getElementsByTagName('polyline')) == 1; t = [x.firstChild.data for x in d.getElementsByTagName('text') if x.firstChild]; assert 'strong' in t and 'cheap' in t, t" "$TMP/plot.svg" \
    && ok || bad "eval --plot writes an SVG with the frontier and labelled models"
"$BIN" eval --config "$TMP/cfg.json" --store "$TMP/h.db" --data "$TMP/data.jsonl" --split test --format csv >"$TMP/eval.csv" 2>"$TMP/err"
rc=$?
[ $rc -eq 0 ] && ok || bad "eval --format csv: exit $rc: $(cat "$TMP/err")"
python3 -c "import csv, sys; rows = list(csv.DictReader(open(sys.argv[1]))); assert len(rows) >= 8 and 'share:strong' in rows[0], rows[0]" "$TMP/eval.csv" \
    && ok || bad "eval --format csv"
expect "eval table" 0 "oracle" -- "$BIN" eval --config "$TMP/cfg.json" --store "$TMP/h.db" --data "$TMP/data.json" --split test
expect "eval with a model without price" 2 "models[1] 'mid' has no cost_per_output_token" -- \
    "$BIN" eval --config "$TMP/noprice.json" --store "$TMP/h.db" --data "$TMP/data.json"
expect "eval with a truncated data file" 2 "trunc.json:1:" -- \
    "$BIN" eval --config "$TMP/cfg.json" --store "$TMP/h.db" --data "$TMP/trunc.json"
expect "eval with an unknown split" 2 "no records in split dev" -- \
    "$BIN" eval --config "$TMP/cfg.json" --store "$TMP/h.db" --data "$TMP/data.json" --split dev
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
# An empty split name matched no record and said only "0 of N imported".
expect "import --split with no name" 2 "--split: expected a split name" -- \
    "$BIN" import --store "$TMP/h.db" --split "" "$TMP/data.json"
expect "eval --split with no name" 2 "--split: expected a split name" -- \
    "$BIN" eval --config "$TMP/cfg.json" --data "$TMP/data.json" --split ""
# The random row's generator takes seed 0 as 1 (xorshift has no zero
# state): --seed 0 gave seed 1's row. Seeds start at 1.
expect "eval --seed 0" 2 "--seed: expected an integer from 1 to 2147483647, got '0'" -- \
    "$BIN" eval --config "$TMP/cfg.json" --data "$TMP/data.json" --seed 0
# A value given twice printed its rows twice; an empty list asked for names.
expect "eval --alpha with a value twice" 2 "--alpha: 0.7 is given twice ('0.7' and '0.70')" -- \
    "$BIN" eval --config "$TMP/cfg.json" --store "$TMP/h.db" --data "$TMP/data.json" --alpha 0.7,0.8,0.70
expect "eval --budget with a value twice" 2 "--budget: '0.5' is given twice" -- \
    "$BIN" eval --config "$TMP/cfg.json" --store "$TMP/h.db" --data "$TMP/data.json" --budget 0.5,0.5
expect "eval --predictors with a name twice" 2 "--predictors: 'aios' is given twice" -- \
    "$BIN" eval --config "$TMP/cfg.json" --store "$TMP/h.db" --data "$TMP/data.json" --predictors aios,aios
expect "eval --alpha with an empty list" 2 "--alpha: the list is empty; give one or more numbers" -- \
    "$BIN" eval --config "$TMP/cfg.json" --data "$TMP/data.json" --alpha ""
expect "eval --alpha with an empty item" 2 "--alpha: number 2 of the list is empty" -- \
    "$BIN" eval --config "$TMP/cfg.json" --data "$TMP/data.json" --alpha 0.5,,0.6
expect "route --models with a name twice" 2 "--models: 'mid' is given twice" -- \
    "$BIN" route --config "$TMP/cfg.json" --strategy sequential --models mid,cheap,mid "What is 1 plus 1?"
# A model name with a comma or a quote: the CSV header's share column is
# one field (it was share: followed by a separately quoted name).
python3 - "$TMP" <<'PY'
import json, sys
out = sys.argv[1]
names = ["a,b", 'q"x']
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
assert rows[0][-2:] == ["share:a,b", 'share:q"x'], rows[0]
single = [r for r in rows if r[0] == "single:a,b"][0]
assert float(single[-2]) == 1.0 and float(single[-1]) == 0.0, single
PY

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
assert any(0 < r["budget"] < 1 and r["feasible"] and abs(r["total_cost"] - r["budget"]) < 1e-12 for r in rows)
PY
expect "task ceiling in the table" 0 "task-ceiling: the most success" -- \
    "$BIN" eval --config "$TMP/tasks_cfg.json" --data "$TMP/tasks.json" --budget 0.01
expect "no task ceiling without every task label" 0 "no task-ceiling rows: some scored records have no task label" -- \
    "$BIN" eval --config "$TMP/tasks_cfg.json" --data "$TMP/tasks_nolabel.json" --budget 0.01
! grep -q "^task-ceiling" "$TMP/out" && ok || bad "task-ceiling rows without every task label"

summary
