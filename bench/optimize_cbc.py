#!/usr/bin/python3
"""optimize_cbc.py -- the batch optimizer against CBC on the same integer program.

For each configuration (n queries x 11 models, alpha, capacities) this runs
the C benchmark (bench/optimize_bench.c), which builds a seeded instance,
writes it to a file, and times llmroute's optimizer over several runs; then it
reads that same instance and solves the integer program of the ECCOS paper

    min  sum_ij cost_ij x_ij
    s.t. sum_j x_ij = 1                    for every query i
         sum_ij quality_ij x_ij >= alpha*n
         sum_i x_ij <= L_j                 for every capacitated model j
         x_ij in {0, 1}

with PuLP and CBC, and prints, side by side: llmroute's median time, CBC's
median time, the speed ratio, and llmroute's cost against CBC's answer and
against the LP relaxation's optimum, solved here by CBC too.

llmroute's answer is not taken on its word: optimize_bench writes its
assignment out, and this script checks every constraint of it (one model
per query, mean quality >= alpha or cost <= budget, the capacities) and
recomputes its cost from the instance; the cost used below is the
recomputed one. A violated constraint or a cost that differs from the
reported one fails the script (status 1).

Gaps: "gap vs CBC" is against CBC's answer, which is the optimum only when
CBC proved it within its default tolerance (it can be slightly above the
optimum, so this gap can be negative); "gap vs LP" is against the LP
relaxation's optimum, a proven lower bound on any assignment's cost, so
the true optimality gap is at most that. llmroute's own Lagrangian bound
must not exceed the LP optimum (checked).

CBC's time is taken from CBC's own log ("Wallclock seconds"): the solver
alone, including reading the model file, excluding PuLP's model building.
PuLP's end-to-end time is printed too. CBC solves each instance
--cbc-runs times (default 3) at n <= --cbc-runs-max-n (default 1,000) and
once above it (marked "one CBC run"), and the median time is used;
llmroute's time is the median of --runs runs. CBC gets a time limit
(--cbc-limit); a run that hits it is marked, and its objective is then
only an incumbent.

Run with Debian's python3 (where python3-pulp lives):
    /usr/bin/python3 bench/optimize_cbc.py --bench build/bench/optimize_bench
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

try:
    import pulp
except ImportError:
    sys.exit("optimize_cbc.py: PuLP is not installed for %s: install python3-pulp and "
             "coinor-cbc (scripts/deps.sh bench) and run it with /usr/bin/python3"
             % sys.executable)


def read_instance(path):
    with open(path) as f:
        head = f.readline().split()
        n, m = int(head[0]), int(head[1])
        alpha, budget = float(head[2]), float(head[3])
        caps = [int(x) for x in f.readline().split()]
        quality = [[float(x) for x in f.readline().split()] for _ in range(n)]
        cost = [[float(x) for x in f.readline().split()] for _ in range(n)]
    return n, m, alpha, budget, caps, quality, cost


def cbc_solver(limit, log_path):
    """PuLP's bundled CBC when it has one, else the system cbc (coinor-cbc)."""
    kwargs = dict(msg=0, timeLimit=limit, logPath=log_path)
    bundled = pulp.PULP_CBC_CMD(**kwargs)
    if bundled.available():
        return bundled
    return pulp.COIN_CMD(**kwargs)


def check_assignment(path, assign_path, ours):
    """Check llmroute's assignment against every constraint of the instance
    and recompute its cost and mean quality; returns (cost, problems)."""
    n, m, alpha, budget, caps, quality, cost = read_instance(path)
    with open(assign_path) as f:
        assign = [int(line) for line in f]
    problems = []
    if len(assign) != n:
        problems.append(f"{len(assign)} assignments for {n} queries")
    bad = [i for i, j in enumerate(assign) if not 0 <= j < m]
    if bad:
        problems.append(f"{len(bad)} queries without exactly one model (first: query {bad[0]})")
    good = [(i, j) for i, j in enumerate(assign) if 0 <= j < m]
    total = sum(cost[i][j] for i, j in good)
    mean_q = sum(quality[i][j] for i, j in good) / n
    if ours["form"] == "quality" and mean_q < alpha - 1e-9:
        problems.append(f"mean quality {mean_q:.9f} < alpha {alpha}")
    if ours["form"] == "budget" and total > budget * (1 + 1e-9):
        problems.append(f"cost {total:.9f} > budget {budget}")
    for j in range(m):
        used = sum(1 for _, jj in good if jj == j)
        if caps[j] > 0 and used > caps[j]:
            problems.append(f"model {j}: {used} queries > capacity {caps[j]}")
    if abs(total - ours["cost"]) > 1e-9 * max(1.0, abs(total)):
        problems.append(f"reported cost {ours['cost']:.12g} != recomputed {total:.12g}")
    return total, problems


