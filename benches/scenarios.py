"""The benchmark's connection-level scenarios: TLS handshakes per second, memory per idle connection,
and one worker against two. Each returns plain numbers; bench.py reports them."""

import re
import resource
import socket
import ssl
import subprocess
import time

import benchlib as lib


def cpu_us(pid, fn):
    """Runs fn() and returns (its result, the CPU microseconds pid and its children used meanwhile)."""
    before = lib.cpu_ticks(pid)
    out = fn()
    return out, (lib.cpu_ticks(pid) - before) / lib.CLK_TCK * 1e6


def s_time(port, path, mode, seconds):
    """openssl s_time on CPU 1: new TLS connections, each fetching `path`; (connections, wall seconds).
    `-www` makes the client read the answer, and with it the TLS 1.3 session ticket that a resumed
    connection (`-reuse`) needs."""
    t0 = time.perf_counter()
    out = subprocess.run(["taskset", "-c", "1", "openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-www", path,
                          mode, "-time", str(seconds)], capture_output=True, text=True).stdout
    wall = time.perf_counter() - t0
    m = re.findall(r"(\d+) connections in [\d.]+s;", out)
    if not m:
        raise RuntimeError(f"s_time printed no result: {out[-300:]}")
    # With -reuse, s_time makes one full handshake first, then times the resumed ones.
    return int(m[-1]), wall


def tls_handshakes(targets, seconds=5):
    """targets: name -> (pid, tls port, path). For each, full and resumed handshakes per second and the
    server's CPU microseconds per connection (handshake plus one proxied request)."""
    rows = {}
    for name, (pid, port, path) in targets.items():
        for mode, label in (("-new", "full"), ("-reuse", "resumed")):
            (conns, wall), us = cpu_us(pid, lambda: s_time(port, path, mode, seconds))
            reused = None
            if mode == "-reuse":
                reused = resumed_really(port)
            rows[(name, label)] = {"rate": conns / wall, "cpu_us": us / max(conns, 1), "reused": reused}
            lib.log(f"tls {name:<10} {label:<8} {conns / wall:8.0f} conn/s  {us / max(conns, 1):7.1f} µs CPU each")
    return rows


def resumed_really(port):
    """True when a second connection with the first one's session is resumed (checked, not assumed)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    session = None
    for _ in range(2):
        with socket.create_connection(("127.0.0.1", port)) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as s:
                s.sendall(b"GET /public/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                while s.recv(65536):
                    pass
                if session is not None:
                    return s.session_reused
                session = s.session
    return False


def raise_fd_limit(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(n, hard), hard))


def idle_memory(pid, port, path, count, tls=False):
    """Opens `count` keep-alive connections, each after one answered request, and returns the server's
    RSS growth per connection in KB (measured after a first batch warmed the allocator)."""
    raise_fd_limit(count * 2 + 1000)
    ctx = None
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    request = f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()

    def connect():
        s = socket.create_connection(("127.0.0.1", port))
        if ctx:
            s = ctx.wrap_socket(s, server_hostname="localhost")
        s.sendall(request)
        got = b""
        while b"\r\n\r\n" not in got:
            chunk = s.recv(65536)
            if not chunk:
                raise RuntimeError("the server closed an idle-test connection")
            got += chunk
        return s

    socks = [connect() for _ in range(200)]  # warm-up: the first connections pay one-off growth
    time.sleep(0.5)
    before = lib.rss_mb(pid)
    try:
        socks += [connect() for _ in range(count)]
        time.sleep(1.0)
        after = lib.rss_mb(pid)
        alive = lib.open_fds(pid)
    finally:
        for s in socks:
            s.close()
    return (after - before) * 1024 / count, alive


def two_workers(conf_args, env, port, path, token, duration, conns):
    """The cached-token scenario against one gatehouse with two workers, gatehouse and wrk sharing both
    cores; returns requests per second and the gateway's CPU microseconds per request."""
    proc = lib.Proc("gatehouse-2-workers", conf_args, port, "0,1", env=env)
    try:
        lib.wrk(port, path, 2, conns, token=token, cpus="0,1")  # warm the cache and the connections
        before = lib.cpu_ticks(proc.p.pid)
        rps, p99, errors, total = lib.wrk(port, path, duration, conns, token=token, cpus="0,1", threads=2)
        us = (lib.cpu_ticks(proc.p.pid) - before) / lib.CLK_TCK * 1e6 / max(total, 1)
        return {"rps": rps, "p99": p99, "errors": errors, "cpu_us": us}
    finally:
        proc.stop()
