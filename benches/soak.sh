#!/usr/bin/env bash
# Soak: the file server under wrk plus clients that abort mid-transfer, and the echo server
# under connection churn, for a while (default 10 minutes); the descriptor count and RSS of
# both servers are sampled every second, printed as a curve, and must not grow between the
# first and the last minute of the load, and the descriptor count must come back to its idle
# value once the load stops. Not part of CI (.ci/run): run it by hand.
#
#   bash benches/soak.sh                 # 10 minutes, default backend
#   bash benches/soak.sh 120             # 2 minutes (or SOAK_SECONDS=120)
#   BACKEND=epoll bash benches/soak.sh   # the fallback
#
# Tolerances (environment): FD_TOL=16 (median descriptors, last window vs first), RSS_TOL_PCT=10
# and RSS_TOL_KB=8192 (median RSS may grow by the larger of the two), WINDOW=60 s (shrunk to
# half the loaded time on short runs), WARMUP=10 s (not compared), IDLE_FD_TOL=2 (descriptors
# left above the idle count 15 s after the load).
# Traffic goes to 127.0.0.1 only; every client stops by itself at the deadline.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_TOTAL=${1:-${SOAK_SECONDS:-600}}
BACKEND=${BACKEND:-auto}
WRK_CONNS=${WRK_CONNS:-32}
HTTP_PORT=${HTTP_PORT:-18480}
ECHO_PORT=${ECHO_PORT:-18481}

command -v python3 >/dev/null || { echo "soak: needs python3" >&2; exit 1; }
if ! command -v wrk >/dev/null; then
  echo "soak: installing wrk from Debian"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi

cargo build --release --example file_server --example echo 2>&1 | tail -n 1

WORK=$(mktemp -d /tmp/trueio-soak.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

mkdir -p "$WORK/root/sub"
head -c 1024 /dev/urandom >"$WORK/root/1k.bin"
head -c 65536 /dev/urandom >"$WORK/root/64k.bin"
head -c 1048576 /dev/urandom >"$WORK/root/1m.bin"
head -c 16777216 /dev/urandom >"$WORK/root/16m.bin"
echo "<p>index</p>" >"$WORK/root/sub/index.html"
cat >"$WORK/mix.lua" <<'LUA'
-- A mix of sizes, a directory index and a redirect: every answer is 2xx or 3xx.
local paths = {"/1k.bin", "/1k.bin", "/64k.bin", "/64k.bin", "/1m.bin", "/sub/", "/sub"}
local i = 0
request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end
LUA

target/release/examples/file_server --root "$WORK/root" --addr "127.0.0.1:$HTTP_PORT" \
  --threads 1 --backend "$BACKEND" >"$WORK/file_server.out" 2>&1 &
FS=$!
pids+=("$FS")
target/release/examples/echo --addr "127.0.0.1:$ECHO_PORT" --threads 1 --backend "$BACKEND" \
  >"$WORK/echo.out" 2>&1 &
ECHO=$!
pids+=("$ECHO")
for _ in $(seq 100); do
  grep -q backend "$WORK/file_server.out" 2>/dev/null && grep -q backend "$WORK/echo.out" 2>/dev/null && break
  sleep 0.1
done
head -n 1 "$WORK/file_server.out"
head -n 1 "$WORK/echo.out"

fds() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

# One sample a second: elapsed time, phase, descriptors and RSS of each server.
echo idle >"$WORK/phase"
echo "t,phase,file_server_fds,file_server_rss_kb,echo_fds,echo_rss_kb" >"$WORK/samples.csv"
start=$(date +%s.%N)
(
  while kill -0 "$FS" 2>/dev/null && kill -0 "$ECHO" 2>/dev/null; do
    now=$(date +%s.%N)
    printf '%s,%s,%s,%s,%s,%s\n' "$(awk "BEGIN { printf \"%.1f\", $now - $start }")" "$(cat "$WORK/phase")" \
      "$(fds "$FS")" "$(rss_kb "$FS")" "$(fds "$ECHO")" "$(rss_kb "$ECHO")" >>"$WORK/samples.csv"
    sleep 1
  done
) &
SAMPLER=$!
pids+=("$SAMPLER")

sleep 3
idle_fs=$(fds "$FS")
idle_echo=$(fds "$ECHO")
echo "idle: file_server $idle_fs descriptors, echo $idle_echo"

echo "load for ${SECONDS_TOTAL}s: wrk -c$WRK_CONNS (size mix), aborting HTTP clients, echo churn"
echo load >"$WORK/phase"
wrk -t1 -c"$WRK_CONNS" -d"${SECONDS_TOTAL}s" --timeout 10s -s "$WORK/mix.lua" \
  "http://127.0.0.1:$HTTP_PORT" >"$WORK/wrk.out" 2>&1 &
WRK=$!
pids+=("$WRK")
python3 benches/soak.py clients --http "$HTTP_PORT" --echo "$ECHO_PORT" \
  --seconds "$SECONDS_TOTAL" --stats "$WORK/clients.json"
wait "$WRK" || true

# After the load: the descriptors go back to their idle count.
echo after >"$WORK/phase"
back=0
for _ in $(seq 15); do
  sleep 1
  if [ "$(fds "$FS")" -le $((idle_fs + ${IDLE_FD_TOL:-2})) ] &&
    [ "$(fds "$ECHO")" -le $((idle_echo + ${IDLE_FD_TOL:-2})) ]; then
    back=1
    break
  fi
done
sleep 1
kill "$SAMPLER" 2>/dev/null || true

alive=1
kill -0 "$FS" 2>/dev/null || { echo "soak: the file server died" >&2; alive=0; }
kill -0 "$ECHO" 2>/dev/null || { echo "soak: the echo server died" >&2; alive=0; }

echo "-- wrk"
grep -E "Requests/sec|Transfer/sec|requests in|Non-2xx|Socket errors" "$WORK/wrk.out" || cat "$WORK/wrk.out"
echo "-- hostile clients"
cat "$WORK/clients.json"
echo
echo "-- curve (every 1 s; each line the range over its bucket)"
status=0
python3 benches/soak.py report "$WORK/samples.csv" --warmup "${WARMUP:-10}" --window "${WINDOW:-60}" \
  --fd-tol "${FD_TOL:-16}" --rss-tol-pct "${RSS_TOL_PCT:-10}" --rss-tol-kb "${RSS_TOL_KB:-8192}" || status=1
echo "after the load: file_server $(fds "$FS") descriptors (idle $idle_fs), echo $(fds "$ECHO") (idle $idle_echo)"
if [ "$back" != 1 ]; then
  echo "soak: descriptors did not come back to the idle count within 15 s" >&2
  status=1
fi
corrupt=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["echo_corrupt"])' "$WORK/clients.json")
if [ "$corrupt" != 0 ]; then
  echo "soak: $corrupt echoes came back different" >&2
  status=1
fi
if grep -q "Non-2xx" "$WORK/wrk.out"; then
  echo "soak: wrk got answers other than 2xx/3xx" >&2
  status=1
fi
[ "$alive" = 1 ] || status=1
if [ "$status" = 0 ]; then echo "soak: passed"; else echo "soak: FAILED" >&2; fi
exit "$status"
