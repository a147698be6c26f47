# common.bash -- what the gateway benchmark scripts share; sourced, not run
# (bench/run_all.sh runs only bench/*.sh). Usage, from a script in bench/:
#   . "$(dirname "$0")/common.bash"; bench_setup NAME BUILD_DIR TOOL...
# sets BUILD, SRC, LLMROUTE, FAKE, TMP and PIDS (processes to stop at exit),
# checks the tools and the built binaries, and defines wait_port_file and the
# CPU accounting (cpu_mark, cpu_report) that tells how busy the rest of the
# machine was during a section.
bench_setup() {
    local name=$1 build=${2:-build}
    shift 2
    BUILD=$(cd "$build" && pwd)
    cd "$(dirname "$0")/.."
    SRC=$(pwd)
    LLMROUTE=$BUILD/llmroute
    FAKE=${FAKE_UPSTREAM:-$BUILD/tests/fake_upstream/fake_upstream}
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/llmroute-$name.XXXXXX")
    PIDS=()
    trap bench_cleanup EXIT
    for tool in "$@"; do
        command -v "$tool" >/dev/null ||
            { echo "$name bench: $tool is missing (make bench installs it)"; exit 1; }
    done
    [ -x "$LLMROUTE" ] || { echo "$name bench: $LLMROUTE not built"; exit 1; }
    [ -x "$FAKE" ] || { echo "$name bench: fake upstream $FAKE not built"; exit 1; }
}

bench_cleanup() {
    for p in "${PIDS[@]+"${PIDS[@]}"}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.3
    for p in "${PIDS[@]+"${PIDS[@]}"}"; do kill -9 "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}

# Print the port a process wrote to FILE, waiting up to 10 s for it.
wait_port_file() {
    for _ in $(seq 200); do [ -s "$1" ] && { cat "$1"; return 0; }; sleep 0.05; done
    return 1
}

# CPU accounting, to tell what the rest of the machine was doing during a
# section: jiffies busy on the whole machine, and used by this script's
# processes (those in PIDS still running, plus every child it has waited
# for, from `times`).
machine_busy() { awk '/^cpu / {print $2+$3+$4+$7+$8+$9}' /proc/stat; }
proc_cpu() { local t=0 p; for p in "$@"; do [ -r /proc/$p/stat ] && t=$((t + $(awk '{print $14+$15}' /proc/$p/stat))); done; echo $t; }
children_cpu() { tail -1 "$TMP/times" | python3 -c '
import re, sys
v = [float(m) * 60 + float(s) for m, s in re.findall(r"(\d+)m([\d.]+)s", sys.stdin.read())]
print(int(round(sum(v) * '"$(getconf CLK_TCK)"')))'; }  # in jiffies

# cpu_mark NAME: record, in CPU_NAME, the machine's busy jiffies, this
# script's, the time and the load average. Call it in the script's own shell,
# not in $(...): `times` sees only that shell's finished children.
cpu_mark() {
    times >"$TMP/times"
    local busy ours
    busy=$(machine_busy)
    ours=$(( $(proc_cpu "${PIDS[@]+"${PIDS[@]}"}") + $(children_cpu) ))
    printf -v "CPU_$1" '%s %s %s %s' "$busy" "$ours" "$(date +%s.%N)" \
        "$(cut -d' ' -f1-3 /proc/loadavg | tr ' ' ,)"
}

# cpu_report FROM TO WHAT: one line, how busy the machine was between two
# marks, and how much of it was this benchmark's processes and other ones'.
cpu_report() {
    local a b
    a="CPU_$1" b="CPU_$2"
    python3 - "${!a}" "${!b}" "$3" "$(getconf CLK_TCK)" "$(nproc)" <<'PY'
import sys
a, b, what, hz, n = sys.argv[1].split(), sys.argv[2].split(), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
secs = float(b[2]) - float(a[2])
busy, ours = (int(b[0]) - int(a[0])) / hz, (int(b[1]) - int(a[1])) / hz
print("   during %s (%.0f s): the machine was %.0f%% busy (of %d cores); this benchmark's"
      " processes used %.0f%%, other processes %.0f%%; load average before: %s"
      % (what, secs, 100 * busy / secs / n, n, 100 * ours / secs / n,
         100 * max(busy - ours, 0) / secs / n, a[3].replace(",", " ")))
PY
}
