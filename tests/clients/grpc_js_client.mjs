// @grpc/grpc-js with its defaults against a running gatehouse, over TLS and h2c: a call with a
// valid token goes through, and each refusal arrives as its gRPC status with its message.
// The calls are generic (raw bytes, no generated code) to the test server's `test.Echo` service.
// Prints "ok: <transport>: <case>" per case; any failure exits non-zero.
// Input (environment): GRPC_TLS_TARGET and GRPC_H2C_TARGET (host:port), GRPC_CA (the gateway's
// certificate, PEM), GRPC_TOKEN (an access token with the role "service").

import { readFileSync } from "node:fs";
import grpc from "@grpc/grpc-js";

// no proxy from the environment: the gateway is on this machine
const OPTIONS = { "grpc.enable_http_proxy": 0 };
const identity = (b) => b;

function ok(what) {
  console.log(`ok: ${what}`);
}

function must(cond, what) {
  if (!cond) {
    console.error(`failed: ${what}`);
    process.exit(1);
  }
}

// A `Msg { text }` protobuf message: field 1, length-delimited.
function msg(text) {
  const data = Buffer.from(text);
  return Buffer.concat([Buffer.from([0x0a, data.length]), data]);
}

function textOf(reply) {
  must(reply[0] === 0x0a && reply[1] === reply.length - 2, `reply ${reply.toString("hex")}`);
  return reply.subarray(2).toString();
}

// Calls `path`; resolves to { code, details, text }.
function call(client, path, token) {
  const metadata = new grpc.Metadata();
  if (token) metadata.set("authorization", `Bearer ${token}`);
  const deadline = Date.now() + 10_000;
  return new Promise((resolve) => {
    client.makeUnaryRequest(path, identity, identity, msg("hi"), metadata, { deadline }, (err, reply) => {
      if (err) resolve({ code: err.code, details: err.details });
      else resolve({ code: grpc.status.OK, details: "", text: textOf(reply) });
    });
  });
}

async function check(name, client, token) {
  let r = await call(client, "/test.Echo/Say", token);
  must(r.code === grpc.status.OK && r.text === "hi from svc (service)", `${name}: ${JSON.stringify(r)}`);
  ok(`${name}: a valid token is let through`);

  // a route that strips its prefix (/v1) still names the service's authority to the h2 upstream
  r = await call(client, "/v1/test.Echo/Say", token);
  must(r.code === grpc.status.OK && r.text === "hi from svc (service)", `${name}: /v1 gave ${JSON.stringify(r)}`);
  ok(`${name}: a prefix-stripping route reaches the service`);

  r = await call(client, "/test.Echo/Say");
  must(r.code === grpc.status.UNAUTHENTICATED, `${name}: no token gave ${JSON.stringify(r)}`);
  must(r.details === "a bearer token is required", `${name}: ${r.details}`);
  ok(`${name}: no token is UNAUTHENTICATED`);

  r = await call(client, "/test.Echo/Admin", token);
  must(r.code === grpc.status.PERMISSION_DENIED, `${name}: the wrong role gave ${JSON.stringify(r)}`);
  ok(`${name}: the wrong role is PERMISSION_DENIED`);

  r = await call(client, "/dead.Svc/Method");
  must(r.code === grpc.status.UNAVAILABLE, `${name}: a dead upstream gave ${JSON.stringify(r)}`);
  must(r.details === "the upstream could not be reached", `${name}: ${r.details}`);
  ok(`${name}: a dead upstream is UNAVAILABLE`);
  client.close();
}

const token = process.env.GRPC_TOKEN;
const tls = grpc.credentials.createSsl(readFileSync(process.env.GRPC_CA));
await check("tls", new grpc.Client(process.env.GRPC_TLS_TARGET, tls, OPTIONS), token);
const plain = grpc.credentials.createInsecure();
await check("h2c", new grpc.Client(process.env.GRPC_H2C_TARGET, plain, OPTIONS), token);
