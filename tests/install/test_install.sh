#!/usr/bin/env bash
# install.staged: install this build into a staging folder, as
# `make install DESTDIR=...` would, then use it from outside the tree the
# ways a user would, and uninstall it.
#
#   1. the install script of packaging/ (every install rule) runs with
#      DESTDIR into a temporary folder; the files put are exactly the
#      expected ones (no private header, nothing unlisted), the shared
#      library's soname links are in place and its soname is libllmroute.so.0;
#   2. the shared library exports exactly the functions llmroute.h declares
#      LR_EXTERN: every dynamic symbol it defines starts with lr_, none with
#      the internal lr__;
#   3. pkg-config (PKG_CONFIG_PATH and PKG_CONFIG_SYSROOT_DIR into the stage)
#      gives the project's version, keeps jansson and sqlite3 out of the
#      shared link line and names them, with -lpthread -lm, for a static one;
#      consumer.c built with it runs against the staged shared library
#      (LD_LIBRARY_PATH, and ldd shows it is the staged one) and linked with
#      the static library (and then needs no libllmroute.so);
#   4. consumer.c built by a CMake project through find_package(llmroute),
#      CMAKE_PREFIX_PATH into the stage, runs with both imported targets;
#   5. the staged llmroute command prints its version and routes; the Python
#      binding loads the staged library through LLMROUTE_LIB and routes;
#   6. scripts/uninstall.sh (what `make uninstall` runs) on the list of the
#      files put leaves no file in the stage, and no install manifest in the
#      build folder was written.
#
# It reuses the built tree (nothing is rebuilt) and writes only in its
# temporary folder, removed at exit: the install script is run with
# `cmake -P`, which writes no install_manifest.txt into the build folder,
# Python writes no bytecode. In the sanitizer build the consumers are built
# with its -fsanitize flags and Python preloads the ASan runtime.
#
# The environment (tests/install/CMakeLists.txt sets it): LR_BUILD_DIR,
# LR_SOURCE_DIR, LR_CC, LR_CMAKE, LR_PYTHON (empty: no Python check),
# LR_PREFIX and LR_BINDIR, LR_LIBDIR, LR_INCLUDEDIR (absolute, as
# configured), LR_CONFIG (the build type, lower case), LR_VERSION,
# LR_SANITIZE_FLAGS, LR_ASAN_RUNTIME.
set -euo pipefail

fail() {
    echo "install.staged: FAIL: $*" >&2
    exit 1
}
step() { echo "== $*"; }
# The shared libraries a program needs (its DT_NEEDED entries), one a line.
needed() { readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\].*/\1/p'; }

for v in LR_BUILD_DIR LR_SOURCE_DIR LR_CC LR_CMAKE LR_PREFIX LR_BINDIR LR_LIBDIR \
         LR_INCLUDEDIR LR_CONFIG LR_VERSION; do
    [ -n "${!v:-}" ] || fail "$v is not set (run this through ctest)"
done
LR_PYTHON=${LR_PYTHON:-}
LR_SANITIZE_FLAGS=${LR_SANITIZE_FLAGS:-}
LR_ASAN_RUNTIME=${LR_ASAN_RUNTIME:-}
here=$LR_SOURCE_DIR/tests/install

