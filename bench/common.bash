# common.bash -- what the gateway benchmark scripts share; sourced, not run
# (bench/run_all.sh runs only bench/*.sh). Usage, from a script in bench/:
#   . "$(dirname "$0")/common.bash"; bench_setup NAME BUILD_DIR TOOL...
# sets BUILD, SRC, LLMROUTE, FAKE, TMP and PIDS (processes to stop at exit),
# checks the tools and the built binaries, and defines wait_port_file.
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
