// The TypeScript SDK's MCP client, driven by the gateway's Rust tests: connects to MCP_URL with
// Streamable HTTP, lists tools, calls echo, calls slow_count with progress, calls
// test_reconnection (the server drops the stream; the client resumes it), ends the session, and
// prints one JSON line per step (`at` = ms since the start) for the test to assert on.
import dns from 'node:dns';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CallToolResultSchema } from '@modelcontextprotocol/sdk/types.js';

// the gateway listens on 127.0.0.1; "localhost" must not resolve to ::1 first
dns.setDefaultResultOrder('ipv4first');

const start = performance.now();
const say = (step, fields = {}) =>
  console.log(JSON.stringify({ step, at: Math.round(performance.now() - start), ...fields }));
const textOf = (result) => result.content.find((c) => c.type === 'text')?.text;

/** Runs the session's steps on a connected client. */
export async function exercise(client, transport) {
  const { tools } = await client.listTools();
  say('tools', { names: tools.map((t) => t.name) });

  const echoed = JSON.parse(textOf(await client.callTool({ name: 'echo', arguments: { text: 'hello' } })));
  say('echo', echoed);

  const counted = await client.callTool(
    { name: 'slow_count', arguments: { n: 5, interval_ms: 200 } },
    CallToolResultSchema,
    { onprogress: (p) => say('progress', { progress: p.progress, total: p.total }) },
  );
  say('result', { text: textOf(counted) });

  const resumed = await client.callTool({ name: 'test_reconnection', arguments: {} });
  say('reconnection', { text: textOf(resumed) });

  const session = transport.sessionId;
  await transport.terminateSession();
  say('terminated', { session, left: transport.sessionId ?? null });
}

async function main() {
  // MCP_FORGED_SUBJECT: an identity header the client makes up, which a gateway must not pass on
  const forged = process.env.MCP_FORGED_SUBJECT;
  const requestInit = forged ? { headers: { 'X-Auth-Subject': forged } } : undefined;
  const transport = new StreamableHTTPClientTransport(new URL(process.env.MCP_URL), { requestInit });
  const client = new Client({ name: 'gatehouse-test-client', version: '1.0.0' });
  await client.connect(transport);
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
  await exercise(client, transport);
  await client.close();
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
