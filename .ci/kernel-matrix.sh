#!/usr/bin/env bash
# Kernel matrix (issue 8): the test binaries of `cargo test --no-run`, run inside qemu under
# Debian's 6.1 LTS kernel and a 6.12 kernel, one VM per kernel. Prints, per kernel,
#
#     kernel <uname -r>: N passed, M failed
#
# and exits non-zero if any test (or test binary, or the VM itself) failed on any kernel.
#
# Recipe (measured on these machines, see issue 8):
# - qemu-system-x86 and cpio from apt; the kernels are only downloaded (`apt-get download` of
#   the package the `linux-image-cloud-amd64` metapackage depends on, for the newest version
#   of each series) and unpacked with `dpkg-deb -x`, never installed. 6.12 comes from
#   <codename>-backports on bookworm; the source is added if missing.
# - /dev/kvm here is a nested software hypervisor that fails with stock kernels: TCG.
# - qemu 10 (bookworm-backports; the image's qemu-utils comes from there too, so nothing is
#   replaced), not bookworm's 7.2: under 7.2's TCG the 6.12 guest oopses a few seconds into
#   the tests (NULL RIP or a double fault, garbage EFLAGS, in openat2/mprotect), with
#   `-cpu max` and with `-cpu max,-pku` alike; 6.1 happened to survive. With qemu 10.0 both
#   kernels ran the whole suite cleanly, repeatedly.
# - The initramfs holds a static init of our own (.ci/matrix/init.c), the test binaries
#   (debug info stripped, to keep the archive small) laid out as under target/ so that tests
#   finding the examples next to themselves work, the examples, curl, and every library
#   `ldd` lists. The init runs each binary in turn and powers off through isa-debug-exit.
# - Under TCG syscall-bound tests run ~4x slower and bulk copies ~25x. Measured test by test
#   in the VM, one test is bulk-bound: file_server::many_clients (16 clients x 2 x 5 MiB,
#   17-20 s per backend). The VM sets TRUEIO_TEST_SCALE (tests/util: util::scaled, a factor
#   on counts) to 0.25 there: 4 clients. Every other test moves its normal amount: the other
#   transfers are a few MiB and take about a second; the slow ones wait on timers
#   (file_server's timeouts) or scan /proc/self/net/tcp (net_ops's dropped-accept checks).
#   TRUEIO_MATRIX_ENV passes more variables into the VM (e.g. PROPTEST_CASES).
# - Doc tests are not run in the VM (they need rustdoc); the normal lane runs them.
#
# Everything is cached under target/kernel-matrix/ (kernels, init, initramfs staging, logs);
# a second run downloads nothing. Knobs (environment):
#   TRUEIO_MATRIX_KERNELS   series to run, default "6.1 6.12"
#   TRUEIO_MATRIX_TEST_ARGS extra arguments for every test binary (e.g. a name filter)
#   TRUEIO_MATRIX_SCALE     TRUEIO_TEST_SCALE in the VM, default 0.25
#   TRUEIO_MATRIX_ENV       extra KEY=VALUE words for the tests' environment in the VM
#   TRUEIO_MATRIX_TIMEOUT   seconds allowed per VM, default 1500
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

KERNELS=${TRUEIO_MATRIX_KERNELS:-"6.1 6.12"}
SCALE=${TRUEIO_MATRIX_SCALE:-0.25}
EXTRA_ENV=${TRUEIO_MATRIX_ENV:-}
CPU=${TRUEIO_MATRIX_CPU:-max}
VM_TIMEOUT=${TRUEIO_MATRIX_TIMEOUT:-1500}
TEST_ARGS=${TRUEIO_MATRIX_TEST_ARGS:-}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
CACHE=$TARGET/kernel-matrix
mkdir -p "$CACHE/kernels" "$CACHE/logs"

say() { echo "matrix: $*"; }
die() {
  echo "matrix: FAILED: $*" >&2
  exit 1
}

