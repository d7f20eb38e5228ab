#!/usr/bin/env bash
# Builds the admin web app into web/dist: `npm ci` when the lock file
# changed since the last install, then `npm run build` (type check + Vite).
set -euo pipefail
cd "$(dirname "$0")/../web"
if ! cmp -s package-lock.json node_modules/.installed-lock.json; then
  echo "web: installing packages (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error >/dev/null
  cp package-lock.json node_modules/.installed-lock.json
fi
npm run --silent build >/dev/null
echo "web: built web/dist"
