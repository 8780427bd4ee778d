#!/usr/bin/env python3
"""The gRPC unary scenario of `make bench`: grpc.health.v1.Health/Check called directly on a tonic
server, and through gatehouse (h2c both sides, an HS256 token verified on every call, cached after the
first), with h2load. Reports calls per second and CPU microseconds per call of the gateway's process and
of the upstream's, one worker each, pinned like bench.py's proxies.

Usage: python3 benches/grpc_bench.py [--calls 200000] [--connections 16] [--streams 8]
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bench  # noqa: E402  (shared helpers: processes, ports, CPU accounting)

SECRET = "grpc-bench-secret-that-is-long-enough-0123456789"
PATH = "/grpc.health.v1.Health/Check"


def token():
    b = lambda d: base64.urlsafe_b64encode(d).rstrip(b"=").decode()
    h = b(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    c = b(json.dumps({"iss": "https://grpc-bench.local", "aud": "bench", "sub": "bench",
                      "exp": int(time.time()) + 3600}).encode())
    s = b(hmac.new(SECRET.encode(), f"{h}.{c}".encode(), hashlib.sha256).digest())
    return f"{h}.{c}.{s}"


def h2load(port, calls, conns, streams, body, tok=None):
    argv = ["taskset", "-c", "1", "h2load", "-n", str(calls), "-c", str(conns), "-m", str(streams),
            "-d", body, "-H", "content-type: application/grpc", "-H", "te: trailers"]
    if tok:
        argv += ["-H", f"authorization: Bearer {tok}"]
    out = subprocess.run(argv + [f"http://127.0.0.1:{port}{PATH}"], capture_output=True, text=True).stdout
    ok = int(re.search(r"(\d+) 2xx", out).group(1))
    rps = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1))
    return ok, rps


def status_of(port, tok):
    """The grpc-status of one call, from its headers or trailers (curl shows both)."""
    argv = ["curl", "-s", "-i", "--http2-prior-knowledge", "-X", "POST", "--data-binary", "@-",
            "-H", "content-type: application/grpc", "-H", "te: trailers", f"http://127.0.0.1:{port}{PATH}"]
    if tok:
        argv[1:1] = ["-H", f"authorization: Bearer {tok}"]
    out = subprocess.run(argv, input=b"\0\0\0\0\0", capture_output=True).stdout.decode(errors="replace")
    m = re.search(r"grpc-status: (\d+)", out)
    return m.group(1) if m else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=200000)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--streams", type=int, default=8)
    args = ap.parse_args()
    if not shutil.which("h2load"):
        sys.exit("h2load is missing: `make bench` installs it (Debian's nghttp2-client)")
    bench.build()
    bench.WORK = tempfile.mkdtemp(prefix="gatehouse-grpc-bench-")
    body = os.path.join(bench.WORK, "check.bin")
    with open(body, "wb") as f:
        f.write(b"\0\0\0\0\0")  # an empty HealthCheckRequest, framed
    up_port, gw_port, admin = bench.free_port(), bench.free_port(), bench.free_port()
    up = bench.Proc("grpc-upstream", [os.path.join(bench.RELEASE, "examples", "grpc_health"), str(up_port)],
                    up_port, 1)
    conf = os.path.join(bench.WORK, "gateway.toml")
    with open(conf, "w") as f:
        f.write(f"""
[server]
listen_tls = []
listen_plain = ["127.0.0.1:{gw_port}"]
admin_listen = "127.0.0.1:{admin}"
threads = 1
h2c = true

[[issuers]]
name = "bench"
issuer = "https://grpc-bench.local"
secret_env = "GRPC_BENCH_SECRET"
audiences = ["bench"]
algorithms = ["HS256"]

[[upstreams]]
name = "grpc"
peers = ["127.0.0.1:{up_port}"]
protocol = "h2c"

[[routes]]
path_prefix = "/grpc.health.v1.Health"
upstream = "grpc"
""")
    gw = bench.Proc("gatehouse-grpc", [os.path.join(bench.RELEASE, "gatehouse"), "run", "--config", conf],
                    gw_port, 0, env={"GRPC_BENCH_SECRET": SECRET})
    tok = token()
    try:
        # correctness first: a good token passes, none is UNAUTHENTICATED, as gRPC statuses
        checks = {"direct": status_of(up_port, None), "token": status_of(gw_port, tok),
                  "no token": status_of(gw_port, None)}
        if checks != {"direct": "0", "token": "0", "no token": "16"}:
            sys.exit(f"gRPC answers are wrong: {checks}")
        h2load(gw_port, 2000, args.connections, args.streams, body, tok)  # warm the caches
        rows = []
        for name, port, t in (("direct call", up_port, None), ("through gatehouse", gw_port, tok)):
            before = (bench.cpu_ticks(gw.p.pid), bench.cpu_ticks(up.p.pid))
            ok, rps = h2load(port, args.calls, args.connections, args.streams, body, t)
            gw_us = (bench.cpu_ticks(gw.p.pid) - before[0]) / bench.CLK_TCK * 1e6 / max(ok, 1)
            up_us = (bench.cpu_ticks(up.p.pid) - before[1]) / bench.CLK_TCK * 1e6 / max(ok, 1)
            rows.append((name, ok, rps, gw_us if port == gw_port else None, up_us))
        print(f"\ngRPC unary (Health/Check), {args.calls} calls, h2load -c{args.connections} -m{args.streams}, h2c:")
        print("| scenario | calls OK | calls/s | gateway CPU µs/call | upstream CPU µs/call |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for name, ok, rps, g, u in rows:
            print(f"| {name} | {ok} | {rps:.0f} | {'-' if g is None else f'{g:.1f}'} | {u:.1f} |")
    finally:
        gw.stop()
        up.stop()


if __name__ == "__main__":
    main()