# ---- tools -------------------------------------------------------------------------------
APT_UPDATED=
apt_update() {
  if [ -z "$APT_UPDATED" ]; then
    say "apt-get update"
    apt-get update -qq >/dev/null || die "apt-get update"
    APT_UPDATED=1
  fi
}
# Adds <codename>-backports to the apt sources (6.12 and qemu 10 on bookworm), then updates.
add_backports() {
  local codename
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  [ -n "$codename" ] || return 0
  if ! grep -rqs -- "$codename-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    say "adding the $codename-backports apt source"
    cat >"/etc/apt/sources.list.d/$codename-backports.sources" <<EOF
Types: deb
URIs: http://deb.debian.org/debian
Suites: $codename-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    APT_UPDATED=
  fi
  apt_update
}
qemu_major() {
  { qemu-system-x86_64 --version 2>/dev/null || true; } |
    sed -n 's/^QEMU emulator version \([0-9]*\).*/\1/p'
}
QEMU_MAJOR=$(qemu_major)
if [ -z "$QEMU_MAJOR" ] || [ "$QEMU_MAJOR" -lt 10 ] || ! command -v cpio >/dev/null; then
  add_backports
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  say "installing qemu-system-x86 (10 or later) and cpio"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    -t "$codename-backports" qemu-system-x86 cpio >/dev/null ||
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      qemu-system-x86 cpio >/dev/null || die "apt-get install qemu-system-x86 cpio"
  [ "$(qemu_major)" -ge 10 ] || die "qemu-system-x86_64 $(qemu_major).x: 10 or later is needed"
fi
command -v gcc >/dev/null || die "gcc is needed to build the VM's init"

# ---- kernels -----------------------------------------------------------------------------
# "<version> <package>" of the newest linux-image-cloud-amd64 in series $1 (e.g. 6.1), from
# the apt lists: the metapackage's version picks the series, its dependency names the
# package with the current ABI number.
resolve_kernel() {
  local series=$1
  apt-cache show linux-image-cloud-amd64 2>/dev/null | awk -v s="$series." '
    /^Version: / { v = $2 }
    /^Depends: / && index(v, s) == 1 { split($2, d, /[ ,]/); print v, d[1] }
  ' | sort -V | tail -n1
}

