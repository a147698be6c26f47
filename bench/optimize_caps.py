#!/usr/bin/python3
"""optimize_caps.py -- the batch optimizer over many models of small capacity.

1,000 queries over 100 models (bench/optimize_bench.c --models 100: the 11
RouterBench models and jittered copies of them), alpha 0.8, every model the
same capacity: 11 (room for 1,100), 10 (the batch fills every model) and 9
(room for 900: infeasible, the optimizer reports it with the best
reachable assignment). llmroute's assignment is read back and checked:
one model per query, every capacity kept (at capacity 9, exactly 100
queries over capacity, the fewest), alpha met, the cost recomputed. For
each, llmroute's median of --runs runs, wall and
thread CPU, beside its anchor:

  - capacities 11 and 10: CBC (through PuLP) on the same integer program,
    as bench/optimize_cbc.py solves it, its own CPU time from its log; the
    ratio is CBC's CPU time over llmroute's. llmroute's assignment is
    checked against every constraint and its cost recomputed
    (optimize_cbc.check_assignment); the gap to CBC's answer is printed.
  - capacity 9: CBC has no answer to compare (the integer program is
    infeasible), so the anchor is llmroute itself on the capacity-10
    instance, the least capacity that holds the batch: the ratio is what
    reporting the infeasible batch costs over solving the one that fits.

With --old BIN (an optimize_bench built from another version) each case is
also run on it, alternating with the current one run by run, and the ratio
old / new of the medians is printed.

    /usr/bin/python3 bench/optimize_caps.py --bench build/bench/optimize_bench
        [--old OLD_BIN] [--runs 5] [--cbc-limit 300] [--no-cbc]

Exits 1 when an assignment breaks a constraint or the feasibility reported
is not the one expected.
"""
import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
N, M, ALPHA, SEED = 1000, 100, 0.8, 1
CAPS = (11, 10, 9)