tmp=$(mktemp -d "${TMPDIR:-/tmp}/llmroute-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
stage=$tmp/stage
root=$stage$LR_PREFIX
libdir=$stage$LR_LIBDIR
touch "$tmp/started"

# ==== 1. Install ====
step "install into $stage"
cat >"$tmp/install.cmake" <<CMAKE
include("$LR_BUILD_DIR/packaging/cmake_install.cmake")
string(REPLACE ";" "\n" files "\${CMAKE_INSTALL_MANIFEST_FILES}")
file(WRITE "$tmp/manifest.txt" "\${files}\n")
CMAKE
(cd "$tmp" && DESTDIR=$stage "$LR_CMAKE" -P "$tmp/install.cmake" >"$tmp/install.log") ||
    { cat "$tmp/install.log"; fail "the install script failed"; }
# As `make install` lists them: DESTDIR in front of CMake's paths.
awk -v d="$stage" 'NF { print d $0 }' "$tmp/manifest.txt" | sort >"$tmp/installed.txt"

cmakedir=$LR_LIBDIR/cmake/llmroute
sort >"$tmp/expected.txt" <<LIST
$stage$LR_BINDIR/llmroute
$stage$LR_INCLUDEDIR/llmroute.h
$libdir/libllmroute.a
$libdir/libllmroute.so
$libdir/libllmroute.so.0
$libdir/libllmroute.so.$LR_VERSION
$libdir/pkgconfig/llmroute.pc
$stage$cmakedir/llmrouteConfig.cmake
$stage$cmakedir/llmrouteConfigVersion.cmake
$stage$cmakedir/llmrouteTargets.cmake
$stage$cmakedir/llmrouteTargets-$LR_CONFIG.cmake
LIST
diff -u "$tmp/expected.txt" "$tmp/installed.txt" ||
    fail "the files installed are not the expected ones (- expected, + installed)"
find "$stage" -type f -o -type l | sort >"$tmp/found.txt"
diff -u "$tmp/installed.txt" "$tmp/found.txt" ||
    fail "the stage holds files the install did not list (+)"
[ "$(readlink "$libdir/libllmroute.so")" = libllmroute.so.0 ] ||
    fail "libllmroute.so does not link to libllmroute.so.0"
[ "$(readlink "$libdir/libllmroute.so.0")" = "libllmroute.so.$LR_VERSION" ] ||
    fail "libllmroute.so.0 does not link to libllmroute.so.$LR_VERSION"
soname=$(readelf -d "$libdir/libllmroute.so.$LR_VERSION" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
[ "$soname" = libllmroute.so.0 ] || fail "the soname is '$soname', not libllmroute.so.0"
for f in "$libdir/libllmroute.so.$LR_VERSION" "$stage$LR_BINDIR/llmroute"; do
    if readelf -d "$f" | grep -E '\((RPATH|RUNPATH)\)'; then
        fail "$f keeps a build RPATH"
    fi
done

# ==== 2. Exported symbols ====
step "exported symbols"
nm -D --defined-only "$libdir/libllmroute.so" | awk '{ print $NF }' | sort >"$tmp/exported.txt"
if grep -v '^lr_' "$tmp/exported.txt" || grep '^lr__' "$tmp/exported.txt"; then
    fail "the shared library exports the symbols above: only the public lr_ API may be"
fi
# What the header declares LR_EXTERN, as the library's own build sees it.
"$LR_CC" -E -P -DLR_BUILDING_LIB -I"$stage$LR_INCLUDEDIR" -x c "$stage$LR_INCLUDEDIR/llmroute.h" |
    tr '\n' ' ' | { grep -o '__attribute__((visibility("default"))) [^(;]*(' || true; } |
    { grep -o 'lr_[A-Za-z0-9_]*($' || true; } | tr -d '(' | sort >"$tmp/declared.txt"
[ "$(wc -l <"$tmp/declared.txt")" -ge 20 ] ||
    fail "found only $(wc -l <"$tmp/declared.txt") LR_EXTERN functions in llmroute.h"
diff -u "$tmp/declared.txt" "$tmp/exported.txt" ||
    fail "exported symbols (+) and the header's LR_EXTERN functions (-) differ"
echo "$(wc -l <"$tmp/exported.txt") symbols, all declared in llmroute.h"

# ==== 3. pkg-config ====
step "pkg-config"
cat >"$tmp/abc.json" <<'JSON'
{"models": [
  {"name": "a", "backend": "mock", "cost_per_input_token": 1e-6, "cost_per_output_token": 2e-6},
  {"name": "b", "backend": "mock", "cost_per_input_token": 2e-7, "cost_per_output_token": 4e-7},
  {"name": "c", "backend": "mock", "cost_per_input_token": 3e-7, "cost_per_output_token": 6e-7}],
 "router": {"strategy": "sequential"}}
JSON
export PKG_CONFIG_PATH=$libdir/pkgconfig
export PKG_CONFIG_SYSROOT_DIR=$stage
# Keep -I and -L of the system folders (a stage under /usr has its header in
# $stage/usr/include), which pkg-config would otherwise drop.
export PKG_CONFIG_ALLOW_SYSTEM_CFLAGS=1 PKG_CONFIG_ALLOW_SYSTEM_LIBS=1
pc_version=$(pkg-config --modversion llmroute)
[ "$pc_version" = "$LR_VERSION" ] || fail "llmroute.pc says version $pc_version"
cflags=$(pkg-config --cflags llmroute)
libs=$(pkg-config --libs llmroute)
static_libs=$(pkg-config --static --libs llmroute)
echo "cflags: $cflags"
echo "libs: $libs"
echo "static libs: $static_libs"
case " $cflags " in *" -I$stage$LR_INCLUDEDIR "*) ;; *) fail "--cflags lacks -I$stage$LR_INCLUDEDIR" ;; esac
case " $libs " in *" -L$libdir "*) ;; *) fail "--libs lacks -L$libdir" ;; esac
for lib in jansson sqlite3; do
    case " $libs " in *" -l$lib "*) fail "--libs names -l$lib: a shared link needs no more than -lllmroute" ;; esac
done
for lib in llmroute jansson sqlite3 pthread m; do
    case " $static_libs " in *" -l$lib "*) ;; *) fail "--static --libs lacks -l$lib" ;; esac
done

cc_flags=(-std=c11 -Wall -Wextra -Wpedantic -Werror)
read -r -a san <<<"$LR_SANITIZE_FLAGS"
# shellcheck disable=SC2086 # pkg-config's flags are words
"$LR_CC" "${cc_flags[@]}" "${san[@]+"${san[@]}"}" $cflags "$here/consumer.c" \
    -o "$tmp/consumer_shared" $libs || fail "the consumer does not build with pkg-config"
grep -qx libllmroute.so.0 <<<"$(needed "$tmp/consumer_shared")" ||
    fail "the shared consumer does not need libllmroute.so.0"
grep -qF "libllmroute.so.0 => $libdir/libllmroute.so.0 " \
    <<<"$(LD_LIBRARY_PATH=$libdir ldd "$tmp/consumer_shared")" ||
    fail "the shared consumer does not load the staged libllmroute.so.0"
