#!/usr/bin/env bash
# Installs the Debian packages rcuvm needs, when they are missing. Idempotent;
# needs root (or sudo) only when something must be installed.
set -euo pipefail
packages=(cmake ninja-build g++ clang pkg-config python3 liburcu-dev libabsl-dev libgtest-dev
          libgmock-dev libbenchmark-dev libtbb-dev libclang-rt-14-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
