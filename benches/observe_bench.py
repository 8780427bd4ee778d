#!/usr/bin/env python3
"""What tracing and the audit stream cost per request: the same cached-token request through gateways
that differ only in `[telemetry]` (off, `sample_ratio` 0, 0.01 and 1, spans POSTed to a collector that
takes every batch), `[audit]` (a file sink, `allow_sample_ratio` 0 and 1), and the token service without
and with `[admin] console`. Every gateway has one
worker on CPU 0; wrk and the upstream (which is also the collector) share CPU 1. Rounds alternate the
gateways, and each variant's cost is the median over rounds of its difference from the plain gateway
of the same round, so a machine that slows down between rounds moves both sides alike.

Run by bench.py, or alone: python3 benches/observe_bench.py [--rounds 5] [--duration 5]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as lib  # noqa: E402

# the gateway's own token service with one user, without and with the operators' console: the console
# keeps the latest audit events (refusals) and reads the metrics every 5 s, and should cost the
# proxied request nothing
TOKEN_SERVICE = """
[token_service]
issuer = "https://console.bench.local"
audience = ["api"]
signing_keys = ["{dir}/../keys/rs256.key"]

[store]
backend = "memory"

[[users]]
username = "ops"
password_hash = "$2b$04$O2BS3M8z8bsIiSYgXwoHP.XrixdAp8c3tq8hBrBs0yfOQM5wqbQ8G"
roles = ["gatehouse-admin"]
"""

# (name, the configuration's extra sections); {up} is the collector, {dir} the gateway's own folder
VARIANTS = [
    ("plain", ""),
    ("tracing, sample_ratio 0", '\n[telemetry]\notlp_endpoint = "http://127.0.0.1:{up}"\nsample_ratio = 0.0\n'),
    ("tracing, sample_ratio 0.01", '\n[telemetry]\notlp_endpoint = "http://127.0.0.1:{up}"\nsample_ratio = 0.01\n'),
    ("tracing, sample_ratio 1", '\n[telemetry]\notlp_endpoint = "http://127.0.0.1:{up}"\nsample_ratio = 1.0\n'),
    ("audit file, allow_sample_ratio 0", '\n[audit]\nfile = "{dir}/audit.jsonl"\nallow_sample_ratio = 0.0\n'),
    ("audit file, allow_sample_ratio 1", '\n[audit]\nfile = "{dir}/audit.jsonl"\nallow_sample_ratio = 1.0\n'),
    ("token service", TOKEN_SERVICE),
    ("token service and console", TOKEN_SERVICE + '\n[admin]\nconsole = true\n'),
]
# targets from the issue that asked for tracing: sampling off, and every request traced
TARGETS = {"tracing, sample_ratio 0": 0.5, "tracing, sample_ratio 1": 5.0}


def run(work, up_port, token, rounds, duration, conns):
    """{variant: {"cpu_us", "rps", "extra_us"}}: medians per variant; extra_us against "plain"."""
    procs = {}
    try:
        for name, extra in VARIANTS:
            ports = (lib.free_port(), lib.free_port(), lib.free_port())
            label = "gatehouse-" + "".join(c if c.isalnum() else "-" for c in name)
            d = os.path.join(work, label)
            argv = lib.gatehouse_conf(label, ports, routes_extra=extra.format(up=up_port, dir=d))
            procs[name] = (lib.Proc(label, argv, ports[0], 0, env={"BENCH_HS_SECRET": lib.HS_SECRET}), ports[0])
        got = {name: [] for name, _ in VARIANTS}
        for r in range(rounds):
            for name, _ in VARIANTS:
                proc, port = procs[name]
                before = lib.cpu_ticks(proc.p.pid)
                rps, _, errors, total = lib.wrk(port, "/auth/x", duration, conns, token=token)
                us = (lib.cpu_ticks(proc.p.pid) - before) / lib.CLK_TCK * 1e6 / max(total, 1)
                if errors:
                    raise RuntimeError(f"{name}: {errors} requests were not answered 2xx")
                got[name].append((rps, us))
                lib.log(f"round {r + 1}: {name:<34} {rps:8.0f} req/s  {us:6.1f} µs CPU/req")
        plain = [u for _, u in got["plain"]]
        return {name: {"rps": statistics.median(x for x, _ in v), "cpu_us": statistics.median(u for _, u in v),
                       "extra_us": statistics.median(u - p for (_, u), p in zip(v, plain))}
                for name, v in got.items()}
    finally:
        for proc, _ in procs.values():
            proc.stop()


def render(results):
    """The report's table: CPU per request and what each variant adds, with the targets."""
    lines = ["| tracing and audit, same RS256 token | req/s | CPU µs/req | over plain (median of rounds) | target |",
             "| --- | ---: | ---: | ---: | --- |"]
    for name, row in results.items():
        goal = TARGETS.get(name)
        judged = "" if goal is None else f"< {goal} µs: {'met' if row['extra_us'] < goal else 'NOT met'}"
        extra = "" if name == "plain" else f"{row['extra_us']:+.2f} µs"
        lines.append(f"| {name} | {row['rps']:.0f} | {row['cpu_us']:.1f} | {extra} | {judged} |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--connections", type=int, default=64)
    args = ap.parse_args()
    lib.WORK = tempfile.mkdtemp(prefix="gatehouse-observe-")
    up = None
    try:
        # run alone on a fresh machine, it installs what it drives (bench.py does the same first)
        lib.ensure(("nginx", "wrk"))
        lib.build()
        subprocess.run([os.path.join(lib.RELEASE, "examples", "bench_tokens"), os.path.join(lib.WORK, "keys"),
                        "1", "1", lib.HS_SECRET], check=True)
        token = open(os.path.join(lib.WORK, "keys/token.txt")).read().strip()
        lib.UP = lib.free_port()
        # the upstream answers every request, the collector's POSTs among them, with 200
        up = lib.Proc("upstream", lib.nginx_conf("upstream", f"""
  server {{ listen 127.0.0.1:{lib.UP} reuseport backlog=4096; location / {{ return 200 "ok"; }} }}
"""), lib.UP, 1)
        print(render(run(lib.WORK, lib.UP, token, args.rounds, args.duration, args.connections)))
    finally:
        if up:
            up.stop()
        shutil.rmtree(lib.WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
