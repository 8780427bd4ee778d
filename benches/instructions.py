#!/usr/bin/env python3
"""User-space instructions per keep-alive request through one gatehouse worker, counted by
`valgrind --tool=callgrind` (the same for the same binary and input, whatever else the machine does),
for the public route, a repeated RS256 token (a verified-token cache hit), the same token on a route
with three rules (`allow_if`/`deny_if`), whose difference is the rules' own cost, and the same kind of
token DPoP-bound with a fresh proof on every request (the proof's check beside the cache hit). Give
several binaries to compare builds: `python3 benches/instructions.py BINARY [BINARY ...] [--requests 2000]`; `--floor` also
counts a plain GET through Pingora's passthrough and through nginx (one process). The counters
are zeroed after a warm-up, so start-up is not counted; background threads (the log writer, health
checks) add a little, the same for every build.

`--telemetry` counts instead the public route and the cached token without `[telemetry]` and with
it at `sample_ratio` 0, 0.01 and 1 (no incoming `traceparent`), the spans going to a collector that
takes every batch; the exporter's thread (protobuf, POSTs) is counted too.
"""

import argparse
import http.client
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as lib  # noqa: E402  (shared helpers: processes, ports, configurations)
import dpop_bench  # noqa: E402  (the DPoP route and its proofs)


def get(conn, path, headers):
    conn.request("GET", path, headers=headers)
    r = conn.getresponse()
    r.read()
    return r.status


def count(binary, scenarios, requests, extra=""):
    """Instructions per request for each (name, path, headers) under one callgrind'ed gateway;
    `headers(port, n)` gives the headers of n requests; `extra` is appended to its configuration."""
    ports = (lib.free_port(), lib.free_port(), lib.free_port())
    argv = lib.gatehouse_conf(os.path.basename(binary) + str(ports[0]), ports,
                              routes_extra=dpop_bench.ROUTE + extra)
    argv[0] = binary
    return count_argv(argv, ports[0], scenarios, requests)


def floors(requests):
    """The plain GET every proxy answers, through Pingora's passthrough and through nginx (one
    process, no master), each under callgrind: what a proxy costs before any work of its own."""
    plain = [("plain GET, no authentication", "/x", lambda _port, n: [{}] * n)]
    port = lib.free_port()
    pingora = [os.path.join(lib.RELEASE, "examples", "passthrough"), f"127.0.0.1:{port}", f"127.0.0.1:{lib.UP}", "1"]
    rows = {"Pingora passthrough": count_argv(pingora, port, plain, requests)}
    port = lib.free_port()
    nginx = lib.nginx_conf("nginx-floor", f"""
  upstream up {{ server 127.0.0.1:{lib.UP}; keepalive 64; }}
  server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; }} }}
""")
    conf = nginx[-1]
    with open(conf) as f:
        text = f.read()
    with open(conf, "w") as f:
        f.write("master_process off;\n" + text)
    rows["nginx passthrough"] = count_argv(nginx, port, plain, requests)
    print(f"\nUser-space instructions per request ({requests} keep-alive requests, one worker, plain GET):")
    print("| proxy | instructions |")
    print("| --- | ---: |")
    for name, r in rows.items():
        print(f"| {name} | {r[plain[0][0]]:,.0f} |")


