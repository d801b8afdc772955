#!/usr/bin/env bash
# Builds the Linux maple tree as a user-space peer for bench/tree_bench_maple.
#
#   bash scripts/build_maple_peer.sh [OUT]        # OUT defaults to build-maple/
#   cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DRCUVM_BUILD_TESTS=OFF \
#         -DRCUVM_MAPLE_PEER_DIR=$PWD/build-maple
#   cmake --build build-bench -j2 --target tree_bench_maple tree_bench_maple_fastslab
#
# Follows the recipe of peers/LINUX-MAPLE.md: Debian's linux-source-6.12
# (installed with apt-get when missing), the kernel's own user-space harness
# (tools/testing/radix-tree and tools/testing/shared) built with -O2 and
# without sanitizers or CONFIG_DEBUG_MAPLE_TREE, lib/maple_tree.c as its own
# translation unit, and our C shim (bench/maple_peer/), all in one static
# archive, OUT/libmaple_peer.a; and OUT/libmaple_peer_fastslab.a, the same
# with our SLUB-like allocator (bench/maple_peer/fastslab.c) in place of the
# harness's linux.o (LINUX-MAPLE.md, caveat 1).
#
# Licensing: the kernel sources are GPL-2.0. They are unpacked into OUT (an
# ignored build folder), never into the repository, and the peer stays an
# optional target outside the library and outside CI. Only this script and
# the shim (our own code) are in the repository.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${1:-$repo/build-maple}
version=6.12
tarball=/usr/src/linux-source-$version.tar.xz
cc=${CC:-cc}
jobs=${JOBS:-2}

mkdir -p "$out"
out=$(cd "$out" && pwd)

# --- 1. Packages: the kernel source and liburcu (the memb flavour rcuvm links).
missing=()
[[ -f $tarball ]] || missing+=("linux-source-$version")
pkg-config --exists liburcu-memb 2>/dev/null || missing+=(liburcu-dev)
if ((${#missing[@]})); then
  echo "build_maple_peer: installing ${missing[*]}"
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y "${missing[@]}"
fi

# --- 2. Unpack only what the harness and the tree need (once).
src=$out/linux-source-$version
if [[ ! -f $src/.unpacked ]]; then
  echo "build_maple_peer: unpacking $tarball into $src"
  rm -rf "$src"
  mkdir -p "$src"
  top=linux-source-$version
  tar -xJf "$tarball" -C "$src" --strip-components=1 \
    "$top/tools" "$top/lib" "$top/include" "$top/scripts" "$top/arch/x86/include" "$top/Makefile"
  touch "$src/.unpacked"
fi

# --- 3. The harness objects: kernel shims (slab allocator, bitmaps, printk).
# The stock flags are -Og with ASan, UBSan and debug checks: useless for timing.
rt=$src/tools/testing/radix-tree
harness=(linux.o slab.o find_bit.o bitmap.o hweight.o vsprintf.o)
harness_cflags="-I../shared -I. -I../../include -I../../../lib -O2 -g -Wall -D_LGPL_SOURCE"
echo "build_maple_peer: building the harness objects in $rt"
make -s -C "$rt" -j"$jobs" CC="$cc" CFLAGS="$harness_cflags" LDFLAGS= \
  generated/map-shift.h generated/bit-length.h generated/autoconf.h "${harness[@]}"

# --- 4. The maple tree (its own translation unit) and our shim.
cflags=(-O2 -g -Wall -D_LGPL_SOURCE
        -I"$src/tools/testing/shared" -I"$rt" -I"$src/tools/include" -I"$src/lib"
        -I"$repo/bench/maple_peer")
echo "build_maple_peer: compiling lib/maple_tree.c and the shim"
"$cc" "${cflags[@]}" -c "$repo/bench/maple_peer/maple_tree_unit.c" -o "$out/maple_tree_unit.o"
"$cc" "${cflags[@]}" -c "$repo/bench/maple_peer/maple_shim.c" -o "$out/maple_shim.o"

# --- 5. One archive for CMake (RCUVM_MAPLE_PEER_DIR=$out).
rm -f "$out/libmaple_peer.a"
ar rcs "$out/libmaple_peer.a" "$out/maple_shim.o" "$out/maple_tree_unit.o" \
  "${harness[@]/#/$rt/}"

# --- 5b. The sensitivity build: the same tree with our SLUB-like allocator
# (bench/maple_peer/fastslab.c) in place of the harness's linux.o.
"$cc" "${cflags[@]}" -c "$repo/bench/maple_peer/fastslab.c" -o "$out/fastslab.o"
harness_no_linux=()
for o in "${harness[@]}"; do [[ $o == linux.o ]] || harness_no_linux+=("$rt/$o"); done
rm -f "$out/libmaple_peer_fastslab.a"
ar rcs "$out/libmaple_peer_fastslab.a" "$out/maple_shim.o" "$out/maple_tree_unit.o" "$out/fastslab.o" \
  "${harness_no_linux[@]}"

# --- 6. Smoke test: a store, a find and a dup, linked as tree_bench_maple is.
cat > "$out/smoke.c" <<'EOF'
#include <stdio.h>
#include <urcu.h>
#include "maple_shim.h"
int main(void) {
  static long rec[2];
  struct maple_peer *a, *b;
  rcu_register_thread();
  maple_peer_init();
  if (maple_peer_node_size() != 256) { fprintf(stderr, "node size %zu\n", maple_peer_node_size()); return 1; }
  a = maple_peer_new(MAPLE_PEER_ALLOC_RANGE | MAPLE_PEER_USE_RCU);
  b = maple_peer_new(MAPLE_PEER_ALLOC_RANGE | MAPLE_PEER_USE_RCU);
  if (maple_peer_store(a, 0x10000, 0x10fff, rec) || maple_peer_dup(a, b)) return 1;
  if (maple_peer_find(b, 0x1000) != rec || maple_peer_load(b, 0x10800) != rec) return 1;
  maple_peer_destroy(a);
  maple_peer_destroy(b);
  printf("maple peer ok: %lu live nodes after destroy\n", maple_peer_live_nodes());
  rcu_unregister_thread();
  return 0;
}
EOF
"$cc" -O2 -D_LGPL_SOURCE -I"$repo/bench/maple_peer" "$out/smoke.c" "$out/libmaple_peer.a" \
  $(pkg-config --cflags --libs liburcu-memb) -lpthread -o "$out/smoke"
"$cc" -O2 -D_LGPL_SOURCE -I"$repo/bench/maple_peer" "$out/smoke.c" "$out/libmaple_peer_fastslab.a" \
  $(pkg-config --cflags --libs liburcu-memb) -lpthread -o "$out/smoke_fastslab"
"$out/smoke_fastslab"
"$out/smoke"

echo "build_maple_peer: done: $out/libmaple_peer.a and $out/libmaple_peer_fastslab.a"
echo "  cmake -S $repo -B $repo/build-bench -DCMAKE_BUILD_TYPE=Release -DRCUVM_BUILD_TESTS=OFF -DRCUVM_MAPLE_PEER_DIR=$out"
echo "  cmake --build $repo/build-bench -j2 --target tree_bench_maple tree_bench_maple_fastslab"
