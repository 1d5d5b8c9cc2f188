#!/usr/bin/env python3
"""Helpers of benches/soak.sh (standard library only).

  soak.py clients --http PORT --echo PORT --seconds N --stats FILE
      Hostile clients on 127.0.0.1 until N seconds have passed: HTTP clients that abort
      mid-transfer (close or reset after a random part of a large body, or before the request
      is complete) and echo clients that churn connections (connect, send, read back part,
      close or reset). Echoed bytes are checked. Writes counters to FILE as JSON.

  soak.py report SAMPLES.csv --warmup S --window S --fd-tol N --rss-tol-pct P --rss-tol-kb K
      Prints the curve of the samples (time, then fds and RSS of each server) and checks that
      neither grows between the first and the last window; exit status 1 if one does.
"""

import argparse
import csv
import json
import os
import random
import socket
import statistics
import struct
import sys
import threading
import time

HOST = "127.0.0.1"


def reset_close(s):
    """Close with a RST (SO_LINGER 0) instead of a FIN."""
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    s.close()


def http_aborter(port, deadline, stats, lock, seed):
    rnd = random.Random(seed)
    paths = ["/16m.bin", "/16m.bin", "/1m.bin", "/64k.bin", "/missing", "/sub"]
    while time.monotonic() < deadline:
        try:
            s = socket.create_connection((HOST, port), timeout=5)
        except OSError:
            with lock:
                stats["http_connect_errors"] += 1
            time.sleep(0.05)
            continue
        kind = "aborted"
        try:
            r = rnd.random()
            if r < 0.15:
                # Half a request, then gone.
                s.sendall(b"GET /1m.bin HTTP/1.1\r\nHost: soak\r\n")
                kind = "half_request"
            else:
                path = rnd.choice(paths)
                extra = "Range: bytes=1000-\r\n" if rnd.random() < 0.2 else ""
                # Connection: close, so that a body read to its end ends with the connection.
                s.sendall(
                    f"GET {path} HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n{extra}\r\n".encode()
                )
                want = rnd.randint(0, 4 << 20)
                got = 0
                while got < want:
                    d = s.recv(256 * 1024)
                    if not d:
                        kind = "complete"
                        break
                    got += len(d)
                with lock:
                    stats["http_bytes"] += got
        except OSError:
            kind = "error"
        if rnd.random() < 0.5:
            reset_close(s)
        else:
            s.close()
        with lock:
            stats["http_" + kind] += 1


def echo_churner(port, deadline, stats, lock, seed):
    rnd = random.Random(seed)
    while time.monotonic() < deadline:
        try:
            s = socket.create_connection((HOST, port), timeout=5)
        except OSError:
            with lock:
                stats["echo_connect_errors"] += 1
            time.sleep(0.05)
            continue
        try:
            n = rnd.randint(1, 48 * 1024)
            data = rnd.randbytes(n) if hasattr(rnd, "randbytes") else os.urandom(n)
            s.sendall(data)
            want = rnd.randint(0, n)
            got = bytearray()
            while len(got) < want:
                d = s.recv(want - len(got))
                if not d:
                    break
                got += d
            with lock:
                if bytes(got) != data[: len(got)]:
                    stats["echo_corrupt"] += 1
                stats["echo_bytes"] += len(got)
                stats["echo_conns"] += 1
        except OSError:
            with lock:
                stats["echo_errors"] += 1
        if rnd.random() < 0.5:
            reset_close(s)
        else:
            s.close()


def clients(args):
    deadline = time.monotonic() + args.seconds
    stats = {
        k: 0
        for k in [
            "http_aborted", "http_complete", "http_half_request", "http_error",
            "http_connect_errors", "http_bytes", "echo_conns", "echo_bytes", "echo_errors",
            "echo_corrupt", "echo_connect_errors",
        ]
    }
    lock = threading.Lock()
    threads = []
    for i in range(args.http_clients):
        threads.append(threading.Thread(target=http_aborter, args=(args.http, deadline, stats, lock, i)))
    for i in range(args.echo_clients):
        threads.append(threading.Thread(target=echo_churner, args=(args.echo, deadline, stats, lock, 1000 + i)))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with open(args.stats, "w") as f:
        json.dump(stats, f)


SPARK = " ▁▂▃▄▅▆▇█"


