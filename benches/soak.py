#!/usr/bin/env python3
"""The soak of `make soak`: a release gatehouse (token service on SQLite, a real upstream) under mixed
traffic at a steady rate on loopback for --minutes (10): valid cached tokens, new tokens, expired and
forged ones, the token endpoint, revocations used at once, and sign-ins through the sign-in page.
Every answer is checked against the one expected; at the end it prints unexpected answers, p99, RSS at
the start and the end, open file descriptors, and revocations that failed to apply.

Usage: python3 benches/soak.py [--minutes 10] [--rate 200]
"""

import argparse
import base64
import hashlib
import hmac
import http.client
import http.server
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bench  # noqa: E402  (processes, ports, CPU and memory accounting)

SECRET = "soak-secret-that-is-long-enough-0123456789abcdef"
CLIENT_SECRET = "soak-client-secret-0123456789abcdef0123"
PASSWORD = "soak password"


def b64(d):
    return base64.urlsafe_b64encode(d).rstrip(b"=").decode()


def hs_token(exp_in=3600, sub="soak", key=SECRET):
    h = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    c = b64(json.dumps({"iss": "https://soak.local", "aud": "soak", "sub": sub, "roles": ["reader"],
                        "exp": int(time.time()) + exp_in}).encode())
    s = b64(hmac.new(key.encode(), f"{h}.{c}".encode(), hashlib.sha256).digest())
    return f"{h}.{c}.{s}"