# Prints the directory holding the unpacked kernel of series $1 (boot/vmlinuz-*).
fetch_kernel() {
  local series=$1 found ver pkg dir
  found=$(resolve_kernel "$series")
  if [ -z "$found" ]; then
    add_backports >&2
    found=$(resolve_kernel "$series")
  fi
  [ -n "$found" ] || die "no linux-image-cloud-amd64 of series $series in the apt sources"
  read -r ver pkg <<<"$found"
  dir=$CACHE/kernels/${pkg}_$ver
  if ! ls "$dir"/boot/vmlinuz-* >/dev/null 2>&1; then
    say "downloading $pkg $ver" >&2
    rm -rf "$dir" "$CACHE/kernels/dl"
    mkdir -p "$CACHE/kernels/dl"
    if ! (cd "$CACHE/kernels/dl" && apt-get download -qq -o APT::Sandbox::User=root \
      "$pkg=$ver" >/dev/null 2>&1); then
      # Stale lists: the version they name is gone from the mirror.
      APT_UPDATED=
      apt_update >&2
      found=$(resolve_kernel "$series")
      read -r ver pkg <<<"$found"
      dir=$CACHE/kernels/${pkg}_$ver
      (cd "$CACHE/kernels/dl" && apt-get download -qq -o APT::Sandbox::User=root \
        "$pkg=$ver" >/dev/null) || die "apt-get download $pkg=$ver"
    fi
    mkdir -p "$dir.tmp"
    dpkg-deb -x "$CACHE"/kernels/dl/*.deb "$dir.tmp"
    # Keep only what boots: the image (modules are not needed; the config documents it).
    mkdir -p "$dir/boot"
    mv "$dir.tmp"/boot/vmlinuz-* "$dir.tmp"/boot/config-* "$dir/boot/"
    rm -rf "$dir.tmp" "$CACHE/kernels/dl"
  fi
  echo "$dir"
}

# ---- test binaries -----------------------------------------------------------------------
say "cargo test --workspace --no-run"
cargo test --workspace --no-run --message-format=json-render-diagnostics \
  >"$CACHE/build.json" || die "cargo test --no-run"
# Executables of test targets (integration tests and unit tests of both crates).
mapfile -t TEST_BINS < <(grep '"reason":"compiler-artifact"' "$CACHE/build.json" |
  grep '"profile":{[^}]*"test":true' |
  sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | sort -u)
[ "${#TEST_BINS[@]}" -gt 0 ] || die "cargo test --no-run listed no test binary"
PROFILE_DIR=$(dirname "$(dirname "${TEST_BINS[0]}")")
EXAMPLES=(doctor deny_io_uring file_server echo cp iobench)
for e in "${EXAMPLES[@]}"; do
  [ -x "$PROFILE_DIR/examples/$e" ] || die "$PROFILE_DIR/examples/$e was not built"
done

# ---- init and initramfs ------------------------------------------------------------------
INIT=$CACHE/init
if [ ! -x "$INIT" ] || [ .ci/matrix/init.c -nt "$INIT" ]; then
  gcc -static -O2 -Wall -Wextra -Werror -o "$INIT" .ci/matrix/init.c || die "building init"
fi

STAGE=$CACHE/initramfs
rm -rf "$STAGE"
mkdir -p "$STAGE"/{matrix,etc,proc,sys,dev,tmp,usr/bin,t/debug/deps,t/debug/examples}
cp "$INIT" "$STAGE/init"
mknod -m 600 "$STAGE/dev/console" c 5 1 2>/dev/null || true
echo "127.0.0.1 localhost" >"$STAGE/etc/hosts"
echo "root:x:0:0:root:/tmp:/bin/false" >"$STAGE/etc/passwd"

ELFS=()
for b in "${TEST_BINS[@]}"; do
  strip --strip-debug -o "$STAGE/t/debug/deps/$(basename "$b")" "$b"
  ELFS+=("$b")
done
for e in "${EXAMPLES[@]}"; do
  strip --strip-debug -o "$STAGE/t/debug/examples/$e" "$PROFILE_DIR/examples/$e"
  ELFS+=("$PROFILE_DIR/examples/$e")
done
# curl, for the file server's download test (it skips, saying so, without it).
if command -v curl >/dev/null; then
  cp -L "$(command -v curl)" "$STAGE/usr/bin/curl"
  ELFS+=("$(command -v curl)")
fi
# coreutils cp and diff (the storage tests compare with them) and mount/umount (the ENOSPC
# test mounts a small tmpfs).
for tool in cp diff mount umount; do
  if p=$(command -v "$tool"); then
    cp -L "$p" "$STAGE/usr/bin/$tool"
    ELFS+=("$p")
  fi
done
# The fuzz corpus, which tests/request_fuzz.rs replays (TRUEIO_FUZZ_CORPUS below; the
# source tree's path may lie under /tmp, which is a fresh tmpfs in the VM).
cp -r fuzz/corpus "$STAGE/matrix/fuzz-corpus"
# Every library the dynamic loader will want, at the path ldd resolves it to.
for lib in $(ldd "${ELFS[@]}" 2>/dev/null | grep -o '/[^ ]*' | sort -u); do
  [ -e "$lib" ] || continue
  mkdir -p "$STAGE$(dirname "$lib")"
  cp -L "$lib" "$STAGE$lib"
done

{
  echo "PATH=/usr/bin:/bin"
  echo "HOME=/tmp"
  echo "TMPDIR=/tmp"
  echo "RUST_BACKTRACE=1"
  # Bulk data sized for TCG (see the header).
  echo "TRUEIO_TEST_SCALE=$SCALE"
  # The model test's random sequences per variant (128 natively): ~18 s per variant under
  # TCG at 128.
  echo "PROPTEST_CASES=${TRUEIO_MATRIX_PROPTEST_CASES:-24}"
  for kv in $EXTRA_ENV; do echo "$kv"; done
  # No cargo in the VM: tests use the examples built next to them as they are.
  echo "TRUEIO_TEST_PREBUILT_EXAMPLES=1"
  echo "TRUEIO_FUZZ_CORPUS=/matrix/fuzz-corpus"
  echo "MATRIX_JOB_TIMEOUT=$((VM_TIMEOUT / 2))"
} >"$STAGE/matrix/env"
{
  echo "/t/debug/examples/doctor"
  for b in "${TEST_BINS[@]}"; do
    # shellcheck disable=SC2086 # TEST_ARGS is a list of arguments
    echo "/t/debug/deps/$(basename "$b") $TEST_ARGS"
  done
} >"$STAGE/matrix/jobs"
(cd "$STAGE" && find . -print0 | cpio --null -o -H newc --quiet) >"$CACHE/initramfs.cpio"
say "initramfs: ${#TEST_BINS[@]} test binaries, $(du -m "$CACHE/initramfs.cpio" | cut -f1) MiB"
say "every test runs; TRUEIO_TEST_SCALE=$SCALE sizes down file_server::many_clients (bulk data)"
say "not run in the VM: doc tests (they need rustdoc; the normal lane runs them)"

# ---- run ---------------------------------------------------------------------------------
SUMMARY=()
FAILED_KERNELS=0
for series in $KERNELS; do
  kdir=$(fetch_kernel "$series")
  vmlinuz=$(ls "$kdir"/boot/vmlinuz-*)
  log=$CACHE/logs/$series.log
  say "booting $(basename "$vmlinuz") (TCG), log in ${log#"$ROOT"/}"
  start=$(date +%s)
  set +e
  timeout -k 10 "$VM_TIMEOUT" qemu-system-x86_64 -accel tcg -cpu "$CPU" -m 1024 -smp 2 \
    -nodefaults -vga none -display none -serial stdio -no-reboot \
    -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
    -kernel "$vmlinuz" -initrd "$CACHE/initramfs.cpio" \
    -append "console=ttyS0 quiet panic=-1 rdinit=/init" </dev/null | tr -d '\r' >"$log"
  qemu_rc=${PIPESTATUS[0]}
  set -e
  secs=$(($(date +%s) - start))

  kver=$(sed -n 's/^@@matrix kernel //p' "$log" | head -n1)
  kver=${kver:-"$(basename "$vmlinuz" | sed 's/^vmlinuz-//') (did not start)"}
  # Per binary: its libtest summary, or a failure if it died without one.
  passed=0
  failed=0
  problems=()
  current=
  while IFS= read -r line; do
    case $line in
      "@@matrix start "*) current=${line#@@matrix start } ; got_result= ;;
      "test result: "*)
        p=$(sed -n 's/.* \([0-9]*\) passed; \([0-9]*\) failed.*/\1/p' <<<"$line")
        f=$(sed -n 's/.* \([0-9]*\) passed; \([0-9]*\) failed.*/\2/p' <<<"$line")
        t=$(sed -n 's/.*finished in \(.*\)$/\1/p' <<<"$line")
        passed=$((passed + p))
        failed=$((failed + f))
        got_result=1
        printf '  %-16s %4d passed, %d failed (%s)\n' \
          "$(basename "$current" | sed 's/-[0-9a-f]*$//')" "$p" "$f" "$t"
        [ "$f" = 0 ] || problems+=("$(basename "$current"): $f failed")
        ;;
      "@@matrix job "*)
        read -r _ _ job _ st _ <<<"$line"
        if [ "$st" != 0 ] && [ -z "$got_result" ]; then
          # No libtest summary: the binary crashed, hung, or is the doctor.
          failed=$((failed + 1))
          problems+=("$(basename "$job") exited with status $st without a test summary")
        fi
        ;;
    esac
  done <"$log"

  # Jobs that never reported (the VM died or timed out): each counts as a failure.
  jobs_expected=$(grep -c . "$STAGE/matrix/jobs")
  jobs_seen=$(grep -ac '^@@matrix job ' "$log" || true)
  if [ "$jobs_seen" -lt "$jobs_expected" ]; then
    failed=$((failed + jobs_expected - jobs_seen))
    last_started=$(sed -n 's|^@@matrix start ||p' "$log" | tail -n1)
    problems+=("$((jobs_expected - jobs_seen)) of $jobs_expected jobs (doctor, test binaries) never finished; the last started: ${last_started:-none}")
  fi
  done_line=$(sed -n 's/^@@matrix done //p' "$log")
  if [ "$done_line" != "0" ] || [ "$qemu_rc" != 1 ]; then
    if [ -z "$done_line" ]; then
      problems+=("the VM did not finish (qemu status $qemu_rc after ${secs}s); its last lines:")
      mapfile -t last < <(tail -n 30 "$log")
      problems+=("${last[@]/#/  | }")
    fi
    [ "$failed" -gt 0 ] || failed=1
  fi
  # The doctor's report, and the reasons for any skipped test bodies.
  echo "  -- doctor on $kver:"
  sed -n '\|^@@matrix start /t/debug/examples/doctor|,/^@@matrix job/p' "$log" |
    { grep -av '^@@matrix' || true; } | sed 's/^/  | /'
  grep -ah '^note: tests of .* skipped:' "$log" | sed 's/^/  /' | sort -u || true
  for p in "${problems[@]}"; do
    case $p in "  | "*) echo "$p" ;; *) echo "  FAILED: $p" ;; esac
  done
  if [ "$failed" != 0 ]; then
    { grep -a -A1 'panicked at' "$log" || true; } | head -n 40 | sed 's/^/  | /'
  fi
  say "${secs}s under $kver"
  SUMMARY+=("kernel $kver: $passed passed, $failed failed")
  [ "$failed" = 0 ] || FAILED_KERNELS=$((FAILED_KERNELS + 1))
done

for s in "${SUMMARY[@]}"; do echo "$s"; done
if [ "$FAILED_KERNELS" -gt 0 ]; then
  die "tests failed on $FAILED_KERNELS kernel(s); full logs in ${CACHE#"$ROOT"/}/logs/"
fi
