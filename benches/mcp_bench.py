#!/usr/bin/env python3
"""The MCP scenario of `make bench`: a `tools/call` of `echo` on an MCP server built on the official
TypeScript SDK (tests/clients/mcp_server.mjs), called directly and through gatehouse on an MCP route
(an HS256 token whose `aud` is the route's resource, verified on every call and cached after the
first, and a tool rule, so the gateway reads every call's JSON-RPC body). Reports calls per second and
the gateway's CPU microseconds per call, one worker, pinned like bench.py's proxies.

Usage: python3 benches/mcp_bench.py [--seconds 10] [--connections 16]
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import re
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bench  # noqa: E402  (shared helpers: processes, ports, CPU accounting)

SECRET = "mcp-bench-secret-that-is-long-enough-0123456789"
ISSUER = "https://mcp-bench.local"
CALL = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "hi"}}}

# Every request is the same call on the session the script opened.
CALL_LUA = """
wrk.method = "POST"
wrk.body = os.getenv("CALL")
wrk.headers["content-type"] = "application/json"
wrk.headers["accept"] = "application/json, text/event-stream"
wrk.headers["mcp-session-id"] = os.getenv("SESSION")
wrk.headers["mcp-protocol-version"] = "2025-06-18"
local token = os.getenv("TOKEN")
if token ~= "" then wrk.headers["authorization"] = "Bearer " .. token end
"""


def token(resource):
    b = lambda d: base64.urlsafe_b64encode(d).rstrip(b"=").decode()
    h = b(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    c = b(json.dumps({"iss": ISSUER, "aud": resource, "sub": "bench", "scope": "mcp",
                      "exp": int(time.time()) + 3600}).encode())
    s = b(hmac.new(SECRET.encode(), f"{h}.{c}".encode(), hashlib.sha256).digest())
    return f"{h}.{c}.{s}"


def post(url, body, headers):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers={
        "content-type": "application/json", "accept": "application/json, text/event-stream", **headers})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def session(port, tok):
    """Opens an MCP session on `port` (initialize, then the initialized notification)."""
    auth = {"authorization": f"Bearer {tok}"} if tok else {}
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}}
    status, headers, body = post(f"http://127.0.0.1:{port}/mcp", init, auth)
    if status != 200:
        sys.exit(f"initialize on {port}: {status} {body}")
    sid = headers["mcp-session-id"]
    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    post(f"http://127.0.0.1:{port}/mcp", note, {**auth, "mcp-session-id": sid, "mcp-protocol-version": "2025-06-18"})
    return sid


def gateway_conf(gw_port, admin, up_port):
    return f"""
[server]
listen_tls = []
listen_plain = ["127.0.0.1:{gw_port}"]
admin_listen = "127.0.0.1:{admin}"
public_url = "http://127.0.0.1:{gw_port}"
threads = 1

[[issuers]]
name = "bench"
issuer = "{ISSUER}"
secret_env = "MCP_BENCH_SECRET"
audiences = ["bench"]
algorithms = ["HS256"]

[[upstreams]]
name = "mcp"
peers = ["127.0.0.1:{up_port}"]

[[routes]]
path_prefix = "/mcp"
upstream = "mcp"
mcp = true
authorization_servers = ["{ISSUER}"]
scopes_all = ["mcp"]
stream_idle_timeout = "5m"

[[routes.mcp_tools]]
match = "delete_*"
deny = true
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=16)
    args = ap.parse_args()
    server = os.path.join(bench.ROOT, "tests", "clients", "mcp_server.mjs")
    if not os.path.isdir(os.path.join(bench.ROOT, "tests", "clients", "node_modules", "@modelcontextprotocol")):
        sys.exit("the MCP SDK is missing: `make bench` installs it (`make clients`)")
    bench.build()
    bench.WORK = tempfile.mkdtemp(prefix="gatehouse-mcp-bench-")
    up_port, gw_port, admin = bench.free_port(), bench.free_port(), bench.free_port()
    up = bench.Proc("mcp-server", ["node", server, str(up_port)], up_port, 1)
    conf = os.path.join(bench.WORK, "gateway.toml")
    with open(conf, "w") as f:
        f.write(gateway_conf(gw_port, admin, up_port))
    gw = bench.Proc("gatehouse-mcp", [os.path.join(bench.RELEASE, "gatehouse"), "run", "--config", conf],
                    gw_port, 0, env={"MCP_BENCH_SECRET": SECRET})
    tok = token(f"http://127.0.0.1:{gw_port}/mcp")
    lua = os.path.join(bench.WORK, "call.lua")
    with open(lua, "w") as f:
        f.write(CALL_LUA)
    try:
        # correctness first: without a token 401, a denied tool 403, the call 200
        if post(f"http://127.0.0.1:{gw_port}/mcp", CALL, {})[0] != 401:
            sys.exit("an MCP call without a token was not refused")
        sid = session(gw_port, tok)
        denied = dict(CALL, params={"name": "delete_user", "arguments": {"user": "x"}})
        auth = {"authorization": f"Bearer {tok}", "mcp-session-id": sid, "mcp-protocol-version": "2025-06-18"}
        if post(f"http://127.0.0.1:{gw_port}/mcp", denied, auth)[0] != 403:
            sys.exit("a denied tool was not refused")
        rows = []
        for name, port, t in (("direct call", up_port, ""), ("through gatehouse", gw_port, tok)):
            sid = session(port, t)
            env = {"CALL": json.dumps(CALL), "SESSION": sid, "TOKEN": t}
            bench.wrk(port, "/mcp", 2, args.connections, script=lua, env=env)  # warm up
            before = bench.cpu_ticks(gw.p.pid)
            rps, p99, errors, total = bench.wrk(port, "/mcp", args.seconds, args.connections, script=lua, env=env)
            gw_us = (bench.cpu_ticks(gw.p.pid) - before) / bench.CLK_TCK * 1e6 / max(total, 1)
            rows.append((name, rps, p99, errors, gw_us if port == gw_port else None))
        print(f"\nMCP tools/call (echo, TypeScript SDK server), wrk -c{args.connections} {args.seconds}s, plain HTTP:")
        print("| scenario | calls/s | p99 ms | errors | gateway CPU µs/call |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for name, rps, p99, errors, g in rows:
            print(f"| {name} | {rps:.0f} | {p99:.1f} | {errors} | {'-' if g is None else f'{g:.1f}'} |")
    finally:
        gw.stop()
        up.stop()


if __name__ == "__main__":
    main()
