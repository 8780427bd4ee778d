"""The benchmark's report: one Markdown text with every scenario's CPU per request and each target judged."""

import datetime
import os
import platform

import benchlib as lib


def to_json(results):
    """The results with their tuple keys written as "name|kind" strings, for `json.dump`."""
    def keyed(d):
        return {"|".join(k) if isinstance(k, tuple) else k: v for k, v in d.items()}
    return {k: keyed(v) if k in ("tls", "idle") else v for k, v in results.items()}


def verdict(ok):
    return "met" if ok else "NOT met"


def render(results, args):
    summary, routes = results["summary"], results["routes"]
    lines = []
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines.append(f"Run {now} on {os.cpu_count()} × {lib.cpu_model()}, {platform.system()} {platform.release()}.")
    lines.append(f"`python3 benches/bench.py --duration {args.duration} --rounds {args.rounds} "
                 f"--connections {args.connections}`: one worker per proxy on CPU 0, wrk -t1 -c{args.connections} "
                 f"and the nginx upstream on CPU 1, median of {args.rounds} alternating rounds. CPU is the proxy "
                 f"process's own (user + system) per request.")
    lines.append("")
    lines.append("| scenario | req/s | p99 ms | errors | CPU µs/req | user | system | RSS MB |")
    lines.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, s in list(summary.items()) + list(routes.items()):
        lines.append(f"| {name} | {s['rps']:.0f} | {s['p99']:.2f} | {s['errors']} | {s['cpu_us']:.1f} | "
                     f"{s['user_us']:.1f} | {s['sys_us']:.1f} | {s['rss']:.1f} |")
    lines.append("")

    cpu = lambda n: summary[n]["cpu_us"] if n in summary else None  # noqa: E731
    rows = []
    pub, hit, miss = cpu("gatehouse public route"), cpu("gatehouse same RS256 token"), \
        cpu("gatehouse new RS256 token each request")
    pingora, nginx = cpu("pingora passthrough"), cpu("nginx passthrough")
    if pub is not None and pingora is not None:
        rows.append(("1. public route over plain Pingora (mimalloc, a runtime per thread)", f"{pub - pingora:+.1f} µs",
                     "≤ 3 µs", pub - pingora <= 3))
    if pub is not None and hit is not None:
        rows.append(("1. cache hit over the public route", f"{hit - pub:+.1f} µs", "≤ 2 µs", hit - pub <= 2))
    rules = cpu("gatehouse same RS256 token, three rules")
    if rules is not None and hit is not None:
        rows.append(("9. three route rules (allow_if, deny_if) over the same cache hit", f"{rules - hit:+.1f} µs",
                     "≤ 2 µs", rules - hit <= 2))
    if nginx is not None and hit is not None:
        rows.append(("stretch: cache hit against nginx's unauthenticated passthrough", f"{hit:.1f} vs {nginx:.1f} µs",
                     "≤ nginx", hit <= nginx))
    if pub is not None and miss is not None:
        m = summary["gatehouse new RS256 token each request"]
        lookups = m.get("lookups", 0)
        hits = m.get("hits", 0)
        rows.append((f"2. new token over the public route ({hits} cache hits in {lookups} lookups)",
                     f"{miss - pub:+.1f} µs", f"≤ {args.verify_us:.1f} + 5 µs", miss - pub <= args.verify_us + 5))
    dpop = cpu("gatehouse same RS256 token, DPoP proof each request")
    if dpop is not None and hit is not None:
        es256 = results["es256_us"]
        rows.append(("9. DPoP request (cache hit and a proof) over the bearer cache hit", f"{dpop - hit:+.1f} µs",
                     f"≤ ES256 {es256:.1f} + 3 µs", dpop - hit <= es256 + 3))
    for route in ("public route", "same token"):
        plain_name = "gatehouse public route" if route == "public route" else "gatehouse same RS256 token"
        https = cpu(f"gatehouse {route} HTTPS")
        if https is not None and cpu(plain_name) is not None:
            rows.append((f"4. HTTPS over HTTP on kept-alive connections, {route}",
                         f"{https - cpu(plain_name):+.1f} µs", "measured", None))
    tls = results["tls"]
    for label in ("full", "resumed"):
        g, n = tls.get(("gatehouse", label)), tls.get(("nginx", label))
        if g and n:
            rows.append((f"4. new TLS connections per second, {label} handshakes",
                         f"{g['rate']:.0f} vs nginx {n['rate']:.0f}", "≥ nginx", g["rate"] >= n["rate"]))
    full, resumed = tls.get(("gatehouse", "full")), tls.get(("gatehouse", "resumed"))
    if full and resumed:
        rows.append(("4. CPU of a resumed handshake / a full one", f"{resumed['cpu_us']:.0f} / {full['cpu_us']:.0f} µs",
                     "≤ 0.5 ×", resumed["cpu_us"] <= full["cpu_us"] / 2))
    one, two = results["two"]
    if one and two:
        r = two["rps"] / one["rps"]
        rows.append(("3. two workers on two cores (wrk -t2 and the upstream on the same cores) / one worker",
                     f"{r:.2f} × req/s", "≥ 1.7 ×", r >= 1.7))
        # What two cores could serve if the gateway had them to itself, from CPU per request.
        rows.append(("3. capacity of two workers from CPU per request (2 cores / CPU per request) / one worker",
                     f"{2 * one['cpu_us'] / two['cpu_us']:.2f} ×", "≥ 1.7 ×", 2 * one["cpu_us"] / two["cpu_us"] >= 1.7))
    before, after, cached = results["memory"]
    rows.append((f"8. RSS with {cached} distinct cached tokens", f"{after:.1f} MB (idle {before:.1f} MB)", "< 100 MB",
                 after < 100 and cached >= 100000))
    idle = results["idle"]
    g, p = idle.get(("gatehouse", "HTTP")), idle.get(("pingora passthrough", "HTTP"))
    if g and p:
        rows.append(("4. memory per idle HTTP connection", f"{g[0]:.1f} KB vs Pingora {p[0]:.1f} KB", "≤ Pingora",
                     g[0] <= p[0]))
    g, n = idle.get(("gatehouse", "TLS")), idle.get(("nginx", "TLS"))
    if g and n:
        rows.append(("4. memory per idle TLS connection", f"{g[0]:.1f} KB vs nginx {n[0]:.1f} KB", "≤ 2 × nginx",
                     g[0] <= 2 * n[0]))
    rates = results["token_rates"]
    for store in ("sqlite", "redis"):
        if store in rates:
            note = ""
            if store == "redis" and "redis-server CPU µs per token" in rates:
                note = f" (redis-server on the same cores: {rates['redis-server CPU µs per token']:.1f} µs CPU per token)"
            rows.append((f"6. token endpoint, {store} store, 2 workers{note}", f"{rates[store]:.0f} tokens/s",
                         "≥ 10,000/s", rates[store] >= 10000))
    sessions = results.get("sessions") or {}
    if "session cookie" in sessions and "bearer, cached" in sessions:
        sc, bc = sessions["session cookie"], sessions["bearer, cached"]
        rows.append(("5. session-cookie request over a bearer cache hit (SQLite store, session held)",
                     f"{sc['cpu_us'] - bc['cpu_us']:+.1f} µs ({sc['cpu_us']:.1f} vs {bc['cpu_us']:.1f})", "≤ 5 µs",
                     sc["cpu_us"] - bc["cpu_us"] <= 5))
    r10, r10k = routes.get("gatehouse 10 routes, same token"), routes.get("gatehouse 10000 routes, same token")
    if r10 and r10k:
        growth = r10k["cpu_us"] - r10["cpu_us"]
        rows.append(("CPU from 10 to 10,000 routes", f"{growth:+.1f} µs", "measured", None))

    # in the order: numbered targets first, the stretch and what is only measured after
    rows.sort(key=lambda r: int(r[0].split(".")[0]) if r[0].split(".")[0].isdigit() else 99)
    lines.append("| target | measured | goal | |")
    lines.append("| --- | ---: | --- | --- |")
    for name, value, goal, ok in rows:
        lines.append(f"| {name} | {value} | {goal} | {'' if ok is None else verdict(ok)} |")
    lines.append("")

    lines.append("| TLS, new connections (one `openssl s_time` client, each fetching one page) | conn/s | "
                 "server CPU µs per connection | resumed (checked) |")
    lines.append("| --- | ---: | ---: | --- |")
    for (name, label), row in tls.items():
        checked = "" if row["reused"] is None else ("yes" if row["reused"] else "no")
        lines.append(f"| {name}, {label} | {row['rate']:.0f} | {row['cpu_us']:.1f} | {checked} |")
    lines.append("")
    lines.append("| idle keep-alive connections | held | RSS growth per connection |")
    lines.append("| --- | ---: | ---: |")
    for (name, kind), (kb, n) in idle.items():
        lines.append(f"| {name} {kind} | {n} | {kb:.1f} KB |")
    lines.append("")
    fa = results.get("forward_auth")
    if fa:
        lines.append("| behind nginx (`auth_request`), same RS256 token | req/s | nginx CPU µs/req | "
                     "gatehouse CPU µs/req | together |")
        lines.append("| --- | ---: | ---: | ---: | ---: |")
        for name, row in fa.items():
            lines.append(f"| {name} | {row['rps']:.0f} | {row['nginx_us']:.1f} | {row['gatehouse_us']:.1f} | "
                         f"{row['nginx_us'] + row['gatehouse_us']:.1f} |")
        lines.append("")
    if one and two:
        lines.append(f"Two workers: {two['rps']:.0f} req/s at {two['cpu_us']:.1f} µs CPU per request, against "
                     f"{one['rps']:.0f} req/s for one worker on one core (the gateway, wrk -t2 and the upstream share "
                     f"both cores in the two-worker run).")
        lines.append("")
    return "\n".join(lines) + "\n"
