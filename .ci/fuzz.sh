#!/usr/bin/env bash
# A bounded cargo-fuzz run of the file server's request handling and path resolution
# (fuzz/fuzz_targets/{request,path}.rs, checks in fuzz/checks.rs), called by .ci/run.
#
#   bash .ci/fuzz.sh                       # each target FUZZ_SECONDS (20) on the default backend,
#                                          # then `path` FUZZ_SECONDS/2 on epoll
#   FUZZ_SECONDS=600 bash .ci/fuzz.sh      # a longer hunt
#   FUZZ_SANITIZER=address bash .ci/fuzz.sh   # with AddressSanitizer (needs RUSTC_BOOTSTRAP=1
#                                          # on this stable toolchain: set here)
#
# The corpus in fuzz/corpus/<target> seeds each run and is not modified; what a run finds new
# goes to a temporary directory (FUZZ_KEEP_CORPUS=1 adds what brings new coverage to
# fuzz/corpus, to be committed). A crash is copied to fuzz/artifacts/<target>/ and fails the script; add it to
# fuzz/corpus/<target> with the fix, so tests/request_fuzz.rs replays it in every `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-20}"
sanitizer="${FUZZ_SANITIZER:-none}"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "-- installing cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet
fi
cargo fuzz --version

flags=(--sanitizer "$sanitizer" --debug-assertions)
if [ "$sanitizer" != none ]; then
  # Sanitizers need -Z flags; stable rustc accepts them with RUSTC_BOOTSTRAP.
  export RUSTC_BOOTSTRAP=1
fi

work="$(mktemp -d /tmp/trueio-fuzz.XXXXXX)"
trap 'rm -rf "$work"' EXIT
# The targets make their fixture (a root with a secret beside it) under TMPDIR and never get
# to remove it (libFuzzer exits): keep it in the work directory.
export TMPDIR="$work/tmp"
mkdir -p "$TMPDIR"

start=$(date +%s)
echo "-- building the fuzz targets (sanitizer: $sanitizer)"
cargo fuzz build "${flags[@]}" 2>&1 | tail -n 1

# run TARGET BACKEND SECONDS MAX_LEN
run() {
  local target=$1 backend=$2 secs=$3 max_len=$4
  local new="$work/corpus-$target-$backend" artifacts="$work/artifacts-$target-$backend/"
  mkdir -p "$new" "$artifacts"
  echo "-- $target on $backend for ${secs}s"
  local log="$work/$target-$backend.log"
  if ! TRUEIO_BACKEND=$backend cargo fuzz run "${flags[@]}" "$target" "$new" "fuzz/corpus/$target" -- \
      -max_total_time="$secs" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 \
      -dict=fuzz/http.dict -artifact_prefix="$artifacts" -print_final_stats=1 >"$log" 2>&1; then
    tail -n 40 "$log"
    mkdir -p "fuzz/artifacts/$target"
    for f in "$artifacts"*; do
      [ -e "$f" ] || continue
      cp "$f" "fuzz/artifacts/$target/"
      echo "crash input fuzz/artifacts/$target/$(basename "$f"):"
      od -c "$f" | head -n 20
    done
    echo "fuzz: $target on $backend failed" >&2
    exit 1
  fi
  grep -E "^(Done|stat::number_of_executed_units|stat::new_units_added)" "$log" || true
  echo "$(ls "$new" | wc -l) new inputs"
  if [ "${FUZZ_KEEP_CORPUS:-0}" = 1 ]; then
    # -merge=1 adds to the first directory only the inputs that bring new coverage, and
    # removes nothing (the named seeds stay).
    TRUEIO_BACKEND=$backend cargo fuzz run "${flags[@]}" "$target" "fuzz/corpus/$target" "$new" -- \
      -merge=1 -max_len="$max_len" -timeout=10 >"$work/merge.log" 2>&1
    echo "fuzz/corpus/$target: $(ls "fuzz/corpus/$target" | wc -l) inputs after merging"
  fi
}

run request auto "$seconds" 9000
run path auto "$seconds" 1024
run path epoll $((seconds / 2 > 0 ? seconds / 2 : 1)) 1024

echo "fuzz: no crash ($(( $(date +%s) - start ))s with the build)"
