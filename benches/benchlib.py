"""Helpers shared by the benchmark scripts: processes pinned to CPUs, ports, CPU and memory accounting,
nginx and gatehouse configurations, wrk runs."""

import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

# Set by the script that runs: the scratch directory and the shared nginx upstream's port.
WORK = None
UP = None

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


def cpu_split(pid):
    """(user, system) CPU ticks of pid and its descendants."""
    user = system = 0
    for p in descendants(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            user += int(fields[11])
            system += int(fields[12])
        except OSError:
            pass
    return user, system


def cpu_ticks(pid):
    return sum(cpu_split(pid))


def open_fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


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


def sbin(name):
    return shutil.which(name) or f"/usr/sbin/{name}"


def build():
    log("building release binaries")
    # passthrough, bench_tokens and grpc_health are Cargo examples whose sources are in benches/tools/.
    # Every benchmark builds this same set: another set would unify the dependencies' features
    # differently and build the gateway again.
    subprocess.run(["cargo", "build", "--locked", "--release", "--bin", "gatehouse", "--example", "passthrough",
                    "--example", "bench_tokens", "--example", "grpc_health"], cwd=ROOT, check=True)


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


# The /auth route with three typical rules (README "Route rules"): a scope, a claim read from the
# token, and the method and path. Its cost is the difference from /auth in the same run.
RULES_ROUTE = """
[[routes]]
path_prefix = "/rules"
upstream = "up"
issuers = ["bench"]
scopes_all = ["read"]
allow_if = ["'read' in scopes", "claims.client_id == 'bench-client'"]
deny_if = "request.method == 'DELETE' || glob(request.path, '/rules/admin/*')"
"""


def ensure(tools, packages=None):
    """Installs the Debian packages of the commands in `tools` that are missing (apt-get, once)."""
    need = [t for t in tools if not shutil.which(t) and not os.path.exists(f"/usr/sbin/{t}")]
    if need:
        pkgs = packages or {}
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        log(f"installing {need}")
        subprocess.run(sudo + ["apt-get", "update", "-qq"], check=True)
        subprocess.run(sudo + ["apt-get", "install", "-y", "-qq"] + [pkgs.get(n, n) for n in need], check=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))


def gatehouse_conf(name, ports, routes_extra="", cache=100000, extra_routes=0, threads=1, server_extra=""):
    d = os.path.join(WORK, name)
    os.makedirs(d, exist_ok=True)
    plain, tls, admin = ports
    routes = "".join(f'\n[[routes]]\npath_prefix = "/r{i}"\nupstream = "up"\nauth = "public"\n' for i in range(extra_routes))
    text = f"""
[server]
listen_tls = ["127.0.0.1:{tls}"]
listen_plain = ["127.0.0.1:{plain}"]
admin_listen = "127.0.0.1:{admin}"
threads = {threads}
{server_extra}
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
{RULES_ROUTE}{routes_extra}{routes}
"""
    path = os.path.join(d, "gateway.toml")
    with open(path, "w") as f:
        f.write(text)
    return [os.path.join(RELEASE, "gatehouse"), "run", "--config", path]


def wrk(port, path, duration, conns, token=None, script=None, scheme="http", env=None, cpus="1", threads=1,
        extra=()):
    argv = ["taskset", "-c", cpus, "wrk", f"-t{threads}", *extra, f"-c{conns}", f"-d{duration}s", "--latency", "--timeout", "5s"]
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


# Each request sends the next of COUNT tokens that start after line FIRST of TOKENS, each token once; if the
# slice runs out, the last token repeats (and the gateway's cache-hit counter shows it).
ONCE_LUA = """
local tokens = {}
local first, count = tonumber(os.getenv("FIRST")), tonumber(os.getenv("COUNT"))
local n = 0
for line in io.lines(os.getenv("TOKENS")) do
  n = n + 1
  if n > first + count then break end
  if n > first then tokens[#tokens + 1] = line end
end
local i = 0
request = function()
  if i < #tokens then i = i + 1 end
  return wrk.format("GET", os.getenv("BENCH_PATH"), {["Authorization"] = "Bearer " .. tokens[i]})
end
"""

# Each request sends the next token of TOKENS, from line START (0 unless given) on, wrapping around.
DISTINCT_LUA = """
local tokens = {}
for line in io.lines(os.getenv("TOKENS")) do tokens[#tokens + 1] = line end
local i = tonumber(os.getenv("START") or "0") % #tokens
request = function()
  i = i + 1
  if i > #tokens then i = 1 end
  return wrk.format("GET", os.getenv("BENCH_PATH"), {["Authorization"] = "Bearer " .. tokens[i]})
end
"""


def check(name, base, token, forged, path="/"):
    got = (http("GET", base + path, token), http("GET", base + path), http("GET", base + path, forged))
    ok = got == (200, 401, 401)
    log(f"correctness {name:<10} good/missing/forged -> {got} {'ok' if ok else 'FAILED'}")
    return ok


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"

