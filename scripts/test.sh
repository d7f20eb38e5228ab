#!/usr/bin/env bash
# Runs every test: unit tests, the RFC 4475 corpus, the parser fuzz smoke
# test and the end-to-end tests against real SIP peers. Installs what it
# needs first (scripts/setup.sh). One cargo profile (dev, dependencies
# optimised) builds everything once.
set -euo pipefail
cd "$(dirname "$0")/.."

stage() { printf '\n==> %s\n' "$*"; }
t0=$(date +%s)
stage "setup"
scripts/setup.sh
t1=$(date +%s)

stage "build (all tests, one profile)"
# This also builds the bindings' library (libtsunagu_ffi.so) and
# uniffi-bindgen, which tests/e2e_bindings.rs uses, and the desktop phone
# that tests/e2e_phone.rs and e2e_handover.rs run: cargo builds a package's
# binaries for its own integration tests (bindings/ffi/tests, phone/tests),
# so they come with the same features as everything else. (A separate
# `cargo build -p …` resolves features for that package alone and rebuilt
# some 26 crates.)
cargo test --workspace --no-run --locked
t2=$(date +%s)

stage "tests"
# Real-peer tests start servers and peers on 127.0.0.1; two at a time keeps
# a 2-core machine from starving them.
cargo test --workspace --locked -- --test-threads="${TSUNAGU_TEST_THREADS:-2}"
t3=$(date +%s)

printf '\nstage times: setup %ss, build %ss, tests %ss, total %ss\n' $((t1-t0)) $((t2-t1)) $((t3-t2)) $((t3-t0))
