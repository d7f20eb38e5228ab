#!/usr/bin/env bash
# Starts the PBX on its embedded defaults with a demo organisation
# (SQLite and a development TLS certificate in ./tsunagu-demo), after
# building the admin web app (web/, TypeScript + Vite) it serves.
# Extra arguments go to `tsunagu demo` (e.g. --http 127.0.0.1:8081).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-web.sh
exec cargo run --release --bin tsunagu -- demo "$@"
