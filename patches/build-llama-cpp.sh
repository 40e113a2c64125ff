#!/usr/bin/env bash
# Build llama-cpp-python 0.3.36 from its source distribution with moeviz's patches
# applied, and install it into the given Python environment.
#
# The built wheel is cached outside the repo (in $MOEVIZ_CACHE, default
# ~/.cache/moeviz) under a key made of everything that changes the binary: the
# sdist hash, the patches, the CMake arguments, the Python version and the CPU
# flags (ggml builds with -march=native). A repeat run installs from the cache in
# seconds; a change to any patch rebuilds (~7 min on 2 cores).
set -euo pipefail

PY=${1:?usage: build-llama-cpp.sh PYTHON}
VERSION=0.3.36
SDIST_SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${MOEVIZ_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/moeviz}
SDIST=$CACHE/sdist/llama_cpp_python-$VERSION.tar.gz
# Only what moeviz uses: no multimodal library, no llama.cpp tools/examples/tests;
# the RPC backend (libggml-rpc, for --rpc: models split over several machines).
CMAKE_ARGS_MOEVIZ="-DGGML_RPC=ON -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF ${CMAKE_ARGS:-}"

mkdir -p "$CACHE/sdist" "$CACHE/wheels"

if [ ! -f "$SDIST" ] || ! echo "$SDIST_SHA256  $SDIST" | sha256sum -c --status; then
  echo "moeviz: downloading llama-cpp-python $VERSION source distribution"
  tmp=$(mktemp -d)
  "$PY" -m pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$tmp"
  if ! echo "$SDIST_SHA256  $tmp/llama_cpp_python-$VERSION.tar.gz" | sha256sum -c --status; then
    echo "moeviz: llama-cpp-python $VERSION sdist sha256 mismatch (expected $SDIST_SHA256)" >&2
    exit 1
  fi
  mv "$tmp/llama_cpp_python-$VERSION.tar.gz" "$SDIST"
  rm -rf "$tmp"
fi

key=$( {
  echo "$SDIST_SHA256"
  echo "$CMAKE_ARGS_MOEVIZ"
  "$PY" -c 'import sys; print(sys.version)'
  grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || uname -m
  for p in "$HERE"/*.patch; do
    if [ -f "$p" ]; then basename "$p"; cat "$p"; fi
  done
} | sha256sum | cut -c1-16)
WHEELDIR=$CACHE/wheels/$key

# apply_patches SRC LABEL PATCH...: apply each patch file to the tree SRC (-p1); LABEL
# prefixes their names in messages
apply_patches() {
  local src=$1 label=$2 p
  shift 2
  for p in "$@"; do
    [ -f "$p" ] || continue
    if ! patch -p1 --forward --batch --silent -d "$src" < "$p"; then
      echo "moeviz: patch $label$(basename "$p") does not apply to llama-cpp-python $VERSION" >&2
      return 1
    fi
    echo "moeviz: applied $label$(basename "$p")" >&2
  done
}

# unpack the sdist into $1 and apply the patches: prints the source directory
unpack_patched() {
  tar xzf "$SDIST" -C "$1"
  local src=$1/llama_cpp_python-$VERSION
  apply_patches "$src" "" "$HERE"/*.patch || return 1
  echo "$src"
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if ! ls "$WHEELDIR"/llama_cpp_python-$VERSION-*.whl >/dev/null 2>&1; then
  src=$(unpack_patched "$work")
  echo "moeviz: building llama-cpp-python $VERSION (takes several minutes on 2 cores; cached afterwards)"
  CMAKE_ARGS="$CMAKE_ARGS_MOEVIZ" CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
    "$PY" -m pip wheel --quiet --no-deps -w "$work/out" "$src"
  mkdir -p "$WHEELDIR.tmp"
  cp "$work"/out/llama_cpp_python-$VERSION-*.whl "$WHEELDIR.tmp/"
  rm -rf "$WHEELDIR" && mv "$WHEELDIR.tmp" "$WHEELDIR"   # atomic: no half-written cache entry
  # keep the cache bounded: the 4 most recent builds (patch iterations pile up)
  ls -1dt "$CACHE"/wheels/*/ 2>/dev/null | tail -n +5 | xargs -r rm -rf
fi

"$PY" -m pip install --quiet --force-reinstall --no-deps "$WHEELDIR"/llama_cpp_python-$VERSION-*.whl
echo "moeviz: llama-cpp-python $VERSION installed from $WHEELDIR"

# llama.cpp's rpc-server (tools/rpc), built from the same patched sources and linked
# against the very ggml libraries in the wheel (copied beside it, found via
# $ORIGIN/lib), so a remote host computes exactly what the local one would. The
# patches in patches/rpc-server/ touch only tools/rpc (--mem): they are applied to
# this build alone and are not part of the wheel's key (changing one rebuilds only
# this binary, seconds). Cached under the wheel's key and theirs, atomically.
RPC_PATCHES=("$HERE"/rpc-server/*.patch)
rpckey=$( {
  echo "$key"
  echo "rpc-server -I ggml/include -I ggml/src"
  for p in "${RPC_PATCHES[@]}"; do
    if [ -f "$p" ]; then basename "$p"; cat "$p"; fi
  done
} | sha256sum | cut -c1-16)
RPCDIR=$CACHE/rpc-server/$rpckey
if [ ! -x "$RPCDIR/rpc-server" ]; then
  echo "moeviz: building llama.cpp rpc-server"
  mkdir -p "$work/rpc" "$work/rpcsrc" "$work/rpcout/lib"
  rsrc=$(unpack_patched "$work/rpcsrc")
  apply_patches "$rsrc" "rpc-server/" "${RPC_PATCHES[@]}" || exit 1
  "$PY" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' \
    "$(ls "$WHEELDIR"/llama_cpp_python-$VERSION-*.whl | head -1)" "$work/rpc"
  cp -P "$work"/rpc/llama_cpp/lib/libggml*.so* "$work/rpcout/lib/"
  if [ ! -f "$work/rpcout/lib/libggml-rpc.so" ]; then
    echo "moeviz: the wheel has no libggml-rpc.so (built without -DGGML_RPC=ON?)" >&2
    exit 1
  fi
  ${CXX:-c++} -O2 -std=c++17 -I "$rsrc/vendor/llama.cpp/ggml/include" -I "$rsrc/vendor/llama.cpp/ggml/src" \
    "$rsrc/vendor/llama.cpp/tools/rpc/rpc-server.cpp" -o "$work/rpcout/rpc-server" \
    -L "$work/rpcout/lib" -lggml -lggml-base -Wl,-rpath,'$ORIGIN/lib' -pthread
  mkdir -p "$CACHE/rpc-server"
  rm -rf "$RPCDIR.tmp" && cp -a "$work/rpcout" "$RPCDIR.tmp"
  rm -rf "$RPCDIR" && mv "$RPCDIR.tmp" "$RPCDIR"
  ls -1dt "$CACHE"/rpc-server/*/ 2>/dev/null | tail -n +5 | xargs -r rm -rf
fi
# where moeviz finds it (moeviz rpc-server)
echo "$RPCDIR/rpc-server" > "$CACHE/rpc-server/current"
echo "moeviz: rpc-server at $RPCDIR/rpc-server"