def solve_cbc(path, limit, relax=False):
    n, m, alpha, _budget, caps, quality, cost = read_instance(path)
    t0 = time.perf_counter()
    prob = pulp.LpProblem("assign", pulp.LpMinimize)
    cat = "Continuous" if relax else "Binary"
    x = [[pulp.LpVariable(f"x_{i}_{j}", lowBound=0, upBound=1, cat=cat) for j in range(m)]
         for i in range(n)]
    prob += pulp.lpSum(cost[i][j] * x[i][j] for i in range(n) for j in range(m))
    for i in range(n):
        prob += pulp.lpSum(x[i]) == 1
    prob += pulp.lpSum(quality[i][j] * x[i][j] for i in range(n) for j in range(m)) >= alpha * n
    for j in range(m):
        if caps[j] > 0:
            prob += pulp.lpSum(x[i][j] for i in range(n)) <= caps[j]
    build_s = time.perf_counter() - t0
    with tempfile.NamedTemporaryFile(suffix=".log", delete=False) as logf:
        log_path = logf.name
    try:
        t1 = time.perf_counter()
        prob.solve(cbc_solver(limit, log_path))
        pulp_s = time.perf_counter() - t1
        with open(log_path) as f:
            log = f.read()
    finally:
        os.unlink(log_path)
    wall = re.findall(r"Wallclock seconds\)?:\s*([0-9.]+)", log)
    cbc_s = float(wall[-1]) if wall else pulp_s
    # CBC's own CPU time: a long solve's wall time takes in the load of
    # other processes on a shared machine, which llmroute's short runs
    # mostly miss; the CPU ratio is the one load does not move.
    cpu = re.findall(r"Total time \(CPU seconds\):\s*([0-9.]+)", log)
    cbc_cpu_s = float(cpu[-1]) if cpu else float("nan")
    stopped = bool(re.search(r"Stopped on time|time limit", log, re.I))
    status = pulp.LpStatus[prob.status]
    obj = pulp.value(prob.objective) if status in ("Optimal", "Not Solved") or stopped else None
    if obj is None and prob.status == 1:
        obj = pulp.value(prob.objective)
    return dict(status=status, objective=obj, cbc_s=cbc_s, cbc_cpu_s=cbc_cpu_s, pulp_s=pulp_s,
                build_s=build_s,
                hit_limit=stopped, timed_from_log=bool(wall))


