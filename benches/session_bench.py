"""What a sign-in session costs per request: the same gateway answers a session-cookie route (the session
read from its SQLite store each time) and a bearer route with one cached token. Run by bench.py."""

import os
import re
import statistics
import urllib.parse

import benchlib as lib
import soak


def sign_in(port):
    """Signs in on the sign-in page as soak's local user; returns the session cookie (name=value)."""
    cl = soak.Client(port)
    s, h, page = cl.call("GET", "/oauth/login?rd=%2Fapp%2F&login=local", {"accept": "text/html"})
    csrf = re.search(rb'name="csrf" value="([^"]+)"', page)
    pre = [v.split(";")[0] for k, v in h if k.lower() == "set-cookie" and v.startswith("__Host-gatehouse-csrf")]
    if s != 200 or not csrf or not pre:
        raise RuntimeError(f"the sign-in page answered {s}")
    form = urllib.parse.urlencode({"csrf": csrf.group(1).decode(), "rd": "/app/", "username": "soak@example.com",
                                   "password": soak.PASSWORD}).encode()
    s, h, _ = cl.call("POST", "/oauth/login", {"cookie": pre[0], "origin": f"http://127.0.0.1:{port}",
                                               "content-type": "application/x-www-form-urlencoded"}, form)
    session = [v.split(";")[0] for k, v in h if k.lower() == "set-cookie" and v.startswith("__Host-gatehouse=")]
    if s != 303 or not session:
        raise RuntimeError(f"signing in answered {s}")
    if cl.call("GET", "/app/x", {"cookie": session[0]})[0] != 200 or cl.call("GET", "/app/x")[0] != 401:
        raise RuntimeError("the session route does not tell a session from none")
    return session[0]


def run(work, up_port, rounds, duration, conns):
    """{"session cookie": {...}, "bearer, cached": {...}}: medians of req/s and CPU µs per request."""
    d = os.path.join(work, "session-bench")
    os.makedirs(d, exist_ok=True)
    port, admin = lib.free_port(), lib.free_port()
    conf = os.path.join(d, "gateway.toml")
    with open(conf, "w") as f:
        f.write(soak.config(d, port, up_port, admin))
    proc = lib.Proc("gatehouse-sessions", [os.path.join(lib.RELEASE, "gatehouse"), "run", "--config", conf], port, 0,
                    env={"SOAK_SECRET": soak.SECRET})
    try:
        cookie = sign_in(port)
        token = soak.hs_token(exp_in=7200)
        cases = {"session cookie": ("/app/x", ["-H", f"Cookie: {cookie}"]),
                 "bearer, cached": ("/api/x", ["-H", f"Authorization: Bearer {token}"])}
        got = {name: [] for name in cases}
        for _ in range(rounds):
            for name, (path, header) in cases.items():
                before = lib.cpu_ticks(proc.p.pid)
                rps, _, errors, total = lib.wrk(port, path, duration, conns, extra=header)
                us = (lib.cpu_ticks(proc.p.pid) - before) / lib.CLK_TCK * 1e6 / max(total, 1)
                if errors:
                    raise RuntimeError(f"{name}: {errors} requests were not answered 2xx")
                got[name].append((rps, us))
                lib.log(f"sessions: {name:<16} {rps:8.0f} req/s  {us:6.1f} µs CPU/req")
        return {name: {"rps": statistics.median(r for r, _ in v), "cpu_us": statistics.median(u for _, u in v)}
                for name, v in got.items()}
    finally:
        proc.stop()
