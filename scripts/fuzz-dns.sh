#!/usr/bin/env bash
# Runs the sdn-dns fuzz target (arbitrary bytes through the DNS query path) under libFuzzer for
# FUZZ_SECONDS (default 60). Built by hand with the instrumentation cargo-fuzz would pass (less
# the address sanitizer, which safe Rust does not need), so CI needs no cargo-fuzz install.
# Fails on a crash; the input is then in sdn-dns/fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/../sdn-dns/fuzz"
export PATH="$HOME/.cargo/bin:$PATH"
seconds="${FUZZ_SECONDS:-60}"
target="$(rustc -vV | sed -n 's/^host: //p')"
RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
  -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks" \
  rustup run nightly cargo build --quiet --release --target "$target"
mkdir -p corpus/respond artifacts/respond
echo "fuzz-dns: respond for ${seconds} s"
"target/$target/release/respond" -max_total_time="$seconds" -max_len=1024 \
  -artifact_prefix=artifacts/respond/ -print_final_stats=1 corpus/respond 2>&1 | tail -n 12
