#!/usr/bin/env bash
# Storage benchmark: iobench (trueio on io_uring, plain and with registered buffers and files,
# and on the epoll fallback) against fio (io_uring plain and fixed, psync, libaio for O_DIRECT)
# on the same page-cached file, and our cp against coreutils cp, all in one run.
#
#   bash benches/storage.sh                  # 1 GiB file, 10 s per run, medians of 3
#   RUNTIME=3 ROUNDS=1 SIZE=256M bash benches/storage.sh   # a quick look
#   ONLY="randwrite copy" bash benches/storage.sh           # some of the workloads: randread1,
#                                                          # randread32, read128k, randwrite,
#                                                          # direct, sqpoll, copy
#
# Each job runs on CPU 1 (taskset), one job at a time; rounds are interleaved, so a noisy
# minute hurts every engine alike. Buffered runs re-read the file first: this VM drops page
# cache that sat idle for about a minute. fio gets --iomem_align=4096 (a buffer off a page
# boundary hits 4K aliasing and runs up to ~25x slower here); iobench's buffers are
# page-aligned by construction. Prints IOPS, MB/s, CPU µs per op and the ratios of every row
# to fio's io_uring with the same options and to fio's psync.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNTIME=${RUNTIME:-10}
ROUNDS=${ROUNDS:-3}
SIZE=${SIZE:-1G}
DIR=${DIR:-target/storage-bench}
CPU=${CPU:-1}
ONLY=${ONLY:-randread1 randread32 read128k randwrite direct sqpoll copy}
wanted() { [[ " $ONLY " == *" $1 "* ]]; }
mkdir -p "$DIR"
FILE=$DIR/data.bin
OUT=$DIR/results.jsonl
: >"$OUT"

if ! command -v fio >/dev/null; then
  echo "== installing fio"
  apt-get update -qq && apt-get install -y -qq fio >/dev/null
fi
echo "== building iobench and cp (release)"
cargo build --release --quiet --example iobench --example cp
IOBENCH=target/release/examples/iobench
CP=target/release/examples/cp

# Create and fill the file once (iobench's fill pattern, so verification works on it too).
$IOBENCH --file "$FILE" --size "$SIZE" --rw read --bs 1M --qd 1 --runtime 0.1 --json >/dev/null

warm() { cat "$FILE" >/dev/null; }
# Before every job: no dirty pages left by an earlier write job (dirtying a clean page costs
# several times re-dirtying a dirty one, so each write job would otherwise run faster than
# the one before it, and the flusher would compete with the O_DIRECT jobs that follow the
# writes), and a buffered job reads the file back in just before it starts.
prepare() {
  local direct=$1
  sync
  if [ "$direct" != 1 ]; then warm; fi
}

# fio_job NAME RW BS QD DIRECT ENGINE [EXTRA...] -> one JSON line in $OUT
fio_job() {
  local name=$1 rw=$2 bs=$3 qd=$4 direct=$5 engine=$6
  shift 6
  prepare "$direct"
  local json
  json=$(taskset -c "$CPU" fio --name=job --filename="$FILE" --size="$SIZE" --rw="$rw" --bs="$bs" \
    --iodepth="$qd" --direct="$direct" --ioengine="$engine" --runtime="$RUNTIME" --time_based \
    --iomem_align=4096 --invalidate=0 --output-format=json "$@" 2>/dev/null)
  python3 - "$name" "$rw" "$bs" "$qd" "$direct" <<EOF >>"$OUT"
import json, sys
d = json.loads('''$json''')
j = d["jobs"][0]
side = j["write"] if "write" in sys.argv[2] else j["read"]
secs = j["elapsed"] if j["elapsed"] else $RUNTIME
ops = side["total_ios"] or 1
print(json.dumps({"name": sys.argv[1], "rw": sys.argv[2], "bs": sys.argv[3], "qd": int(sys.argv[4]),
  "direct": sys.argv[5] == "1", "iops": side["iops"], "mb_per_s": side["bw_bytes"] / 1e6,
  "cpu_us_per_op": (j["usr_cpu"] + j["sys_cpu"]) / 100 * secs * 1e6 / ops}))
EOF
}

# iob_job NAME RW BS QD DIRECT [FLAGS...]
iob_job() {
  local name=$1 rw=$2 bs=$3 qd=$4 direct=$5
  shift 5
  local extra=()
  [ "$direct" = 1 ] && extra+=(--direct)
  # iobench also warms a buffered file itself, just before its run.
  prepare "$direct"
  local json
  json=$(taskset -c "$CPU" $IOBENCH --file "$FILE" --size "$SIZE" --rw "$rw" --bs "$bs" --qd "$qd" \
    --runtime "$RUNTIME" --json "${extra[@]}" "$@")
  python3 - "$name" "$rw" "$bs" "$qd" "$direct" "$json" <<'EOF' >>"$OUT"
import json, sys
d = json.loads(sys.argv[6])
print(json.dumps({"name": sys.argv[1], "rw": sys.argv[2], "bs": sys.argv[3], "qd": int(sys.argv[4]),
  "direct": sys.argv[5] == "1", "iops": d["iops"], "mb_per_s": d["mb_per_s"],
  "cpu_us_per_op": (d["usr_s"] + d["sys_s"]) * 1e6 / max(d["ops"], 1),
  "syscalls_per_op": d["syscalls_per_op"]}))
EOF
}

