// An MCP server on the official TypeScript SDK for the gateway's MCP tests: Streamable HTTP at /mcp
// on 127.0.0.1:<port> (argv[2]), with sessions (Mcp-Session-Id, DELETE), resumable SSE streams and
// the SDK's DNS-rebinding guard. Tools: echo (shows the X-Auth-Subject it received), delete_user,
// slow_count (progress events ~200 ms apart before its result), and the conformance fixtures
// (mcp_fixtures.mjs). Prints "ready" once it listens; logs to stderr.
import { randomUUID } from 'node:crypto';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { createMcpExpressApp } from '@modelcontextprotocol/sdk/server/express.js';
import {
  CallToolRequestSchema,
  CompleteRequestSchema,
  ErrorCode,
  GetPromptRequestSchema,
  ListPromptsRequestSchema,
  ListResourcesRequestSchema,
  ListResourceTemplatesRequestSchema,
  ListToolsRequestSchema,
  McpError,
  ReadResourceRequestSchema,
  SetLevelRequestSchema,
  SubscribeRequestSchema,
  UnsubscribeRequestSchema,
} from '@modelcontextprotocol/sdk/types.js';
import * as fixtures from './mcp_fixtures.mjs';

const port = Number(process.argv[2]);
const log = (...a) => console.error('mcp-server:', ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const text = (t) => ({ content: [{ type: 'text', text: t }] });

const ownTools = [
  { name: 'echo', description: 'Returns its text and the X-Auth-Subject header the server received',
    inputSchema: { type: 'object', properties: { text: { type: 'string' } }, required: ['text'] },
    run: async (args, extra) => {
      const subject = extra.requestInfo?.headers?.['x-auth-subject'] ?? null;
      return text(JSON.stringify({ text: args.text, subject }));
    } },
  { name: 'delete_user', description: 'Pretends to delete a user (for tool rules)',
    inputSchema: { type: 'object', properties: { user: { type: 'string' } }, required: ['user'] },
    run: async (args) => text(`deleted ${args.user}`) },
  { name: 'slow_count', description: 'Counts to n, one progress notification every interval_ms, then answers',
    inputSchema: { type: 'object', properties: { n: { type: 'integer' }, interval_ms: { type: 'integer' } } },
    run: async (args, extra) => {
      const n = args.n ?? 5;
      const every = args.interval_ms ?? 200;
      const progressToken = extra._meta?.progressToken;
      for (let i = 1; i <= n; i++) {
        await sleep(every);
        if (progressToken !== undefined) {
          await extra.sendNotification({ method: 'notifications/progress',
            params: { progressToken, progress: i, total: n, message: `counted ${i}` } });
        }
      }
      return text(`counted to ${n}`);
    } },
];
const tools = [...ownTools, ...fixtures.tools];

// The low-level Server, not McpServer: tools/list must hand out the fixtures' JSON Schemas as
// written (SEP-1613), which McpServer would rebuild from zod.
function mcpServer() {
  const server = new Server(
    { name: 'gatehouse-test-mcp-server', version: '1.0.0' },
    { capabilities: {
      tools: { listChanged: true },
      resources: { subscribe: true, listChanged: true },
      prompts: { listChanged: true },
      logging: {},
      completions: {},
    } },
  );
  server.setRequestHandler(ListToolsRequestSchema, async () => ({
    tools: tools.map(({ name, description, inputSchema }) => ({ name, description, inputSchema })),
  }));
  server.setRequestHandler(CallToolRequestSchema, async (req, extra) => {
    const tool = tools.find((t) => t.name === req.params.name);
    if (!tool) throw new McpError(ErrorCode.InvalidParams, `Unknown tool: ${req.params.name}`);
    try {
      return await tool.run(req.params.arguments ?? {}, extra);
    } catch (e) {
      return { isError: true, content: [{ type: 'text', text: String(e.message || e) }] };
    }
  });
  server.setRequestHandler(ListResourcesRequestSchema, async () => ({
    resources: fixtures.resources.map(({ uri, name, title, description, mimeType }) => ({ uri, name, title, description, mimeType })),
  }));
  server.setRequestHandler(ListResourceTemplatesRequestSchema, async () => ({ resourceTemplates: fixtures.templates }));
  server.setRequestHandler(ReadResourceRequestSchema, async (req) => {
    const found = fixtures.readResource(req.params.uri);
    if (!found) throw new McpError(ErrorCode.InvalidParams, `Unknown resource: ${req.params.uri}`);
    return found;
  });
  server.setRequestHandler(SubscribeRequestSchema, async () => ({}));
  server.setRequestHandler(UnsubscribeRequestSchema, async () => ({}));
  server.setRequestHandler(ListPromptsRequestSchema, async () => ({
    prompts: fixtures.prompts.map(({ name, title, description, arguments: a }) => ({ name, title, description, arguments: a })),
  }));
  server.setRequestHandler(GetPromptRequestSchema, async (req) => {
    const p = fixtures.prompts.find((x) => x.name === req.params.name);
    if (!p) throw new McpError(ErrorCode.InvalidParams, `Unknown prompt: ${req.params.name}`);
    return { messages: p.get(req.params.arguments ?? {}) };
  });
  server.setRequestHandler(SetLevelRequestSchema, async () => ({}));
  server.setRequestHandler(CompleteRequestSchema, async () => ({ completion: { values: [], total: 0, hasMore: false } }));
  return server;
}

// Events kept for resumption (SEP-1699): a client that lost a stream asks for what followed its
// Last-Event-ID.
const events = [];
const eventStore = {
  async storeEvent(streamId, message) {
    const eventId = `${streamId}::${String(events.length).padStart(8, '0')}`;
    events.push({ eventId, streamId, message });
    return eventId;
  },
  async replayEventsAfter(lastEventId, { send }) {
    const streamId = lastEventId.split('::')[0];
    for (const e of events) {
      if (e.streamId === streamId && e.eventId > lastEventId && Object.keys(e.message).length > 0) {
        await send(e.eventId, e.message);
      }
    }
    return streamId;
  },
};

const sessions = new Map();
const app = createMcpExpressApp();

// A request naming no session is 400; one naming a session that ended (DELETE) or never was, 404.
const noSession = (req, res) => {
  const [status, message] = req.headers['mcp-session-id'] ? [404, 'Session not found'] : [400, 'Missing session ID'];
  res.status(status).json({ jsonrpc: '2.0', error: { code: -32000, message }, id: null });
};

app.post('/mcp', async (req, res) => {
  const id = req.headers['mcp-session-id'];
  try {
    if (id && sessions.has(id)) return await sessions.get(id).handleRequest(req, res, req.body);
    if (id || req.body?.method !== 'initialize') return noSession(req, res);
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      eventStore,
      retryInterval: 500,
      onsessioninitialized: (sid) => sessions.set(sid, transport),
    });
    transport.onclose = () => {
      if (transport.sessionId) sessions.delete(transport.sessionId);
    };
    await mcpServer().connect(transport);
    await transport.handleRequest(req, res, req.body);
  } catch (e) {
    log('POST failed:', e);
    if (!res.headersSent) {
      res.status(500).json({ jsonrpc: '2.0', error: { code: -32603, message: 'Internal server error' }, id: null });
    }
  }
});

// GET opens (or resumes) a session's stream; DELETE ends the session.
for (const method of ['get', 'delete']) {
  app[method]('/mcp', async (req, res) => {
    const transport = sessions.get(req.headers['mcp-session-id']);
    if (!transport) return noSession(req, res);
    try {
      await transport.handleRequest(req, res);
    } catch (e) {
      log(`${method} failed:`, e);
      if (!res.headersSent) res.status(500).end();
    }
  });
}

const listener = app.listen(port, '127.0.0.1', () => console.log('ready'));
listener.on('error', (e) => {
  console.log(`failed: ${e.message}`);
  process.exit(1);
});
