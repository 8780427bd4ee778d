// The TypeScript SDK's MCP client, driven by the gateway's Rust tests: connects to MCP_URL with
// Streamable HTTP, lists tools, calls echo, calls slow_count with progress, calls
// test_reconnection (the server drops the stream; the client resumes it), ends the session, and
// prints one JSON line per step (`at` = ms since the start) for the test to assert on. With
// MCP_OAUTH_CLIENT (a pre-registered client), MCP_OAUTH_METADATA_URL (its metadata document) or
// MCP_OAUTH_REGISTER=1 it signs in first with the SDK's OAuth support (mcp_oauth.mjs), and lets its
// token expire; with MCP_STEP_UP_TOOL it then calls that tool, which needs a scope it lacks (step
// up), and hands its token to the test (`hold`) before calling again.
import dns from 'node:dns';
import { createInterface } from 'node:readline';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { auth, UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { CallToolResultSchema } from '@modelcontextprotocol/sdk/types.js';
import { TestOAuthProvider } from './mcp_oauth.mjs';

// the gateway listens on 127.0.0.1; "localhost" must not resolve to ::1 first
dns.setDefaultResultOrder('ipv4first');

const start = performance.now();
const say = (step, fields = {}) =>
  console.log(JSON.stringify({ step, at: Math.round(performance.now() - start), ...fields }));
const textOf = (result) => result.content.find((c) => c.type === 'text')?.text;
const echo = async (client) =>
  JSON.parse(textOf(await client.callTool({ name: 'echo', arguments: { text: 'hello' } })));

// Every HTTP exchange the SDK makes (MCP, metadata, registration, token), in order, with the
// challenge of a refusal; the last challenge is kept.
let lastChallenge;
async function loggedFetch(url, init) {
  const r = await fetch(url, init);
  const challenge = r.headers.get('www-authenticate') ?? undefined;
  if (challenge) lastChallenge = challenge;
  say('http', { method: init?.method ?? 'GET', url: String(url), status: r.status, challenge });
  return r;
}

/** Waits for a line on stdin: the test saying go on. */
async function line() {
  const lines = createInterface({ input: process.stdin });
  await lines[Symbol.asyncIterator]().next();
  lines.close();
}

/**
 * Calls `tool`, which needs a scope the token lacks. SDK 1.32 answers the 403 insufficient_scope
 * by refreshing the token, which cannot widen its scope (RFC 6749 §6), and then gives up; the
 * application then does what the SDK's auth() is for: drops the tokens, authorizes again with the
 * scope and resource metadata the challenge names, and calls again.
 */
async function stepUp(client, transport, provider, tool) {
  const call = async () => textOf(await client.callTool({ name: tool, arguments: { user: 'bob' } }));
  try {
    return { text: await call(), by: 'sdk' };
  } catch (e) {
    if (e.code !== 403) throw e;
    const field = (k) => new RegExp(`${k}="([^"]*)"`).exec(lastChallenge ?? '')?.[1];
    const [scope, metadata] = [field('scope'), field('resource_metadata')];
    await provider.invalidateCredentials('tokens');
    const serverUrl = new URL(process.env.MCP_URL);
    const resourceMetadataUrl = metadata && new URL(metadata);
    const r = await auth(provider, { serverUrl, scope, resourceMetadataUrl, fetchFn: loggedFetch });
    if (r !== 'REDIRECT') throw new Error(`auth() answered ${r}`);
    await transport.finishAuth(await provider.code());
    return { text: await call(), by: 'application', sdk_error: e.message, scope };
  }
}

/** Connects, signing in through `provider` when the server asks for a token. */
async function connect(url, { provider, requestInit }) {
  for (let attempt = 0; ; attempt++) {
    const transport = new StreamableHTTPClientTransport(url, { authProvider: provider, requestInit, fetch: loggedFetch });
    const client = new Client({ name: 'gatehouse-test-client', version: '1.0.0' });
    try {
      await client.connect(transport);
      return { client, transport };
    } catch (e) {
      if (!(e instanceof UnauthorizedError) || !provider || attempt > 0) throw e;
      // the SDK sent the user to the authorization endpoint; the code comes back to the callback
      await transport.finishAuth(await provider.code());
    }
  }
}

async function main() {
  // MCP_FORGED_SUBJECT: an identity header the client makes up, which a gateway must not pass on
  const forged = process.env.MCP_FORGED_SUBJECT;
  const requestInit = forged ? { headers: { 'X-Auth-Subject': forged } } : undefined;
  const { MCP_OAUTH_CLIENT: clientId, MCP_OAUTH_METADATA_URL: metadataUrl } = process.env;
  const provider = clientId || metadataUrl || process.env.MCP_OAUTH_REGISTER
    ? await TestOAuthProvider.listen({ clientId, metadataUrl }, Number(process.env.MCP_CALLBACK_PORT), say)
    : undefined;
  const { client, transport } = await connect(new URL(process.env.MCP_URL), { provider, requestInit });
  say('connected', { session: transport.sessionId });

  // MCP_REFUSED_TOOL: a tool the gateway's rules keep from this client, whose refusal is shown
  const refused = process.env.MCP_REFUSED_TOOL;
  if (refused) {
    const outcome = await client.callTool({ name: refused, arguments: { user: 'bob' } }).then(
      (r) => ({ text: textOf(r) }),
      (e) => ({ error: e.message, code: e.code ?? null }),
    );
    say('refused', outcome);
  }

  const { tools } = await client.listTools();
  say('tools', { names: tools.map((t) => t.name) });
  say('echo', await echo(client));

  const counted = await client.callTool(
    { name: 'slow_count', arguments: { n: 5, interval_ms: 200 } },
    CallToolResultSchema,
    { onprogress: (p) => say('progress', { progress: p.progress, total: p.total }) },
  );
  say('result', { text: textOf(counted) });

  if (provider) {
    // the test lets the access token expire (a line on stdin); the next call must refresh it
    say('expire');
    await line();
    say('after-expiry', { ...(await echo(client)), ...provider.counts() });
  }

  const stepUpTool = process.env.MCP_STEP_UP_TOOL;
  if (provider && stepUpTool) {
    say('step-up', { ...(await stepUp(client, transport, provider, stepUpTool)), ...provider.counts() });
    // the test tries the token elsewhere and revokes it; the next call meets the revocation
    say('hold', { token: (await provider.tokens()).access_token, client_id: provider.clientInformation().client_id });
    await line();
    say('after-revocation', { ...(await echo(client)), ...provider.counts() });
  }

  const resumed = await client.callTool({ name: 'test_reconnection', arguments: {} });
  say('reconnection', { text: textOf(resumed) });

  const session = transport.sessionId;
  await transport.terminateSession();
  say('terminated', { session, left: transport.sessionId ?? null });
  await client.close();
  provider?.close();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
