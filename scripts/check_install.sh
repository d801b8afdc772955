#!/usr/bin/env bash
# Installs rcuvm into a temporary prefix and builds two consumers against it:
# one with find_package(rcuvm CONFIG), one with pkg-config.
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake -S . -B "$prefix/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DRCUVM_BUILD_TESTS=OFF \
  -DRCUVM_BUILD_BENCH=OFF -DRCUVM_BUILD_TOOLS=OFF -DCMAKE_INSTALL_PREFIX="$prefix/usr" >/dev/null
cmake --build "$prefix/build" -j "$(nproc)" >/dev/null
cmake --install "$prefix/build" >/dev/null
cmake -S tests/consumer -B "$prefix/consumer" -G Ninja -DCMAKE_PREFIX_PATH="$prefix/usr" >/dev/null
cmake --build "$prefix/consumer" >/dev/null
"$prefix/consumer/consumer"
PKG_CONFIG_PATH="$prefix/usr/lib/pkgconfig:$prefix/usr/lib/x86_64-linux-gnu/pkgconfig" \
  g++ -std=c++20 tests/consumer/main.cc -o "$prefix/pc_consumer" \
  $(PKG_CONFIG_PATH="$prefix/usr/lib/pkgconfig:$prefix/usr/lib/x86_64-linux-gnu/pkgconfig" pkg-config --cflags --libs rcuvm)
"$prefix/pc_consumer"
echo "install check ok (CMake package and pkg-config)"
