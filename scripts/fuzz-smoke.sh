#!/usr/bin/env bash
# Runs every codec fuzz target in fuzz/ for N seconds (default 5; the first
# argument overrides). Exits non-zero if any target finds a crash or fails
# to build.
#
# Uses `cargo +nightly fuzz` when a nightly toolchain is installed;
# otherwise the stable toolchain with RUSTC_BOOTSTRAP=1 and no sanitizer.
# Needs cargo-fuzz (`cargo install cargo-fuzz`).
set -u

secs="${1:-5}"
case "$secs" in
  '' | *[!0-9]*) echo "usage: $0 [seconds]" >&2; exit 2 ;;
esac

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root" || exit 2
dir=(--fuzz-dir "$root/fuzz")

if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  fuzz=(cargo +nightly fuzz)
  build_flags=()
else
  export RUSTC_BOOTSTRAP=1
  fuzz=(cargo fuzz)
  build_flags=(-s none)
fi

targets="$("${fuzz[@]}" list "${dir[@]}")" || { echo "fuzz-smoke: cargo fuzz list failed" >&2; exit 2; }
"${fuzz[@]}" build "${dir[@]}" ${build_flags[@]+"${build_flags[@]}"} || { echo "fuzz-smoke: build failed" >&2; exit 1; }

failed=()
for target in $targets; do
  echo "== fuzz-smoke: $target for ${secs}s"
  if ! "${fuzz[@]}" run "${dir[@]}" ${build_flags[@]+"${build_flags[@]}"} "$target" -- -max_total_time="$secs"; then
    failed+=("$target")
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz-smoke: FAILED: ${failed[*]} (see fuzz/artifacts/)" >&2
  exit 1
fi
echo "fuzz-smoke: all targets ran ${secs}s without a crash"
