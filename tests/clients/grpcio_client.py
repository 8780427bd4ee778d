"""grpcio (the gRPC C core) with its defaults against a running gatehouse, over TLS and h2c: a call
with a valid token goes through, and each refusal arrives as its gRPC status with its message.
The calls are generic (raw bytes, no generated code) to the test server's `test.Echo` service.
Prints "ok: <transport>: <case>" per case; any failure exits non-zero.
Input (environment): GRPC_TLS_TARGET and GRPC_H2C_TARGET (host:port), GRPC_CA (the gateway's
certificate, PEM), GRPC_TOKEN (an access token with the role "service").
"""

import os
import sys

import grpc

# no proxy from the environment: the gateway is on this machine
OPTIONS = [("grpc.enable_http_proxy", 0)]


def ok(what):
    print(f"ok: {what}", flush=True)


def must(cond, what):
    if not cond:
        sys.exit(f"failed: {what}")


def msg(text):
    """A `Msg { text }` protobuf message: field 1, length-delimited."""
    data = text.encode()
    assert len(data) < 128
    return b"\x0a" + bytes([len(data)]) + data


def text_of(reply):
    must(reply[:1] == b"\x0a" and reply[1] == len(reply) - 2, f"reply {reply!r}")
    return reply[2:].decode()


def call(channel, path, token=None):
    """Calls `path`; returns (status code, details, reply text)."""
    metadata = [("authorization", f"Bearer {token}")] if token else []
    unary = channel.unary_unary(path, request_serializer=None, response_deserializer=None)
    try:
        reply = unary(msg("hi"), metadata=metadata, timeout=10)
        return grpc.StatusCode.OK, "", text_of(reply)
    except grpc.RpcError as e:
        return e.code(), e.details(), None


def check(name, channel, token):
    code, _, text = call(channel, "/test.Echo/Say", token)
    must(code == grpc.StatusCode.OK and text == "hi from svc (service)", f"{name}: {code} {text}")
    ok(f"{name}: a valid token is let through")

    # a route that strips its prefix (/v1) still names the service's authority to the h2 upstream
    code, _, text = call(channel, "/v1/test.Echo/Say", token)
    must(code == grpc.StatusCode.OK and text == "hi from svc (service)", f"{name}: /v1 gave {code} {text}")
    ok(f"{name}: a prefix-stripping route reaches the service")

    code, details, _ = call(channel, "/test.Echo/Say")
    must(code == grpc.StatusCode.UNAUTHENTICATED, f"{name}: no token gave {code} {details}")
    must(details == "a bearer token is required", f"{name}: {details}")
    ok(f"{name}: no token is UNAUTHENTICATED")

    code, details, _ = call(channel, "/test.Echo/Admin", token)
    must(code == grpc.StatusCode.PERMISSION_DENIED, f"{name}: the wrong role gave {code} {details}")
    ok(f"{name}: the wrong role is PERMISSION_DENIED")

    code, details, _ = call(channel, "/dead.Svc/Method")
    must(code == grpc.StatusCode.UNAVAILABLE, f"{name}: a dead upstream gave {code} {details}")
    must(details == "the upstream could not be reached", f"{name}: {details}")
    ok(f"{name}: a dead upstream is UNAVAILABLE")


token = os.environ["GRPC_TOKEN"]
with open(os.environ["GRPC_CA"], "rb") as f:
    creds = grpc.ssl_channel_credentials(root_certificates=f.read())
with grpc.secure_channel(os.environ["GRPC_TLS_TARGET"], creds, options=OPTIONS) as channel:
    check("tls", channel, token)
with grpc.insecure_channel(os.environ["GRPC_H2C_TARGET"], options=OPTIONS) as channel:
    check("h2c", channel, token)
