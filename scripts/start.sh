#!/usr/bin/env bash
# Quick start: install what is missing, build, and run chorusd on its
# built-in defaults (127.0.0.1:8080, history in ./chorus.db).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"
exec ./build/chorusd "$@"
