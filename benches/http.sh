#!/usr/bin/env bash
# The static file server against nginx: the same files, one worker/thread each pinned to
# CPU 0, wrk pinned to CPU 1. Prints req/s and transfer/s for 1 KiB, 64 KiB and 1 MiB files at
# 64 and 256 connections, medians of 3, with the ratio to nginx.
#
# The example runs twice per backend: with its default send path (sendfile from the page cache
# for bodies from 64 KiB) and with every body copied through a buffer (`-copy` rows), so each
# size class shows which path is faster.
#
#   bash benches/http.sh            # 10 s runs
#   DURATION=3 ROUNDS=1 bash benches/http.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-"64 256"}

need() { command -v "$1" >/dev/null 2>&1; }
if ! need nginx || ! need wrk; then
  echo "installing nginx and wrk from Debian"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk >/dev/null
fi

cargo build --release --example file_server >/dev/null 2>&1 || cargo build --release --example file_server
SERVER=target/release/examples/file_server

WORK=$(mktemp -d /tmp/trueio-http.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
mkdir -p "$WORK/root" "$WORK/nginx"
head -c 1024 /dev/urandom >"$WORK/root/1k.bin"
head -c 65536 /dev/urandom >"$WORK/root/64k.bin"
head -c 1048576 /dev/urandom >"$WORK/root/1m.bin"

cat >"$WORK/nginx/nginx.conf" <<CONF
worker_processes 1;
user root;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  client_body_temp_path $WORK/nginx;
  proxy_temp_path $WORK/nginx;
  fastcgi_temp_path $WORK/nginx;
  uwsgi_temp_path $WORK/nginx;
  scgi_temp_path $WORK/nginx;
  server { listen 127.0.0.1:18080; root $WORK/root; }
}
CONF

start_nginx() { taskset -c 0 nginx -c "$WORK/nginx/nginx.conf" & }
# "uring", "epoll": the default send path (sendfile from the page cache from 64 KiB on);
# "uring-copy", "epoll-copy": every body read into a buffer and sent (--sendfile-min off).
start_trueio() {
  local backend=${1%-copy} extra=()
  [ "$1" != "$backend" ] && extra=(--sendfile-min off)
  taskset -c 0 "$SERVER" --root "$WORK/root" --addr 127.0.0.1:18080 --threads 1 --backend "$backend" \
    "${extra[@]}" ${TRUEIO_ARGS:-} >/dev/null 2>&1 &
}
wait_up() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/18080) 2>/dev/null && return 0; sleep 0.05; done; echo "server did not start" >&2; return 1; }
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; sleep 0.3; }

# One wrk run: prints "req/s MB/s".
run_wrk() {
  local file=$1 conns=$2
  # Re-read the files first: the VM pages out idle page cache.
  cat "$WORK"/root/* >/dev/null
  taskset -c 1 wrk -t1 -c"$conns" -d"${DURATION}s" "http://127.0.0.1:18080/$file" 2>/dev/null |
    awk '/Non-2xx/ {print "non-2xx responses: the run is invalid" > "/dev/stderr"; bad=1}
         /Requests\/sec/ {r=$2} /Transfer\/sec/ {t=$2; if (t ~ /GB/) {sub("GB","",t); t*=1024} else if (t ~ /MB/) {sub("MB","",t)} else if (t ~ /KB/) {sub("KB","",t); t/=1024}} END {if (bad) r=0; printf "%.0f %.1f\n", r, t}'
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

SERVERS=${SERVERS:-"nginx uring uring-copy epoll epoll-copy"}
printf "%-10s %-7s %5s %12s %10s %10s\n" server file conns "req/s" "MB/s" "vs nginx"
for file in 1k.bin 64k.bin 1m.bin; do
  for conns in $CONNS; do
    declare -A RPS=() MBS=()
    for s in $SERVERS; do
      rs=(); ms=()
      for _ in $(seq "$ROUNDS"); do
        if [ "$s" = nginx ]; then start_nginx; else start_trueio "$s"; fi
        pid=$!
        wait_up
        read -r r m < <(run_wrk "$file" "$conns")
        stop "$pid"
        rs+=("$r"); ms+=("$m")
      done
      RPS[$s]=$(printf "%s\n" "${rs[@]}" | median)
      MBS[$s]=$(printf "%s\n" "${ms[@]}" | median)
    done
    for s in $SERVERS; do
      ratio=$(awk -v a="${RPS[$s]}" -v b="${RPS[nginx]}" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }')
      printf "%-10s %-7s %5s %12s %10s %10s\n" "$s" "$file" "$conns" "${RPS[$s]}" "${MBS[$s]}" "$ratio"
    done
  done
done