def run_bench(bench, n, seed, alpha, caps, runs, path):
    out = subprocess.run([bench, "--n", str(n), "--seed", str(seed), "--alpha", str(alpha),
                          "--caps", str(caps), "--runs", str(runs), "--write", path,
                          "--assign", path + ".assign"],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def median(xs):
    xs = sorted(xs)
    h = len(xs) // 2
    return xs[h] if len(xs) % 2 else (xs[h - 1] + xs[h]) / 2


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bench", required=True, help="path to the optimize_bench executable")
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--alphas", default="0.70,0.80")
    ap.add_argument("--caps", default="0,0.3", help="capacity per model as a fraction of n; 0 = none")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--runs", type=int, default=7, help="llmroute runs per instance (median)")
    ap.add_argument("--cbc-limit", type=float, default=300.0, help="CBC time limit, seconds")
    ap.add_argument("--cbc-runs", type=int, default=3, help="CBC runs per instance (median)")
    ap.add_argument("--cbc-runs-max-n", type=int, default=1000,
                    help="above this n, CBC runs once")
    args = ap.parse_args()

    print(f"llmroute batch optimizer vs CBC {'(PuLP ' + pulp.__version__ + ')'}: "
          f"11 models, quality form, seed {args.seed}, llmroute median of {args.runs} runs, "
          f"CBC median of {args.cbc_runs} runs up to n={args.cbc_runs_max_n} (one run above), "
          f"CBC time limit {args.cbc_limit:g} s")
    header = (f"{'n':>6} {'alpha':>5} {'caps':>5} | {'llmroute ms':>11} {'CBC s':>8} "
              f"{'PuLP s':>7} {'ratio':>8} {'CPU ratio':>9} | {'cost':>10} {'CBC cost':>10} "
              f"{'vs CBC':>8} "
              f"{'LP bound':>10} {'vs LP':>8} | note")
    print("cost = llmroute's, recomputed here from its assignment after checking every "
          "constraint.\nvs CBC = (cost - CBC's answer) / CBC's answer: the gap to CBC's answer, "
          "negative when CBC stopped within its\ndefault tolerance above the optimum.\n"
          "vs LP = (cost - LP optimum) / LP optimum: the proven one, an upper bound on the gap "
          "to the true optimum.\nratio = CBC's time / llmroute's; '>=' where CBC stopped on its "
          "time limit: it would have taken longer, so that ratio is only a lower bound.\n"
          "CPU ratio = CBC's CPU seconds (its log) / llmroute's median CPU time: the ratio "
          "that load from other\nprocesses does not move (a long CBC solve's wall time takes "
          "it in, llmroute's short runs mostly miss it).")
    print(header)
    print("-" * len(header))
    rows = []
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for n in [int(s) for s in args.sizes.split(",")]:
            for alpha in [float(s) for s in args.alphas.split(",")]:
                for caps in [float(s) for s in args.caps.split(",")]:
                    path = os.path.join(tmp, f"inst_{n}_{alpha}_{caps}.txt")
                    ours = run_bench(args.bench, n, args.seed, alpha, caps, args.runs, path)
                    cost, problems = check_assignment(path, path + ".assign", ours)
                    k = args.cbc_runs if n <= args.cbc_runs_max_n else 1
                    solves = [solve_cbc(path, args.cbc_limit) for _ in range(max(k, 1))]
                    cbc = solves[-1]
                    cbc_s = median([s["cbc_s"] for s in solves])
                    cbc_cpu_s = median([s["cbc_cpu_s"] for s in solves])
                    pulp_s = median([s["pulp_s"] for s in solves])
                    lp = solve_cbc(path, args.cbc_limit, relax=True)
                    lp_obj = lp["objective"] if lp["status"] == "Optimal" else None
                    ms = ours["median_ms"]
                    ratio = cbc_s * 1e3 / ms if ms > 0 else float("inf")
                    cpu_ms = ours["median_cpu_ms"]
                    cpu_ratio = cbc_cpu_s * 1e3 / cpu_ms if cpu_ms > 0 else float("inf")
                    # A CBC solve stopped by its time limit would have taken
                    # longer: the ratio is only a lower bound, printed ">=".
                    limited = any(sv["hit_limit"] for sv in solves)
                    ratio_txt = (">=" if limited else "") + f"{ratio:.0f}x"
                    cpu_txt = (">=" if limited else "") + f"{cpu_ratio:.0f}x"
                    note = []
                    if k == 1:
                        note.append("one CBC run")
                    if lp_obj is not None and ours["bound"] > lp_obj * (1 + 1e-9) + 1e-12:
                        problems.append(f"llmroute's bound {ours['bound']:.12g} above the LP "
                                        f"optimum {lp_obj:.12g}")
                    if problems:
                        failed = True
                        note.append("CHECK FAILED: " + "; ".join(problems))
                    if not ours["feasible"]:
                        note.append("llmroute: " + ours["message"])
                    if limited:
                        note.append(f"CBC stopped at its {args.cbc_limit:g} s limit: the ratio "
                                    "is a lower bound")
                    if cbc["status"] != "Optimal":
                        note.append(f"CBC status {cbc['status']}")
                    if not cbc["timed_from_log"]:
                        note.append("CBC time from PuLP (no log)")
                    gap = lp_gap = float("nan")
                    if cbc["objective"]:
                        gap = 100.0 * (cost - cbc["objective"]) / cbc["objective"]
                    if lp_obj:
                        lp_gap = 100.0 * (cost - lp_obj) / lp_obj
                    cbc_cost = cbc["objective"] if cbc["objective"] is not None else float("nan")
                    print(f"{n:>6} {alpha:>5.2f} {caps:>5.2f} | {ms:>11.2f} {cbc_s:>8.2f} "
                          f"{pulp_s:>7.2f} {ratio_txt:>8} {cpu_txt:>9} | {cost:>10.4f} "
                          f"{cbc_cost:>10.4f} {gap:>7.4f}% {lp_obj or float('nan'):>10.4f} "
                          f"{lp_gap:>7.4f}% | {'; '.join(note)}", flush=True)
                    rows.append(dict(n=n, alpha=alpha, caps=caps, ratio=ratio,
                                     cpu_ratio=cpu_ratio, gap=gap,
                                     lp_gap=lp_gap, limited=limited))
    for n in sorted({r["n"] for r in rows}):
        sel = [r for r in rows if r["n"] == n]
        n_lim = sum(1 for r in sel if r["limited"])
        # With time-limited rows among them, the median and the minimum are
        # lower bounds too: each limited ratio can only be larger.
        ge = ">=" if n_lim else ""
        lim_note = (f" [{n_lim} of {len(sel)} rows stopped on CBC's time limit: their ratios, "
                    f"so this median and minimum, are lower bounds]" if n_lim else "")
        print(f"n={n}: median ratio {ge}{median([r['ratio'] for r in sel]):.0f}x "
              f"(min {ge}{min(r['ratio'] for r in sel):.0f}x), "
              f"median CPU ratio {ge}{median([r['cpu_ratio'] for r in sel]):.0f}x "
              f"(min {ge}{min(r['cpu_ratio'] for r in sel):.0f}x), "
              f"median gap vs CBC {median([r['gap'] for r in sel]):.4f}% "
              f"(max {max(r['gap'] for r in sel):.4f}%), "
              f"max gap vs LP {max(r['lp_gap'] for r in sel):.4f}%{lim_note}")
    if failed:
        print("llmroute's assignment failed a check (see the notes)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