# workload LABEL RW BS QD DIRECT
workload() {
  local rw=$1 bs=$2 qd=$3 direct=$4
  fio_job "fio io_uring" "$rw" "$bs" "$qd" "$direct" io_uring
  fio_job "fio io_uring fixed" "$rw" "$bs" "$qd" "$direct" io_uring --fixedbufs=1 --registerfiles=1
  if [ "$direct" = 1 ]; then
    fio_job "fio libaio" "$rw" "$bs" "$qd" "$direct" libaio
  else
    fio_job "fio psync" "$rw" "$bs" 1 "$direct" psync
  fi
  iob_job "iobench io_uring" "$rw" "$bs" "$qd" "$direct" --backend uring
  iob_job "iobench io_uring fixed" "$rw" "$bs" "$qd" "$direct" --backend uring --fixed-bufs --fixed-files
  iob_job "iobench epoll" "$rw" "$bs" "$qd" "$direct" --backend epoll
  if [[ $rw == *write && $direct == 0 ]]; then
    # Each write as a blocking pwrite on the job's thread (Builder::inline_file_writes):
    # ext4 refuses RWF_NOWAIT writes, so io_uring hands every buffered write to a worker.
    iob_job "iobench io_uring inline-writes" "$rw" "$bs" "$qd" "$direct" --backend uring --inline-writes
  fi
}

copy_job() {
  local name=$1
  shift
  rm -f "$DIR/copy.bin"
  sync
  warm
  local t0 t1
  t0=$(date +%s.%N)
  taskset -c "$CPU" "$@" "$FILE" "$DIR/copy.bin"
  t1=$(date +%s.%N)
  cmp -s "$FILE" "$DIR/copy.bin" || { echo "copy by $name differs from the source" >&2; exit 1; }
  python3 -c "import json; s=$t1-$t0; print(json.dumps({'name': '$name', 'rw': 'copy', 'bs': '-', 'qd': 0, 'direct': False, 'iops': 0, 'mb_per_s': $(stat -c %s "$FILE")/s/1e6, 'cpu_us_per_op': 0, 'secs': s}))" >>"$OUT"
  rm -f "$DIR/copy.bin"
}

for round in $(seq 1 "$ROUNDS"); do
  echo "== round $round of $ROUNDS (runtime ${RUNTIME}s per job)"
  if wanted randread1; then workload randread 4k 1 0; fi
  if wanted randread32; then workload randread 4k 32 0; fi
  if wanted read128k; then workload read 128k 8 0; fi
  if wanted randwrite; then workload randwrite 4k 32 0; fi
  if wanted direct; then workload randread 4k 32 1; fi
  if wanted sqpoll; then
    # SQPOLL: the kernel's submission thread on CPU 0, the job on CPU 1 (it burns CPU 0).
    # fio's sqthread_poll turns on registerfiles by itself ("sqthread submission requires
    # registered files", engines/io_uring.c), so the same options here are --fixed-files.
    iob_job "iobench io_uring sqpoll" randread 4k 32 0 --backend uring --sqpoll-cpu 0 --fixed-files
    fio_job "fio io_uring sqpoll" randread 4k 32 0 io_uring --sqthread_poll=1 --sqthread_poll_cpu=0
  fi
  if wanted copy; then
    copy_job "coreutils cp" cp
    copy_job "trueio cp" "$CP"
  fi
done

python3 - "$OUT" <<'EOF'
import json, sys, statistics
from collections import defaultdict
rows = [json.loads(l) for l in open(sys.argv[1])]
groups = defaultdict(list)
for r in rows:
    groups[(r["rw"], r["bs"], r["qd"], r["direct"], r["name"])].append(r)
def med(rs, k):
    return statistics.median(r[k] for r in rs)
def spread(rs, k):
    v = [r[k] for r in rs]
    return (max(v) - min(v)) / max(statistics.median(v), 1e-9) * 100
print()
print("| workload | engine | IOPS | MB/s | CPU µs/op | vs fio io_uring (same options) | vs fio psync/libaio | spread |")
print("|---|---|---|---|---|---|---|---|")
workloads = []
for k in groups:
    w = k[:4]
    if w not in workloads:
        workloads.append(w)
for w in workloads:
    rw, bs, qd, direct = w
    label = f"{rw} {bs} QD{qd}{' O_DIRECT' if direct else ''}" if rw != "copy" else "copy 1 file"
    names = [k[4] for k in groups if k[:4] == w]
    # Baselines: fio io_uring with the same options; psync (QD1, any qd key) or libaio.
    def find(name):
        for k, rs in groups.items():
            if k[4] == name and k[0] == rw and k[1] == bs and k[3] == direct and (k[2] == qd or name == "fio psync"):
                return rs
        return None
    for n in names:
        rs = groups[w + (n,)]
        metric = "mb_per_s" if rw in ("read", "copy") else "iops"
        v = med(rs, metric)
        if rw == "copy":
            base = groups.get(("copy", "-", 0, False, "coreutils cp"))
            r1 = f"{v / med(base, metric):.2f}x coreutils" if base else "-"
            print(f"| {label} | {n} | - | {v:.0f} | - | {r1} | - | {spread(rs, metric):.0f}% |")
            continue
        fu_name = "fio io_uring fixed" if "fixed" in n else "fio io_uring sqpoll" if "sqpoll" in n else "fio io_uring"
        fu = find(fu_name)
        ps = find("fio libaio" if direct else "fio psync")
        r1 = f"{v / med(fu, metric):.2f}x" if fu else "-"
        r2 = f"{v / med(ps, metric):.2f}x" if ps else "-"
        print(f"| {label} | {n} | {med(rs, 'iops'):.0f} | {med(rs, 'mb_per_s'):.0f} | {med(rs, 'cpu_us_per_op'):.2f} | {r1} | {r2} | {spread(rs, metric):.0f}% |")
EOF
echo "(raw results: $OUT)"