def load_cbc_module():
    spec = importlib.util.spec_from_file_location("optimize_cbc",
                                                  os.path.join(HERE, "optimize_cbc.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run_once(bench, cap, path=None):
    cmd = [bench, "--n", str(N), "--models", str(M), "--cap", str(cap), "--alpha", str(ALPHA),
           "--seed", str(SEED), "--runs", "1"]
    if path is not None:
        cmd += ["--write", path, "--assign", path + ".assign"]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def check(path, ours, expect):
    """Every query on one of the models; every capacity kept when the batch
    fits, else exactly N - sum L over them; alpha met when reported so; the
    reported cost recomputed. Returns (cost, problems)."""
    with open(path) as f:
        n, m = (int(x) for x in f.readline().split()[:2])
        caps = [int(x) for x in f.readline().split()]
        quality = [[float(x) for x in f.readline().split()] for _ in range(n)]
        cost = [[float(x) for x in f.readline().split()] for _ in range(n)]
    with open(path + ".assign") as f:
        assign = [int(line) for line in f]
    problems = []
    if len(assign) != n or any(not 0 <= j < m for j in assign):
        return float("nan"), ["not one model per query"]
    load = [0] * m
    for j in assign:
        load[j] += 1
    over = sum(max(0, load[j] - caps[j]) for j in range(m))
    least_over = max(0, n - sum(caps))
    if over != least_over:
        problems.append(f"{over} queries over capacity, the least is {least_over}")
    total = sum(cost[i][j] for i, j in enumerate(assign))
    mean_q = sum(quality[i][j] for i, j in enumerate(assign)) / n
    if (expect or "is met" in ours["message"]) and mean_q < ALPHA * (1 - 1e-9):
        problems.append(f"mean quality {mean_q:.9f} < alpha {ALPHA}")
    if abs(total - ours["cost"]) > 1e-9 * max(1.0, total):
        problems.append(f"reported cost {ours['cost']:.12g} != recomputed {total:.12g}")
    return total, problems


def median(xs):
    xs = sorted(xs)
    k = len(xs)
    return xs[k // 2] if k % 2 else (xs[k // 2 - 1] + xs[k // 2]) / 2


def measure(bench, old, cap, runs, path):
    """Alternate new and old runs; returns the last new answer and the
    medians (wall ms, CPU ms) of each side."""
    new_t, old_t, last = [], [], None
    for _ in range(runs):
        last = run_once(bench, cap, path)
        new_t.append((last["median_ms"], last["median_cpu_ms"]))
        if old is not None:
            o = run_once(old, cap)
            if (o["feasible"], o["cost"]) != (last["feasible"], last["cost"]):
                print(f"  note: the old answer differs: feasible {o['feasible']} "
                      f"cost {o['cost']:.9f}")
            old_t.append((o["median_ms"], o["median_cpu_ms"]))
    med = lambda ts, k: median([t[k] for t in ts]) if ts else float("nan")
    return last, (med(new_t, 0), med(new_t, 1)), (med(old_t, 0), med(old_t, 1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", required=True, help="path to the optimize_bench executable")
    ap.add_argument("--old", help="an optimize_bench of another version, run alternately")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--cbc-limit", type=float, default=300.0)
    ap.add_argument("--no-cbc", action="store_true", help="leave CBC out (its solves take ~1 min)")
    args = ap.parse_args()
    cbc = None if args.no_cbc else load_cbc_module()
    status = 0
    print(f"{N} queries x {M} models, alpha {ALPHA}, seed {SEED}, every model capacity L; "
          f"llmroute median of {args.runs} runs" + (f", old: {args.old}" if args.old else ""))
    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        for cap in CAPS:
            path = os.path.join(tmp, f"cap{cap}.txt")
            ours, (wall, cpu), (old_wall, old_cpu) = measure(args.bench, args.old, cap,
                                                               args.runs, path)
            results[cap] = (ours, wall, cpu)
            expect = cap * M >= N
            line = (f"L={cap:>2}: feasible {ours['feasible']} rc {ours['rc']:>2} "
                    f"cost {ours['cost']:.6f} mean q {ours['mean_quality']:.6f} | "
                    f"llmroute {wall:9.1f} ms wall {cpu:9.1f} ms CPU")
            if args.old:
                line += (f" | old {old_wall:9.1f} ms wall {old_cpu:9.1f} ms CPU, "
                         f"old/new {old_wall / wall:6.1f}x wall {old_cpu / cpu:6.1f}x CPU")
            print(line)
            if bool(ours["feasible"]) != expect:
                print(f"  FAIL: feasible {ours['feasible']}, expected {int(expect)}")
                status = 1
            total, problems = check(path, ours, expect)
            for p in problems:
                print(f"  FAIL: {p}")
                status = 1
            if cbc is not None:
                if expect:
                    r = cbc.solve_cbc(path, args.cbc_limit)
                    lp = cbc.solve_cbc(path, args.cbc_limit, relax=True)
                    gap = 100.0 * (total - r["objective"]) / r["objective"]
                    gap_lp = 100.0 * (total - lp["objective"]) / lp["objective"]
                    limit = " (time limit)" if r["hit_limit"] else ""
                    print(f"  anchor CBC: {r['status']}{limit} "
                          f"cost {r['objective']:.6f}, {r['cbc_cpu_s']:.2f} s CPU "
                          f"({r['cbc_s']:.2f} s wall): CBC CPU / llmroute CPU "
                          f"{1000.0 * r['cbc_cpu_s'] / cpu:.0f}x; llmroute's cost "
                          f"{gap:+.4f}% vs CBC, {gap_lp:+.4f}% vs the LP optimum")
                    if ours["bound"] > lp["objective"] * (1 + 1e-9) + 1e-12:
                        print(f"  FAIL: bound {ours['bound']:.9f} above the LP optimum")
                        status = 1
        fit_cpu = results[10][2]
        print(f"L= 9 anchor (llmroute on L=10, the least that holds the batch): "
              f"{results[9][2] / fit_cpu:.1f}x its CPU time ({results[9][2]:.1f} ms vs "
              f"{fit_cpu:.1f} ms)")
    return status


if __name__ == "__main__":
    sys.exit(main())
