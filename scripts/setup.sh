#!/usr/bin/env bash
# Installs qforge's build dependencies from Debian's packages when any is missing (run as root, or with
# sudo available). Does nothing when everything is present.
set -euo pipefail

PACKAGES=(
  g++ meson ninja-build pkg-config
  libxtensor-dev libxsimd-dev libopenblas-dev doctest-dev libfmt-dev libcxxopts-dev
  nlohmann-json3-dev zlib1g-dev libonnx-dev libprotobuf-dev
  libopenmpi-dev openmpi-bin
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

# Node.js and npm run the ONNX Runtime parity tests (tests/ort: ORT's CPU build comes from the npm registry);
# any node on PATH will do, else Debian's.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  missing+=(nodejs npm)
fi

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "qforge setup: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
