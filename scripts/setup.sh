#!/usr/bin/env bash
# Installs what the tests and benchmarks need on a fresh Debian machine:
# the real SIP peers (SIPp, baresip, linphonec, Kamailio) and build tools.
# Safe to run again: it installs only what is missing.
set -euo pipefail

packages=(sip-tester baresip linphone-cli kamailio kamailio-extra-modules rtpengine-daemon sox libopus-dev cmake pkg-config curl)
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
echo "setup: ok (sipp $(sipp -v 2>/dev/null | grep -o 'v[0-9.]*' | head -1), baresip, linphonec, kamailio present)"
