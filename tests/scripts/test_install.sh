#!/usr/bin/env bash
# The installed library builds a user's program: `meson install` into a staging root, then
# g++ examples/embed_minimal.cpp $(pkg-config --cflags --libs qforge), and run it.
set -euo pipefail
cd "$(dirname "$0")/../.."
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
meson install -C build --destdir "$stage" --quiet >/dev/null
pcdir=$(dirname "$(find "$stage" -name qforge.pc | head -n1)")
test -n "$pcdir"
export PKG_CONFIG_SYSROOT_DIR="$stage"
export PKG_CONFIG_PATH="$pcdir"
g++ -O1 -o "$stage/embed_minimal" examples/embed_minimal.cpp $(pkg-config --cflags --libs qforge)
out=$("$stage/embed_minimal")
echo "$out"
echo "$out" | grep -q "embed_minimal: ok"