def spark(values, width):
    """`values` squeezed into `width` buckets (each its maximum), as block characters scaled
    from the series' minimum to its maximum."""
    if not values:
        return ""
    step = max(1, -(-len(values) // width))
    buckets = [max(values[i : i + step]) for i in range(0, len(values), step)]
    lo, hi = min(values), max(values)
    if hi == lo:
        return SPARK[4] * len(buckets)
    return "".join(SPARK[1 + int((v - lo) * 7 / (hi - lo))] for v in buckets)


def report(args):
    with open(args.samples) as f:
        rows = [r for r in csv.DictReader(f)]
    if not rows:
        print("soak: no samples", file=sys.stderr)
        return 1
    servers = [c[: -len("_fds")] for c in rows[0] if c.endswith("_fds")]
    t = [float(r["t"]) for r in rows]
    series = {}
    for s in servers:
        series[s] = (
            [int(r[s + "_fds"]) for r in rows],
            [int(r[s + "_rss_kb"]) for r in rows],
        )
    # The curve: one line per bucket, at most ~30 lines.
    step = max(1, -(-len(rows) // 30))
    head = "   t(s) " + "".join(f"| {s + ' fds':>14} {s + ' RSS MiB':>16} " for s in servers)
    print(head)
    for i in range(0, len(rows), step):
        line = f"{t[i]:7.0f} "
        for s in servers:
            fds, rss = series[s]
            chunk_f, chunk_r = fds[i : i + step], rss[i : i + step]
            line += f"| {min(chunk_f):6d}..{max(chunk_f):<6d} {min(chunk_r) / 1024:7.1f}..{max(chunk_r) / 1024:<7.1f} "
        print(line)
    for s in servers:
        fds, rss = series[s]
        print(f"{s:>12} fds {spark(fds, 60)}  {min(fds)}..{max(fds)}")
        print(f"{s:>12} RSS {spark(rss, 60)}  {min(rss) / 1024:.1f}..{max(rss) / 1024:.1f} MiB")

    # First and last window of the loaded part, after the warm-up.
    loaded = [i for i, r in enumerate(rows) if r["phase"] == "load" and t[i] >= args.warmup]
    if len(loaded) < 4:
        print("soak: too few samples under load to compare windows", file=sys.stderr)
        return 1
    t0, t1 = t[loaded[0]], t[loaded[-1]]
    window = min(args.window, (t1 - t0) / 2)
    first = [i for i in loaded if t[i] < t0 + window]
    last = [i for i in loaded if t[i] > t1 - window]
    ok = True
    print(
        f"windows: first {t[first[0]]:.0f}-{t[first[-1]]:.0f} s, last {t[last[0]]:.0f}-{t[last[-1]]:.0f} s "
        f"(medians); tolerance: fds +{args.fd_tol}, RSS +max({args.rss_tol_pct}%, {args.rss_tol_kb} KiB)"
    )
    for s in servers:
        fds, rss = series[s]
        f0 = statistics.median(fds[i] for i in first)
        f1 = statistics.median(fds[i] for i in last)
        r0 = statistics.median(rss[i] for i in first)
        r1 = statistics.median(rss[i] for i in last)
        rss_allow = max(r0 * args.rss_tol_pct / 100, args.rss_tol_kb)
        fd_ok = f1 <= f0 + args.fd_tol
        rss_ok = r1 <= r0 + rss_allow
        ok &= fd_ok and rss_ok
        print(
            f"{s:>12}: fds {f0:.0f} -> {f1:.0f} {'ok' if fd_ok else 'GROWS'}; "
            f"RSS {r0 / 1024:.1f} -> {r1 / 1024:.1f} MiB {'ok' if rss_ok else 'GROWS'}"
        )
    return 0 if ok else 1


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("clients")
    c.add_argument("--http", type=int, required=True)
    c.add_argument("--echo", type=int, required=True)
    c.add_argument("--seconds", type=float, required=True)
    c.add_argument("--http-clients", type=int, default=6)
    c.add_argument("--echo-clients", type=int, default=6)
    c.add_argument("--stats", required=True)
    r = sub.add_parser("report")
    r.add_argument("samples")
    r.add_argument("--warmup", type=float, default=10)
    r.add_argument("--window", type=float, default=60)
    r.add_argument("--fd-tol", type=int, default=16)
    r.add_argument("--rss-tol-pct", type=float, default=10)
    r.add_argument("--rss-tol-kb", type=int, default=8192)
    args = p.parse_args()
    if args.cmd == "clients":
        clients(args)
        return 0
    return report(args)


if __name__ == "__main__":
    sys.exit(main())
