#!/usr/bin/env python3
"""How long a revocation takes to reach another gateway: two release gateways on one redis-server,
a token revoked on A (the moment A answers) until B refuses it, measured by polling B every
millisecond. Prints p50, p99 and max over many revocations; the target is p99 < 100 ms on loopback.

Usage: python3 benches/propagation.py [--count 200]
"""

import argparse
import base64
import hashlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
BIN = os.path.join(TARGET, "release", "gatehouse")
SECRET = "bench-propagation-secret-0123456789abcdef"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(url, timeout=60.0):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} never answered 200")


def request(url, data=None, token=None, basic=None):
    req = urllib.request.Request(url, data=urllib.parse.urlencode(data).encode() if data else None)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if basic:
        req.add_header("Authorization", "Basic " + base64.b64encode(basic.encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def config(plain, admin, redis_port, sock, threads=1, store=None):
    """A gateway with a token service, one client and a whoami route; `store` replaces the Redis one."""
    digest = hashlib.sha256(SECRET.encode()).hexdigest()
    store = store or f'[store]\nbackend = "redis"\nurl = "redis://127.0.0.1:{redis_port}/0"\n'
    return f"""
[server]
listen_tls = []
listen_plain = ["127.0.0.1:{plain}"]
admin_listen = "127.0.0.1:{admin}"
public_url = "http://127.0.0.1:{plain}"
threads = {threads}
upgrade_sock = "{sock}"

[token_service]
issuer = "https://bench.gatehouse.local"
audience = ["api"]
signing_keys = ["keys/signing.pem"]

{store}
[rate_limit]
token_endpoint = "100000/s"

[[clients]]
client_id = "svc"
secret_hash = "sha256:{digest}"
scopes = ["api"]

[[upstreams]]
name = "whoami"
kind = "whoami"

[[routes]]
path_prefix = "/api"
upstream = "whoami"
issuers = ["self"]
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=200)
    args = ap.parse_args()
    if not shutil.which("redis-server"):
        sys.exit("redis-server is needed (apt-get install redis-server)")
    if not os.path.exists(BIN):
        subprocess.run(["cargo", "build", "--release", "--bin", "gatehouse"], cwd=ROOT, check=True)
    work = tempfile.mkdtemp()
    procs = []
    try:
        redis_port = free_port()
        procs.append(subprocess.Popen(
            ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--dir", work],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        ports = []
        for name in ("a", "b"):
            plain, admin = free_port(), free_port()
            path = os.path.join(work, f"{name}.toml")
            with open(path, "w") as f:
                f.write(config(plain, admin, redis_port, os.path.join(work, f"{name}.sock")))
            procs.append(subprocess.Popen([BIN, "run", "--config", path],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            # the first gateway creates the signing key the second then shares
            wait(f"http://127.0.0.1:{admin}/ready")
            ports.append(plain)
        a, b = (f"http://127.0.0.1:{p}" for p in ports)
        delays = []
        for _ in range(args.count):
            status, body = request(f"{a}/oauth/token", {"grant_type": "client_credentials"},
                                   basic=f"svc:{SECRET}")
            assert status == 200, body
            token = json.loads(body)["access_token"]
            assert request(f"{b}/api/x", token=token)[0] == 200
            status, _ = request(f"{a}/oauth/revoke", {"token": token}, basic=f"svc:{SECRET}")
            assert status == 200
            t0 = time.perf_counter()
            while request(f"{b}/api/x", token=token)[0] != 401:
                if time.perf_counter() - t0 > 5:
                    sys.exit("B never refused a revoked token")
                time.sleep(0.001)
            delays.append((time.perf_counter() - t0) * 1000)
        delays.sort()
        p99 = delays[min(len(delays) - 1, int(len(delays) * 0.99))]
        print(f"revocation propagation over {len(delays)} revocations: "
              f"p50 {statistics.median(delays):.2f} ms, p99 {p99:.2f} ms, max {delays[-1]:.2f} ms "
              f"(target p99 < 100 ms: {'met' if p99 < 100 else 'NOT met'})")
    finally:
        for p in procs:
            p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
