#!/usr/bin/env bash
# Remove what an install put: the files LIST names, one full path a line
# (DESTDIR included; `make install` writes $(BUILD)/installed_files.txt from
# CMake's install_manifest.txt), then lib/cmake/llmroute, the one folder
# only llmroute uses, when that leaves it empty, and then LIST itself.
# Called by `make uninstall`, and by the install test on the list of its
# staged install.
#   scripts/uninstall.sh LIST ROOT
# ROOT is DESTDIR followed by PREFIX. Every path in LIST must be under it,
# else nothing is removed: LIST records the last install only, and an
# uninstall meant for another place must not remove that one.
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 LIST ROOT" >&2
    exit 2
fi
list=$1
root=${2%/}
if [ ! -f "$list" ]; then
    echo "uninstall: $list does not exist: nothing installed from this build folder" \
         "is left to remove (make install writes it)" >&2
    exit 1
fi

files=()
while IFS= read -r f || [ -n "$f" ]; do
    [ -n "$f" ] || continue
    case "$f" in
        "$root"/*) files+=("$f") ;;
        *)
            echo "uninstall: $list names $f, which is not under $root: the last install" \
                 "went elsewhere; give make uninstall the PREFIX and DESTDIR it was given" >&2
            exit 1
            ;;
    esac
done <"$list"

removed=0
for f in "${files[@]+"${files[@]}"}"; do
    if [ -e "$f" ] || [ -L "$f" ]; then
        rm -f -- "$f"
        echo "uninstall: removed $f"
        removed=$((removed + 1))
    fi
done
for f in "${files[@]+"${files[@]}"}"; do
    dir=$(dirname -- "$f")
    if [[ "$dir" == */cmake/llmroute && -d "$dir" ]]; then
        rmdir --ignore-fail-on-non-empty -- "$dir"
    fi
done
rm -f -- "$list"
echo "uninstall: removed $removed files under $root"
