#!/usr/bin/env bash
# Run the fuzz harnesses built by `make fuzz` (build-fuzz/tests/fuzz).
#   scripts/fuzz.sh smoke [NAME...]         replay each seed corpus once
#   scripts/fuzz.sh run SECONDS [NAME...]   fuzz each harness for SECONDS
# NAME is a harness without its fuzz_ prefix (config, dataset, ...); none
# means all. A run keeps what it learns in build-fuzz/corpus/NAME (the seeds
# in tests/fuzz/corpus/NAME are read, never written) and writes a crashing,
# hanging or leaking input to build-fuzz/artifacts/NAME/. One harness runs at
# a time, niced; one that fails does not stop the others, and the script
# ends naming every harness that failed, with status 1.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZ_BUILD=${FUZZ_BUILD:-build-fuzz}
bin=$FUZZ_BUILD/tests/fuzz
mode=${1:-smoke}
shift || true
seconds=0
if [ "$mode" = run ]; then
    seconds=${1:?scripts/fuzz.sh run SECONDS [NAME...]}
    shift
fi
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
    for f in tests/fuzz/fuzz_*.c; do
        n=$(basename "$f" .c)
        names+=("${n#fuzz_}")
    done
fi
failed=()
for n in "${names[@]}"; do
    exe=$bin/fuzz_$n
    seeds=tests/fuzz/corpus/$n
    [ -x "$exe" ] || { echo "fuzz: $exe is not built (make fuzz)" >&2; exit 1; }
    dict=()
    [ -f "tests/fuzz/$n.dict" ] && dict=(-dict="tests/fuzz/$n.dict")
    [ ${#dict[@]} -eq 0 ] && [ -f tests/fuzz/json.dict ] && [ "$n" != httpd ] &&
        dict=(-dict=tests/fuzz/json.dict)
    if [ "$mode" = smoke ]; then
        echo "fuzz: replaying $seeds through fuzz_$n" >&2
        "$exe" -runs=0 "$seeds" || failed+=("$n")
    else
        mkdir -p "$FUZZ_BUILD/corpus/$n" "$FUZZ_BUILD/artifacts/$n"
        echo "fuzz: fuzz_$n for ${seconds}s" >&2
        nice "$exe" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
            -max_len=65536 -print_final_stats=1 "${dict[@]}" \
            -artifact_prefix="$FUZZ_BUILD/artifacts/$n/" \
            "$FUZZ_BUILD/corpus/$n" "$seeds" || failed+=("$n")
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: failed: ${failed[*]} (inputs in $FUZZ_BUILD/artifacts/NAME/ for a run)" >&2
    exit 1
fi
