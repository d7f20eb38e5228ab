#!/usr/bin/env bash
# Installs what the tests and benchmarks need on a fresh Debian machine:
# the real SIP peers (SIPp, baresip, linphonec, Kamailio) and build tools.
# Safe to run again: it installs only what is missing.
set -euo pipefail

# libjna-java: JNA for the JVM test of the generated Kotlin bindings.
# libasound2-dev: ALSA headers for cpal (the desktop phone's sound card).
# chromium: the web app's browser tests (driven by playwright-core);
# fonts-noto-cjk: Japanese text in its screenshots.
# espeak-ng: the built-in Japanese prompts and spoken announcements (the PBX
# runs it); libsox-fmt-mp3 and opus-tools: the tests make MP3 and Ogg Opus
# uploads with sox and opusenc.
packages=(sip-tester baresip linphone-cli kamailio kamailio-extra-modules rtpengine-daemon sox libopus-dev libasound2-dev cmake pkg-config curl libjna-java chromium fonts-noto-cjk espeak-ng libsox-fmt-mp3 opus-tools)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Kamailio's package may start a system service on install; the tests and
# benchmarks start their own instances on other ports.
if command -v systemctl >/dev/null 2>&1; then systemctl stop kamailio >/dev/null 2>&1 || true; fi
# The bindings tests (tests/e2e_bindings.rs): the Kotlin compiler from npm,
# pinned by the committed lock file (reinstalled only when that changes),
# and pytest for the Python bindings.
kotlin_dir="$(cd "$(dirname "$0")/.." && pwd)/bindings/ffi/tests/kotlin"
if ! cmp -s "$kotlin_dir/package-lock.json" "$kotlin_dir/node_modules/.installed-lock.json"; then
  echo "setup: installing the Kotlin compiler (npm ci in bindings/ffi/tests/kotlin)"
  (cd "$kotlin_dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  cp "$kotlin_dir/package-lock.json" "$kotlin_dir/node_modules/.installed-lock.json"
fi
if ! python3 -c 'import pytest' >/dev/null 2>&1; then
  echo "setup: installing pytest"
  python3 -m pip install -q --disable-pip-version-check pytest >/dev/null 2>&1 \
    || { SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"; DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-pytest >/dev/null; }
fi
# moto's standalone S3 server: the recording test stores calls in it.
if ! command -v moto_server >/dev/null 2>&1; then
  echo "setup: installing moto[server] (a local S3 for the recording tests)"
  python3 -m pip install -q --disable-pip-version-check 'moto[server]' >/dev/null 2>&1 \
    || echo "setup: warning: could not install moto[server]; the S3 recording test will fail" >&2
fi
# The admin web app (TypeScript + Vite, and playwright-core for its tests).
"$(dirname "$0")/build-web.sh"
echo "setup: ok (sipp $(sipp -v 2>/dev/null | grep -o 'v[0-9.]*' | head -1), baresip, linphonec, kamailio, kotlinc, pytest, chromium present; web app built)"
