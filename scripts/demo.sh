#!/usr/bin/env bash
# Sets up, builds (release) and runs the demo workload: bash scripts/demo.sh [demo args...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake --preset release -G Ninja >/dev/null
cmake --build --preset release -j "$(nproc)" --target rcuvm-demo
exec build/release/tools/rcuvm-demo "$@"
