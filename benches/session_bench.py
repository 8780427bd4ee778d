"""What a sign-in session costs per request: the same gateway answers a session-cookie route (the session
read from its SQLite store each time) and a bearer route with one cached token. Run by bench.py."""

import os
import statistics

import benchlib as lib
import soak


def sign_in(port):
    """Signs in as soak's local user; returns the session cookie (name=value) once it is seen to work."""
    cl = soak.Client(port)
    session, what = soak.sign_in(cl)
    if session is None:
        raise RuntimeError(f"signing in failed: {what}")
    if cl.call("GET", "/app/x", {"cookie": session})[0] != 200 or cl.call("GET", "/app/x")[0] != 401:
        raise RuntimeError("the session route does not tell a session from none")
    return session


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
