#!/usr/bin/env bash
# Checks that every workspace crate can be published to crates.io and documents cleanly: `cargo package` in dependency
# order (cargo resolves the not-yet-published torchless-* dependencies from the local packages),
# the metadata crates.io requires, and its 10 MiB size cap. `--no-verify`: building each packaged
# crate again from scratch would take as long as the whole test run; the workspace build and
# `cargo doc` cover the code. Needs the crates.io index (network).
set -euo pipefail
cd "$(dirname "$0")/.."

log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! cargo package --workspace --no-verify --allow-dirty --quiet >"$log" 2>&1; then
  cat "$log" >&2
  echo "check-publish: cargo package failed" >&2
  exit 1
fi
# cargo only warns about missing metadata; crates.io refuses the upload.
if grep -i "warning: manifest has no" "$log" >&2; then
  echo "check-publish: add the missing metadata to the crate's Cargo.toml" >&2
  exit 1
fi
status=0
for crate in target/package/*.crate; do
  size=$(stat -c %s "$crate")
  if [ "$size" -gt $((10 * 1024 * 1024)) ]; then
    echo "check-publish: $crate is $size bytes, over crates.io's 10 MiB" >&2
    status=1
  fi
done
# docs.rs builds every crate's documentation; broken links and (in torchless) missing docs fail.
RUSTDOCFLAGS="-D warnings" cargo doc --release --workspace --no-deps --quiet || status=1
[ "$status" -eq 0 ] && echo "check-publish: $(ls target/package/*.crate | wc -l) crates packaged"
exit "$status"