class Upstream(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = b'{"ok":true}'
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def config(work, port, up, admin):
    argon = subprocess.run([os.path.join(bench.RELEASE, "gatehouse"), "hash-secret", "--argon2"],
                           input=PASSWORD.encode(), capture_output=True, check=True).stdout.decode().strip()
    client = "sha256:" + hashlib.sha256(CLIENT_SECRET.encode()).hexdigest()
    return f"""
[server]
listen_tls = []
listen_plain = ["127.0.0.1:{port}"]
admin_listen = "127.0.0.1:{admin}"
public_url = "http://127.0.0.1:{port}"
threads = 1

[[issuers]]
name = "soak"
issuer = "https://soak.local"
secret_env = "SOAK_SECRET"
audiences = ["soak"]
algorithms = ["HS256"]

[[upstreams]]
name = "up"
peers = ["127.0.0.1:{up}"]

[[routes]]
path_prefix = "/api"
upstream = "up"
roles_any = ["reader"]

[[routes]]
name = "app"
path_prefix = "/app"
upstream = "up"
auth = "session"

[token_service]
issuer = "http://127.0.0.1:{port}"
audience = ["soak"]
signing_keys = ["{work}/signing.pem"]

[[clients]]
client_id = "svc"
secret_hash = "{client}"
scopes = ["api"]
roles = ["reader"]

[[users]]
username = "soak@example.com"
password_hash = "{argon}"
roles = ["reader"]

[store]
backend = "sqlite"
path = "{work}/soak.db"

[rate_limit]
token_endpoint = "100000/s"
failed_auth_lockout = "100000/5m"
"""


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.latencies, self.unexpected, self.counts, self.revocation_misses = [], [], {}, 0

    def add(self, kind, ms, ok, what=""):
        with self.lock:
            self.latencies.append(ms)
            self.counts[kind] = self.counts.get(kind, 0) + 1
            if not ok:
                self.unexpected.append(f"{kind}: {what}")


class Client:
    """One keep-alive connection; reconnects when the gateway closes it."""

    def __init__(self, port):
        self.port, self.c = port, None

    def call(self, method, path, headers=None, body=None):
        for _ in range(2):
            try:
                if self.c is None:
                    self.c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                self.c.request(method, path, body=body, headers=headers or {})
                r = self.c.getresponse()
                data = r.read()
                if r.getheader("connection", "").lower() == "close":
                    self.c.close()
                    self.c = None
                return r.status, r.getheaders(), data
            except (OSError, http.client.HTTPException):
                if self.c:
                    self.c.close()
                self.c = None
        return 0, [], b""


def sign_in(cl):
    """Signs in on the sign-in page as the local user: (the session cookie as name=value, or None; what
    happened)."""
    s, h, page = cl.call("GET", "/oauth/login?rd=%2Fapp%2F&login=local", {"accept": "text/html"})
    csrf = re.search(rb'name="csrf" value="([^"]+)"', page)
    pre = [v.split(";")[0] for k, v in h if k.lower() == "set-cookie" and v.startswith("__Host-gatehouse-csrf")]
    if s != 200 or not csrf or not pre:
        return None, f"page {s}"
    form = urllib.parse.urlencode({"csrf": csrf.group(1).decode(), "rd": "/app/",
                                   "username": "soak@example.com", "password": PASSWORD}).encode()
    s, h, _ = cl.call("POST", "/oauth/login", {"cookie": pre[0], "origin": f"http://127.0.0.1:{cl.port}",
                                               "content-type": "application/x-www-form-urlencoded"}, form)
    session = [v.split(";")[0] for k, v in h if k.lower() == "set-cookie" and v.startswith("__Host-gatehouse=")]
    if s != 303 or not session:
        return None, f"sign-in {s}"
    return session[0], "signed in"


def basic():
    return "Basic " + base64.b64encode(f"svc:{CLIENT_SECRET}".encode()).decode()


def one(kind, cl, tally, cached):
    t0 = time.monotonic()
    ok, what = True, ""
    if kind == "cached":
        s, _, _ = cl.call("GET", "/api/x", {"authorization": f"Bearer {cached}"})
        ok, what = s == 200, s
    elif kind == "new":
        # a new token every time; they live a minute, as short-lived access tokens do, so the
        # verified-token cache reaches a steady size
        tok = hs_token(exp_in=60, sub=str(random.random()))
        s, _, _ = cl.call("GET", "/api/x", {"authorization": f"Bearer {tok}"})
        ok, what = s == 200, s
    elif kind == "expired":
        s, _, _ = cl.call("GET", "/api/x", {"authorization": f"Bearer {hs_token(exp_in=-3600)}"})
        ok, what = s == 401, s
    elif kind == "forged":
        s, _, _ = cl.call("GET", "/api/x", {"authorization": f"Bearer {hs_token(key='x' * 48)}"})
        ok, what = s == 401, s
    elif kind in ("token", "revoke"):
        s, _, body = cl.call("POST", "/oauth/token", {"authorization": basic(),
                             "content-type": "application/x-www-form-urlencoded"}, b"grant_type=client_credentials")
        ok, what = s == 200, s
        if ok:
            tok = json.loads(body)["access_token"]
            s, _, _ = cl.call("GET", "/api/x", {"authorization": f"Bearer {tok}"})
            ok, what = s == 200, f"own token {s}"
            if ok and kind == "revoke":
                s, _, _ = cl.call("POST", "/oauth/revoke", {"authorization": basic(),
                                  "content-type": "application/x-www-form-urlencoded"},
                                  urllib.parse.urlencode({"token": tok}).encode())
                s2, _, _ = cl.call("GET", "/api/x", {"authorization": f"Bearer {tok}"})
                ok, what = s == 200 and s2 == 401, f"revoke {s}, then {s2}"
                if s == 200 and s2 != 401:
                    with tally.lock:
                        tally.revocation_misses += 1
    elif kind == "sign-in":
        session, what = sign_in(cl)
        if session is None:
            ok = False
        else:
            s, _, _ = cl.call("GET", "/app/", {"cookie": session})
            ok, what = s == 200, f"session {s}"
    tally.add(kind, (time.monotonic() - t0) * 1000, ok, what)


MIX = ["cached"] * 60 + ["new"] * 15 + ["expired"] * 8 + ["forged"] * 8 + ["token"] * 5 + ["revoke"] * 3 + ["sign-in"]


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--rate", type=int, default=200, help="requests started per second")
    ap.add_argument("--workers", type=int, default=8)
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "--bin", "gatehouse"], cwd=bench.ROOT, check=True)
    bench.WORK = work = tempfile.mkdtemp(prefix="gatehouse-soak-")
    up_port, port, admin = bench.free_port(), bench.free_port(), bench.free_port()
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", up_port), Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    conf = os.path.join(work, "gateway.toml")
    with open(conf, "w") as f:
        f.write(config(work, port, up_port, admin))
    gw = bench.Proc("gatehouse-soak", [os.path.join(bench.RELEASE, "gatehouse"), "run", "--config", conf],
                    port, 0, env={"SOAK_SECRET": SECRET})
    pid = gw.p.pid
    tally, cached = Tally(), hs_token(exp_in=24 * 3600)
    stop = time.monotonic() + args.minutes * 60
    per_worker = args.rate / args.workers
    rss_start, fds_start = None, None
    # the start figure is taken once the caches are at their steady size (new tokens live 60 s)
    warm = time.monotonic() + min(90, args.minutes * 60 / 4)
    rss_first = None

    def worker(seed):
        rnd, cl = random.Random(seed), Client(port)
        nxt = time.monotonic()
        while nxt < stop:
            one(rnd.choice(MIX), cl, tally, cached)
            nxt += 1.0 / per_worker
            time.sleep(max(0.0, nxt - time.monotonic()))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.workers)]
    for t in threads:
        t.start()
    samples = []
    while any(t.is_alive() for t in threads):
        time.sleep(5)
        if rss_first is None:
            rss_first = bench.rss_mb(pid)
        if rss_start is None and time.monotonic() > warm:
            rss_start, fds_start = bench.rss_mb(pid), fds(pid)
        samples.append((bench.rss_mb(pid), fds(pid)))
    for t in threads:
        t.join()
    rss_end, fds_end = bench.rss_mb(pid), fds(pid)
    gw.stop()
    upstream.shutdown()
    lat = sorted(tally.latencies)
    p99 = lat[int(len(lat) * 0.99)] if lat else 0
    total = len(lat)
    print(f"\nsoak: {args.minutes:g} min at {args.rate}/s, {args.workers} clients, release build, loopback")
    print("| requests | unexpected answers | p99 ms | RSS MB steady → end | fds steady → end | revocations not applied |")
    print("| ---: | ---: | ---: | --- | --- | ---: |")
    print(f"| {total} | {len(tally.unexpected)} | {p99:.1f} | {rss_start:.1f} → {rss_end:.1f} "
          f"({(rss_end / rss_start - 1) * 100:+.1f} %) | {fds_start} → {fds_end} | {tally.revocation_misses} |")
    print("by kind: " + ", ".join(f"{k} {v}" for k, v in sorted(tally.counts.items())))
    print(f"RSS 5 s in: {rss_first:.1f} MB (before the caches filled); steady figures from "
          f"{min(90, args.minutes * 60 / 4):.0f} s on")
    print(f"RSS range over the run: {min(s[0] for s in samples):.1f}–{max(s[0] for s in samples):.1f} MB; "
          f"fds {min(s[1] for s in samples)}–{max(s[1] for s in samples)}")
    for u in tally.unexpected[:20]:
        print("unexpected:", u)
    if tally.unexpected or tally.revocation_misses:
        sys.exit(1)


if __name__ == "__main__":
    main()
