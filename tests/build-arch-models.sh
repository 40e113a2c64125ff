#!/usr/bin/env bash
# Breadth fixtures: llama.cpp's own generator of valid random models for every
# architecture it supports (vendor/llama.cpp/tests/test-llama-archs.cpp, `-o DIR`),
# built from the same llama-cpp-python sdist as the wheel. Test-only: it needs
# llama.cpp's `common` library and LLAMA_BUILD_TESTS, which the wheel leaves out.
#
# Prints the folder holding <arch>-moe.gguf / <arch>-dense.gguf. Both the generator
# and the models it writes are cached in $MOEVIZ_CACHE/archgen/<key> (key = sdist,
# this script and its patch, compiler, CPU flags): the first run builds for ~10 min on 2 cores,
# later runs print the folder at once.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
VERSION=0.3.36
SDIST_SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
CACHE=${MOEVIZ_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/moeviz}
SDIST=$CACHE/sdist/llama_cpp_python-$VERSION.tar.gz
SEED=42

if [ ! -f "$SDIST" ] || ! echo "$SDIST_SHA256  $SDIST" | sha256sum -c --status; then
  echo "moeviz: the llama-cpp-python sdist is not in $CACHE/sdist (run 'make setup' first)" >&2
  exit 1
fi

key=$( {
  echo "$SDIST_SHA256 $SEED"
  cat "$HERE/build-arch-models.sh" "$HERE/archgen.patch"
  c++ --version 2>/dev/null | head -1
  grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || uname -m
} | sha256sum | cut -c1-16)
DIR=$CACHE/archgen/$key

if [ ! -f "$DIR/models/.complete" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  tar xzf "$SDIST" -C "$work"
  src=$work/llama_cpp_python-$VERSION/vendor/llama.cpp
  # 8 experts top-3 instead of 2 of 2 (so routing is a real choice), and the MoE
  # variants of the hybrid architectures the generator writes only dense
  patch -p1 --batch --silent -d "$src" < "$HERE/archgen.patch"
  echo "moeviz: building llama.cpp's test-llama-archs model generator (once, ~10 min on 2 cores)" >&2
  cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_BUILD_TESTS=ON -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
    -DLLAMA_OPENSSL=OFF -DGGML_OPENMP=OFF > "$work/cmake.log" 2>&1 || { cat "$work/cmake.log" >&2; exit 1; }
  cmake --build "$work/build" --target test-llama-archs -j "$(nproc)" > "$work/build.log" 2>&1 \
    || { tail -50 "$work/build.log" >&2; exit 1; }
  rm -rf "$DIR.tmp" && mkdir -p "$DIR.tmp/models"
  cp "$work/build/bin/test-llama-archs" "$DIR.tmp/"
  "$DIR.tmp/test-llama-archs" -s "$SEED" -o "$DIR.tmp/models" > "$DIR.tmp/generate.log" 2>&1 \
    || { tail -30 "$DIR.tmp/generate.log" >&2; exit 1; }
  touch "$DIR.tmp/models/.complete"
  rm -rf "$DIR" && mv "$DIR.tmp" "$DIR"   # atomic: no half-written cache entry
  ls -1dt "$CACHE"/archgen/*/ 2>/dev/null | tail -n +3 | xargs -r rm -rf
fi
echo "$DIR/models"