LD_LIBRARY_PATH=$libdir "$tmp/consumer_shared" "$tmp/abc.json" "$LR_VERSION" ||
    fail "the shared consumer failed"
# The static library while the shared one is beside it: -Bstatic for it alone,
# as the README's sed does.
static_only=${static_libs/-lllmroute/-Wl,-Bstatic -lllmroute -Wl,-Bdynamic}
# shellcheck disable=SC2086
"$LR_CC" "${cc_flags[@]}" "${san[@]+"${san[@]}"}" $cflags "$here/consumer.c" \
    -o "$tmp/consumer_static" $static_only ||
    fail "the consumer does not link statically with pkg-config --static"
if grep -q libllmroute <<<"$(needed "$tmp/consumer_static")"; then
    fail "the static consumer needs libllmroute.so"
fi
"$tmp/consumer_static" "$tmp/abc.json" "$LR_VERSION" || fail "the static consumer failed"
unset PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR PKG_CONFIG_ALLOW_SYSTEM_CFLAGS PKG_CONFIG_ALLOW_SYSTEM_LIBS

# ==== 4. find_package(llmroute) ====
step "find_package(llmroute)"
"$LR_CMAKE" -S "$here/cmake_consumer" -B "$tmp/cmake_consumer" -DCMAKE_PREFIX_PATH="$root" \
    -DCMAKE_C_COMPILER="$LR_CC" -DCMAKE_C_FLAGS="$LR_SANITIZE_FLAGS" \
    -DCMAKE_FIND_PACKAGE_NO_PACKAGE_REGISTRY=ON >"$tmp/cmake_consumer.log" 2>&1 ||
    { cat "$tmp/cmake_consumer.log"; fail "find_package(llmroute) failed"; }
grep -qx "llmroute_DIR:PATH=$stage$cmakedir" "$tmp/cmake_consumer/CMakeCache.txt" ||
    fail "find_package found $(grep '^llmroute_DIR' "$tmp/cmake_consumer/CMakeCache.txt"), not the stage's"
"$LR_CMAKE" --build "$tmp/cmake_consumer" >>"$tmp/cmake_consumer.log" 2>&1 ||
    { cat "$tmp/cmake_consumer.log"; fail "the CMake consumer does not build"; }
LD_LIBRARY_PATH=$libdir "$tmp/cmake_consumer/consumer_shared" "$tmp/abc.json" "$LR_VERSION" ||
    fail "the CMake consumer (llmroute::llmroute) failed"
if grep -q libllmroute <<<"$(needed "$tmp/cmake_consumer/consumer_static")"; then
    fail "the CMake consumer of llmroute::llmroute_static needs libllmroute.so"
fi
"$tmp/cmake_consumer/consumer_static" "$tmp/abc.json" "$LR_VERSION" ||
    fail "the CMake consumer (llmroute::llmroute_static) failed"

# ==== 5. The command, and the Python binding ====
step "llmroute command"
out=$("$stage$LR_BINDIR/llmroute" version) || fail "the staged llmroute version failed"
[ "$out" = "llmroute $LR_VERSION" ] || fail "the staged llmroute version printed '$out'"
out=$("$stage$LR_BINDIR/llmroute" route --config "$tmp/abc.json" --models c,a q1 q2 q3) ||
    fail "the staged llmroute route failed"
[ "$out" = $'c\na\nc' ] || fail "the staged llmroute route printed '$out', not c, a, c"

if [ -n "$LR_PYTHON" ]; then
    step "Python binding"
    py_env=(LLMROUTE_LIB="$libdir/libllmroute.so.0" PYTHONPATH="$LR_SOURCE_DIR/bindings/python"
            PYTHONDONTWRITEBYTECODE=1)
    if [ -n "$LR_ASAN_RUNTIME" ]; then
        py_env+=(LD_PRELOAD="$LR_ASAN_RUNTIME" ASAN_OPTIONS=detect_leaks=0:abort_on_error=0)
    fi
    (cd "$tmp" && env "${py_env[@]}" "$LR_PYTHON" -B "$here/consumer.py") ||
        fail "the Python binding over the staged library failed"
fi

# ==== 6. Uninstall ====
step "uninstall"
"$LR_SOURCE_DIR/scripts/uninstall.sh" "$tmp/installed.txt" "$root" >"$tmp/uninstall.log" ||
    { cat "$tmp/uninstall.log"; fail "scripts/uninstall.sh failed"; }
left=$(find "$stage" -type f -o -type l)
[ -z "$left" ] || fail "files left after uninstall: $left"
[ ! -e "$stage$cmakedir" ] || fail "uninstall left $stage$cmakedir"
[ ! -e "$tmp/installed.txt" ] || fail "uninstall left its list"

# Nothing written into the build folder's install manifests.
if [ -n "$(find "$LR_BUILD_DIR" -maxdepth 1 -name 'install*' -newer "$tmp/started")" ]; then
    fail "the test wrote into $LR_BUILD_DIR's install manifest"
fi
echo "install.staged: ok"
