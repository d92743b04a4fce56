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
# The QAT embedding example from the README: a C++-defined model, trained, wrapped in QuantSim with an
# AIMET config file, fine-tuned and exported.
g++ -O2 -o "$stage/example_qat" apps/example_qat.cpp $(pkg-config --cflags --libs qforge)
"$stage/example_qat" quant/configs/default_config.json "$stage/qat-out" | tail -n 3
test -f "$stage/qat-out/encodings.json"
