#!/usr/bin/env bash
# Build an aarch64 sysroot with Debian's python3.11 + the aarch64 ai-edge-litert / numpy wheels,
# runnable on x86 with `qemu-aarch64 -L SYSROOT SYSROOT/usr/bin/python3.11`.
#
# Usage: benchmarks/arm/setup_sysroot.sh [CACHE_DIR]   (default ~/.cache/tfcompress/arm_sysroot)
# Needs: apt-get (Debian bookworm sources), dpkg-deb, pip (any python), network to Debian + PyPI.
# Uses a private apt state (lists, cache, empty dpkg status) under CACHE_DIR: it changes nothing in
# the host's dpkg configuration (no `dpkg --add-architecture`). Idempotent: a finished sysroot
# (stamp file) is left as it is.
set -euo pipefail
CACHE="${1:-$HOME/.cache/tfcompress/arm_sysroot}"
ROOT="$CACHE/root"
STAMP="$CACHE/.done-v1"
LITERT_VERSION="${LITERT_VERSION:-2.3.0}"
NUMPY_VERSION="${NUMPY_VERSION:-}"
PIP="${PIP:-python3 -m pip}"
if [[ -f "$STAMP" ]]; then echo "sysroot ready: $ROOT"; exit 0; fi
mkdir -p "$CACHE/apt/lists/partial" "$CACHE/apt/archives/partial" "$CACHE/debs" "$CACHE/wheels" "$ROOT"
: > "$CACHE/apt/status"
APT_OPTS=(-o "APT::Architecture=arm64" -o "APT::Architectures::=arm64"
          -o "Dir::State::Lists=$CACHE/apt/lists" -o "Dir::State::status=$CACHE/apt/status"
          -o "Dir::Cache=$CACHE/apt" -o "Dir::Cache::archives=$CACHE/apt/archives"
          -o "Debug::NoLocking=1" -o "APT::Install-Recommends=0")
apt-get "${APT_OPTS[@]}" -qq update
# Download-only install into an empty dpkg status resolves the whole dependency closure for arm64.
apt-get "${APT_OPTS[@]}" -y -qq --download-only install \
  python3.11 libpython3.11-stdlib libstdc++6 libgcc-s1 libexpat1 zlib1g libffi8 libssl3 >/dev/null
for deb in "$CACHE"/apt/archives/*.deb; do dpkg-deb -x "$deb" "$ROOT"; done
# Debian's python3.11 looks for site-packages in /usr/local/lib/python3.11/dist-packages too;
# we use the stdlib-relative site-packages of the sysroot's own prefix.
SITE="$ROOT/usr/lib/python3/dist-packages"
mkdir -p "$SITE"
NUMPY_SPEC="numpy${NUMPY_VERSION:+==$NUMPY_VERSION}"
$PIP download -q --no-deps --only-binary=:all: --platform manylinux_2_27_aarch64 \
  --platform manylinux2014_aarch64 --platform manylinux_2_17_aarch64 \
  --implementation cp --abi cp311 --python-version 3.11 -d "$CACHE/wheels" \
  "ai-edge-litert==$LITERT_VERSION" "$NUMPY_SPEC"
# ai-edge-litert's runtime dependencies that import at load time (pure Python or aarch64 wheels)
$PIP download -q --no-deps --only-binary=:all: --platform manylinux_2_27_aarch64 \
  --platform manylinux2014_aarch64 --platform manylinux_2_17_aarch64 --platform any \
  --implementation cp --abi cp311 --abi none --python-version 3.11 -d "$CACHE/wheels" \
  flatbuffers typing_extensions tqdm protobuf 2>/dev/null || true
for whl in "$CACHE"/wheels/*.whl; do
  python3 -c "import zipfile,sys; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" "$whl" "$SITE"
done
touch "$STAMP"
echo "sysroot ready: $ROOT"