def count_argv(argv, port, scenarios, requests):
    """`count` for any server started by `argv` and listening on `port`."""
    ports = (port,)
    out = os.path.join(lib.WORK, f"callgrind.{ports[0]}")
    vg = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p", "--dump-instr=no"]
    p = subprocess.Popen(vg + argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         env=dict(os.environ, BENCH_HS_SECRET=lib.HS_SECRET), start_new_session=True)
    results = {}
    try:
        lib.wait_port(ports[0], timeout=120)
        conn = http.client.HTTPConnection("127.0.0.1", ports[0], timeout=60)
        for name, path, headers in scenarios:
            sent = headers(ports[0], 200 + requests)
            for h in sent[:200]:  # warm-up: connection, caches, the token's verification
                assert get(conn, path, h) == 200, f"{name}: not 200"
            subprocess.run(["callgrind_control", "--zero", str(p.pid)], check=True, capture_output=True)
            for h in sent[200:]:
                assert get(conn, path, h) == 200, f"{name}: not 200"
            dumped = subprocess.run(["callgrind_control", "--dump", str(p.pid)], check=True,
                                    capture_output=True, text=True)
            time.sleep(0.5)
            total = 0
            for f in sorted(os.listdir(lib.WORK)):
                if f.startswith(os.path.basename(out)) and not f.endswith(".done"):
                    text = open(os.path.join(lib.WORK, f)).read()
                    m = re.search(r"^summary: (\d+)", text, re.M) or re.search(r"^totals: (\d+)", text, re.M)
                    total += int(m.group(1)) if m else 0
                    os.rename(os.path.join(lib.WORK, f), os.path.join(lib.WORK, f + ".done"))
            results[name] = total / requests
            del dumped
    finally:
        os.killpg(p.pid, 9)
        p.wait()
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binaries", nargs="+")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--telemetry", action="store_true", help="the cost of tracing, by sample_ratio")
    ap.add_argument("--floor", action="store_true",
                    help="also count a plain GET through Pingora's passthrough and through nginx")
    args = ap.parse_args()
    lib.WORK = tempfile.mkdtemp(prefix="gatehouse-instructions-")
    lib.build()
    subprocess.run([os.path.join(lib.RELEASE, "examples", "bench_tokens"), os.path.join(lib.WORK, "keys"),
                    "1", "1", lib.HS_SECRET], check=True)
    token = open(os.path.join(lib.WORK, "keys/token.txt")).read().strip()
    lib.UP = lib.free_port()
    up = lib.Proc("upstream", lib.nginx_conf("upstream", f"""
  server {{ listen 127.0.0.1:{lib.UP}; location / {{ return 200 "ok"; }} }}
"""), lib.UP, 1)
    try:
        bearer = {"Authorization": f"Bearer {token}"}

        def proofs(port, n):
            bound, file, _ = dpop_bench.make(lib.WORK, port, n)
            return [{"Authorization": f"DPoP {bound}", "DPoP": proof} for proof in open(file).read().split()]

        scenarios = [("public route", "/public/x", lambda _port, n: [{}] * n),
                     ("same RS256 token", "/auth/x", lambda _port, n: [bearer] * n),
                     ("same RS256 token, three rules", "/rules/x", lambda _port, n: [bearer] * n),
                     ("same token, DPoP", dpop_bench.PATH, proofs)]
        if args.telemetry:
            return telemetry(args.binaries[0], scenarios[:2], args.requests)
        if args.floor:
            floors(args.requests)
        rows = {b: count(b, scenarios, args.requests) for b in args.binaries}
    finally:
        up.stop()
    print(f"\nUser-space instructions per request ({args.requests} keep-alive requests, one worker):")
    print("| request | " + " | ".join(args.binaries) + " |")
    print("| --- |" + " ---: |" * len(args.binaries))
    for name, _, _ in scenarios:
        print(f"| {name} | " + " | ".join(f"{rows[b][name]:,.0f}" for b in args.binaries) + " |")
    rules = [rows[b]["same RS256 token, three rules"] - rows[b]["same RS256 token"] for b in args.binaries]
    print("| three rules' own cost | " + " | ".join(f"{r:+,.0f}" for r in rules) + " |")


def telemetry(binary, scenarios, requests):
    """The same requests without [telemetry] and at three sample ratios; the upstream's nginx is
    the collector too (it answers every POST to /v1/traces with 200)."""
    ratios = ["off", "0", "0.01", "1"]
    rows = {}
    for r in ratios:
        extra = "" if r == "off" else (f'\n[telemetry]\notlp_endpoint = "http://127.0.0.1:{lib.UP}"\n'
                                       f"sample_ratio = {r}\n")
        rows[r] = count(binary, scenarios, requests, extra)
    print(f"\nUser-space instructions per request ({requests} keep-alive requests, one worker), by tracing:")
    print("| request | " + " | ".join("no [telemetry]" if r == "off" else f"sample_ratio {r}" for r in ratios) + " |")
    print("| --- |" + " ---: |" * len(ratios))
    for name, _, _ in scenarios:
        base = rows["off"][name]
        cells = [f"{base:,.0f}"] + [f"{rows[r][name]:,.0f} ({rows[r][name] - base:+,.0f})" for r in ratios[1:]]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
