"""What the forward-auth endpoint costs behind nginx: nginx asking gatehouse (`auth_request`) about each
request against nginx alone, CPU microseconds per request on each process. Run by bench.py."""

import statistics

import benchlib as lib

KEEP = 'proxy_http_version 1.1; proxy_set_header Connection "";'


def nginx_body(port, gh_port):
    """nginx in front of the upstream, asking gatehouse about every request as the recipe in docs/forward-auth.md does."""
    return f"""
  upstream up {{ server 127.0.0.1:{lib.UP}; keepalive 64; }}
  upstream gh {{ server 127.0.0.1:{gh_port}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      auth_request /_gatehouse;
      auth_request_set $auth_subject $upstream_http_x_auth_subject;
      auth_request_set $auth_roles $upstream_http_x_auth_roles;
      auth_request_set $auth_scopes $upstream_http_x_auth_scopes;
      proxy_set_header X-Auth-Subject $auth_subject;
      proxy_set_header X-Auth-Roles $auth_roles;
      proxy_set_header X-Auth-Scopes $auth_scopes;
      proxy_set_header Authorization "";
      proxy_pass http://up; {KEEP}
    }}
    location = /_gatehouse {{
      internal;
      proxy_pass http://gh/oauth/forward-auth;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header Host $http_host;
      proxy_set_header X-Original-URI $request_uri;
      proxy_set_header X-Original-Method $request_method;
      {KEEP}
    }}
  }}
"""


def run(nginx_alone, token, rounds, duration, conns, env):
    """{"nginx alone": {...}, "nginx + gatehouse forward-auth": {...}}: medians of req/s and CPU µs per
    request of nginx and of gatehouse. `nginx_alone` is the running passthrough nginx (a lib.Proc)."""
    ports = (lib.free_port(), lib.free_port(), lib.free_port())
    gh = lib.Proc("gatehouse-fa", lib.gatehouse_conf("gatehouse-fa", ports, routes_extra="\n[forward_auth]\n",
                                                     server_extra='trusted_proxies = ["127.0.0.1"]'),
                  ports[0], 0, env=env)
    port = lib.free_port()
    ngx = lib.Proc("nginx-fa", lib.nginx_conf("nginx-fa", nginx_body(port, ports[0])), port, 0)
    try:
        url = f"http://127.0.0.1:{port}/auth/x"
        if lib.http("GET", url) != 401 or lib.http("GET", url, token) != 200:
            raise RuntimeError("nginx with forward auth does not tell a token from none")
        cases = {"nginx alone": (nginx_alone, None), "nginx + gatehouse forward-auth": (ngx, gh)}
        got = {name: [] for name in cases}
        for _ in range(rounds):
            for name, (front, auth) in cases.items():
                pids = [front.p.pid] + ([auth.p.pid] if auth else [])
                before = [lib.cpu_ticks(p) for p in pids]
                rps, _, errors, total = lib.wrk(front.port, "/auth/x", duration, conns, token=token)
                us = [(lib.cpu_ticks(p) - b) / lib.CLK_TCK * 1e6 / max(total, 1) for p, b in zip(pids, before)]
                if errors:
                    raise RuntimeError(f"{name}: {errors} requests were not answered 2xx")
                got[name].append((rps, us[0], us[1] if auth else 0.0))
                lib.log(f"forward auth: {name:<32} {rps:8.0f} req/s  nginx {us[0]:6.1f} µs"
                        + (f"  gatehouse {us[1]:6.1f} µs" if auth else ""))
        med = lambda v, i: statistics.median(x[i] for x in v)  # noqa: E731
        return {name: {"rps": med(v, 0), "nginx_us": med(v, 1), "gatehouse_us": med(v, 2)} for name, v in got.items()}
    finally:
        ngx.stop()
        gh.stop()
