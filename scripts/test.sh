#!/usr/bin/env bash
# Sets up, builds and runs the test suite: bash scripts/test.sh [preset] [ctest args...]
# preset: release (default), debug, asan or tsan (CMakePresets.json).
set -euo pipefail
cd "$(dirname "$0")/.."
preset=${1:-release}
shift || true
bash scripts/setup.sh
cmake --preset "$preset" -G Ninja >/dev/null
cmake --build --preset "$preset" -j "$(nproc)"
ctest --preset "$preset" -j "$(nproc)" "$@"
