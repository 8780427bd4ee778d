#!/usr/bin/env python3
"""The DPoP scenario of `make bench`: the same RS256 token answered from the verified-token cache, once
as a bearer token and once as a DPoP-bound token with a fresh proof on every request (the proof's claims,
its ES256 signature, its key's thumbprint against the token's cnf.jkt, and its id taken once). bench.py
runs it beside its bearer cache hit; alone, this script measures both on one gatehouse, or with --quick
only checks that the scenario is right (a proof taken once, a bound token refused as a bearer token).

Target: a DPoP request costs at most one ES256 verification (as a proof's check makes it, key parsing
included; measured here by bench_tokens) plus 3 µs more CPU than the bearer one.

Usage: python3 benches/dpop_bench.py [--seconds 3] [--rounds 3] [--connections 64] [--quick] [--debug]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as lib  # noqa: E402

PATH = "/dpop/x"
# The route the scenario calls: the bench issuer's tokens, DPoP-bound ones only.
ROUTE = """
[[routes]]
path_prefix = "/dpop"
upstream = "up"
issuers = ["bench"]
scopes_all = ["read"]
dpop = "required"
"""

# Each request sends the next proof of PROOFS (each used once) with the one bound token; if they run
# out, the last repeats and is refused as a replay (wrk counts the errors).
PROOF_LUA = """
local proofs = {}
for line in io.lines(os.getenv("PROOFS")) do proofs[#proofs + 1] = line end
local auth = "DPoP " .. os.getenv("DPOP_TOKEN")
local i = 0
request = function()
  if i < #proofs then i = i + 1 end
  return wrk.format("GET", os.getenv("BENCH_PATH"), {["Authorization"] = auth, ["DPoP"] = proofs[i]})
end
"""


def make(work, port, count, target=lib.RELEASE):
    """Writes `count` fresh proofs for the scenario's URL on `port`; returns (token, proofs file, µs of one
    ES256 verification here)."""
    keys = os.path.join(work, "keys")
    out = subprocess.run([os.path.join(target, "examples", "bench_tokens"), "dpop", keys,
                          f"http://127.0.0.1:{port}{PATH}", str(count)], check=True, capture_output=True, text=True)
    us = float(out.stdout.split("es256_verify_us")[1].split()[0])
    token = open(os.path.join(keys, "dpop-token.txt")).read().strip()
    return token, os.path.join(keys, "dpop-proofs.txt"), us


def get(port, headers):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{PATH}", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def check(work, port, target=lib.RELEASE):
    """A proof passes once, its replay and the bound token as a bearer token do not, a fresh one passes."""
    token, proofs, _ = make(work, port, 2, target)
    first, second = open(proofs).read().split()
    dpop = lambda proof: {"Authorization": f"DPoP {token}", "DPoP": proof}  # noqa: E731
    got = (get(port, dpop(first)), get(port, dpop(first)), get(port, {"Authorization": f"Bearer {token}"}),
           get(port, dpop(second)))
    ok = got == (200, 401, 401, 200)
    lib.log(f"correctness gatehouse DPoP proof/replay/as bearer/next -> {got} {'ok' if ok else 'FAILED'}")
    return ok


def round_env(work, port, count, target=lib.RELEASE):
    """The wrk environment of a round: fresh proofs (their iat is now), made before the round starts."""
    def env(_round):
        token, proofs, _ = make(work, port, count, target)
        return {"PROOFS": proofs, "DPOP_TOKEN": token, "BENCH_PATH": PATH}
    return env


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--proofs", type=int, default=60000, help="proofs made per round, each sent once")
    ap.add_argument("--quick", action="store_true", help="the correctness check only")
    ap.add_argument("--debug", action="store_true",
                    help="use the debug build (cargo build --example bench_tokens): for --quick, not for figures")
    args = ap.parse_args()
    target = os.path.join(lib.TARGET, "debug" if args.debug else "release")
    cargo = ["cargo", "build", "--locked", "--bin", "gatehouse", "--example", "bench_tokens"]
    subprocess.run(cargo if args.debug else cargo + ["--release"], cwd=lib.ROOT, check=True)
    lib.WORK = tempfile.mkdtemp(prefix="gatehouse-dpop-bench-")
    procs = []
    try:
        subprocess.run([os.path.join(target, "examples", "bench_tokens"), os.path.join(lib.WORK, "keys"), "1", "1",
                        lib.HS_SECRET], check=True)
        lib.UP = lib.free_port()
        procs.append(lib.Proc("upstream", lib.nginx_conf("upstream", f"""
  server {{ listen 127.0.0.1:{lib.UP} reuseport backlog=4096; location / {{ return 200 "ok"; }} }}
"""), lib.UP, 1))
        ports = (lib.free_port(), lib.free_port(), lib.free_port())
        argv = lib.gatehouse_conf("gatehouse", ports, routes_extra=ROUTE)
        argv[0] = os.path.join(target, "gatehouse")
        gh = lib.Proc("gatehouse", argv, ports[0], 0, env={"BENCH_HS_SECRET": lib.HS_SECRET})
        procs.append(gh)
        if not check(lib.WORK, ports[0], target):
            sys.exit("gatehouse failed the DPoP correctness check")
        if args.quick:
            return
        bearer = open(os.path.join(lib.WORK, "keys/token.txt")).read().strip()
        lua = os.path.join(lib.WORK, "proofs.lua")
        with open(lua, "w") as f:
            f.write(PROOF_LUA)
        env = round_env(lib.WORK, ports[0], args.proofs, target)
        got = {"bearer": [], "dpop": []}
        split = {"bearer": [], "dpop": []}
        for r in range(args.rounds):
            for name in got:
                wenv = env(r) if name == "dpop" else None
                user0, sys0 = lib.cpu_split(gh.p.pid)
                if name == "dpop":
                    rps, _, errors, total = lib.wrk(ports[0], PATH, args.seconds, args.connections, script=lua,
                                                    env=wenv)
                else:
                    rps, _, errors, total = lib.wrk(ports[0], "/auth/x", args.seconds, args.connections, token=bearer)
                user1, sys1 = lib.cpu_split(gh.p.pid)
                per = 1e6 / lib.CLK_TCK / max(total, 1)
                user, system = (user1 - user0) * per, (sys1 - sys0) * per
                got[name].append(user + system)
                split[name].append((user, system))
                lib.log(f"dpop bench round {r + 1}: {name:<7} {rps:8.0f} req/s  errors {errors}  "
                        f"{user + system:6.1f} µs CPU/req (user {user:5.1f}, system {system:5.1f})")
        _, _, es256 = make(lib.WORK, ports[0], 1, target)
        bearer_us, dpop_us = statistics.median(got["bearer"]), statistics.median(got["dpop"])
        ok = dpop_us - bearer_us <= es256 + 3
        user = {n: statistics.median(u for u, _ in split[n]) for n in split}
        print(f"bearer cache hit {bearer_us:.1f} µs, DPoP {dpop_us:.1f} µs: {dpop_us - bearer_us:+.1f} µs "
              f"(target ≤ ES256 {es256:.1f} + 3 µs): {'met' if ok else 'NOT met'}; user time alone "
              f"{user['dpop'] - user['bearer']:+.1f} µs")
    finally:
        for p in procs:
            p.stop()
        shutil.rmtree(lib.WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
