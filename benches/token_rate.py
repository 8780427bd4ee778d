"""Token endpoint throughput with each shared store: client_credentials from wrk against a gateway with two
workers, first on SQLite, then on Redis. Run by bench.py; `python3 benches/token_rate.py` alone too."""

import base64
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as lib  # noqa: E402
import propagation  # noqa: E402

POST_LUA = """
wrk.method = "POST"
wrk.body = "grant_type=client_credentials"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic " .. os.getenv("BASIC")
"""


def store_section(kind, work):
    """The [store] section for `kind`: None keeps propagation.config's Redis store."""
    if kind == "redis":
        return None
    return f'[store]\nbackend = "sqlite"\npath = "{work}/gatehouse.db"\n'


def run(work, duration=5):
    """{store: tokens per second, and redis-server's CPU per token}; Redis is skipped (and said) when
    redis-server is missing."""
    rates = {}
    lua = os.path.join(work, "post.lua")
    with open(lua, "w") as f:
        f.write(POST_LUA)
    basic = base64.b64encode(f"svc:{propagation.SECRET}".encode()).decode()
    redis = None
    try:
        redis_port = lib.free_port()
        if shutil.which("redis-server"):
            redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                                      "--dir", work], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            lib.wait_port(redis_port)
        for kind in ("sqlite", "redis"):
            if kind == "redis" and redis is None:
                lib.log("redis-server is missing: the Redis token rate is skipped")
                continue
            d = os.path.join(work, f"tokens-{kind}")
            os.makedirs(d, exist_ok=True)
            plain, admin = lib.free_port(), lib.free_port()
            text = propagation.config(plain, admin, redis_port, os.path.join(d, "upgrade.sock"), threads=2,
                                      store=store_section(kind, d))
            conf = os.path.join(d, "gateway.toml")
            with open(conf, "w") as f:
                f.write(text)
            proc = lib.Proc(f"gatehouse-tokens-{kind}", [os.path.join(lib.RELEASE, "gatehouse"), "run", "--config", conf],
                            plain, "0,1")
            try:
                propagation.wait(f"http://127.0.0.1:{admin}/ready")
                env = {"BASIC": basic}
                lib.wrk(plain, "/oauth/token", 1, 32, script=lua, env=env, cpus="0,1", threads=2)
                redis_before = lib.cpu_ticks(redis.pid) if redis is not None else 0
                rps, _, errors, total = lib.wrk(plain, "/oauth/token", duration, 32, script=lua, env=env,
                                                cpus="0,1", threads=2)
                if errors:
                    lib.log(f"token endpoint on {kind}: {errors} errors")
                rates[kind] = rps
                extra = ""
                if kind == "redis":
                    us = (lib.cpu_ticks(redis.pid) - redis_before) / lib.CLK_TCK * 1e6 / max(total, 1)
                    rates["redis-server CPU µs per token"] = us
                    extra = f", redis-server {us:.1f} µs CPU per token on the same cores"
                lib.log(f"token endpoint, {kind} store: {rps:.0f} tokens/s{extra}")
            finally:
                proc.stop()
    finally:
        if redis is not None:
            redis.kill()
            redis.wait()
    return rates


if __name__ == "__main__":
    lib.WORK = tempfile.mkdtemp(prefix="gatehouse-tokens-")
    try:
        print(run(lib.WORK))
    finally:
        shutil.rmtree(lib.WORK, ignore_errors=True)
