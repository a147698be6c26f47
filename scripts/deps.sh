#!/usr/bin/env bash
# Install the Debian packages llmroute needs that are missing on this machine.
# Called by `make run`, `make test`, `make build`, `make install` and .ci/run.
# Runs apt-get (through sudo when not root) only when something is missing,
# so it is quick on a machine that has everything.
#   scripts/deps.sh          build and test dependencies
#   scripts/deps.sh build    only what building needs (make build, make install)
#   scripts/deps.sh bench    also what the benchmarks compare against
#   scripts/deps.sh fuzz     also clang and its libFuzzer runtime (make fuzz)
set -euo pipefail

# python3-numpy: the Python binding's tests feed it numpy arrays (python.numpy).
# zlib1g-dev: sqlite3.pc's Libs.private names -lz, so a program linked with the
# static libllmroute through `pkg-config --static` needs it (install.staged).
# libcmocka-dev is a build package: CMake configures the unit tests with the rest.
pkgs=(build-essential cmake pkg-config libjansson-dev libsqlite3-dev libcurl4-openssl-dev
      libevent-dev libcmocka-dev)
if [ "${1:-}" != "build" ]; then
    pkgs+=(python3 python3-pip python3-numpy curl nodejs npm zlib1g-dev)
fi
if [ "${1:-}" = "bench" ]; then
    pkgs+=(wrk python3-sklearn coinor-cbc python3-pulp)
fi
if [ "${1:-}" = "fuzz" ]; then
    # libclang_rt.fuzzer is in libclang-rt-dev, only recommended by clang.
    pkgs+=(clang libclang-rt-dev)
fi

missing=()
for p in "${pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
# nodejs/npm may come from outside Debian's packages on a developer machine.
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
    filtered=()
    for p in "${missing[@]}"; do
        case "$p" in nodejs|npm) ;; *) filtered+=("$p") ;; esac
    done
    missing=("${filtered[@]+"${filtered[@]}"}")
fi
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
