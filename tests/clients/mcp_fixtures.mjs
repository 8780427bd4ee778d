// What @modelcontextprotocol/conformance's server scenarios call, as plain data for mcp_server.mjs:
// the tools, resources and prompts its "everything server" (conformance v0.1.16) offers.
import {
  CreateMessageResultSchema,
  ElicitResultSchema,
} from '@modelcontextprotocol/sdk/types.js';

// a 1x1 red PNG and a minimal WAV
const IMAGE = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==';
const AUDIO = 'UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA=';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const text = (t) => ({ content: [{ type: 'text', text: t }] });
const NO_ARGS = { type: 'object', properties: {} };
const stringArg = (name, description) => ({
  type: 'object',
  properties: { [name]: { type: 'string', description } },
  required: [name],
});

// Elicitation forms: default values of every primitive type (SEP-1034), every enum shape (SEP-1330).
const DEFAULTS_FORM = {
  type: 'object',
  properties: {
    name: { type: 'string', description: 'User name', default: 'John Doe' },
    age: { type: 'integer', description: 'User age', default: 30 },
    score: { type: 'number', description: 'User score', default: 95.5 },
    status: { type: 'string', description: 'User status', enum: ['active', 'inactive', 'pending'], default: 'active' },
    verified: { type: 'boolean', description: 'Verification status', default: true },
  },
  required: [],
};
const titled = (prefix, titles) => titles.map((title, i) => ({ const: `${prefix}${i + 1}`, title }));
const ENUMS_FORM = {
  type: 'object',
  properties: {
    untitledSingle: { type: 'string', description: 'Select one option', enum: ['option1', 'option2', 'option3'] },
    titledSingle: {
      type: 'string',
      description: 'Select one option with titles',
      oneOf: titled('value', ['First Option', 'Second Option', 'Third Option']),
    },
    legacyEnum: {
      type: 'string',
      description: 'Select one option (legacy)',
      enum: ['opt1', 'opt2', 'opt3'],
      enumNames: ['Option One', 'Option Two', 'Option Three'],
    },
    untitledMulti: {
      type: 'array',
      description: 'Select multiple options',
      minItems: 1,
      maxItems: 3,
      items: { type: 'string', enum: ['option1', 'option2', 'option3'] },
    },
    titledMulti: {
      type: 'array',
      description: 'Select multiple options with titles',
      minItems: 1,
      maxItems: 3,
      items: { anyOf: titled('value', ['First Choice', 'Second Choice', 'Third Choice']) },
    },
  },
  required: [],
};

async function elicit(extra, message, requestedSchema) {
  try {
    const r = await extra.sendRequest(
      { method: 'elicitation/create', params: { message, requestedSchema } },
      ElicitResultSchema,
    );
    return text(`Elicitation completed: action=${r.action}, content=${JSON.stringify(r.content || {})}`);
  } catch (e) {
    return text(`Elicitation not supported or error: ${e.message}`);
  }
}

/** Each tool: its listing (name, description, inputSchema) and `run(args, extra)`. */
export const tools = [
  { name: 'test_simple_text', description: 'Tests simple text content response', inputSchema: NO_ARGS,
    run: async () => text('This is a simple text response for testing.') },
  { name: 'test_image_content', description: 'Tests image content response', inputSchema: NO_ARGS,
    run: async () => ({ content: [{ type: 'image', data: IMAGE, mimeType: 'image/png' }] }) },
  { name: 'test_audio_content', description: 'Tests audio content response', inputSchema: NO_ARGS,
    run: async () => ({ content: [{ type: 'audio', data: AUDIO, mimeType: 'audio/wav' }] }) },
  { name: 'test_embedded_resource', description: 'Tests embedded resource content response', inputSchema: NO_ARGS,
    run: async () => ({ content: [{ type: 'resource', resource: {
      uri: 'test://embedded-resource', mimeType: 'text/plain', text: 'This is an embedded resource content.' } }] }) },
  { name: 'test_multiple_content_types', description: 'Tests response with text, image and resource', inputSchema: NO_ARGS,
    run: async () => ({ content: [
      { type: 'text', text: 'Multiple content types test:' },
      { type: 'image', data: IMAGE, mimeType: 'image/png' },
      { type: 'resource', resource: { uri: 'test://mixed-content-resource', mimeType: 'application/json',
        text: JSON.stringify({ test: 'data', value: 123 }) } },
    ] }) },
  { name: 'test_tool_with_logging', description: 'Tests tool that emits log messages during execution', inputSchema: NO_ARGS,
    run: async (_args, extra) => {
      for (const [i, data] of ['Tool execution started', 'Tool processing data', 'Tool execution completed'].entries()) {
        if (i > 0) await sleep(50);
        await extra.sendNotification({ method: 'notifications/message', params: { level: 'info', data } });
      }
      return text('Tool with logging executed successfully');
    } },
  { name: 'test_tool_with_progress', description: 'Tests tool that reports progress notifications', inputSchema: NO_ARGS,
    run: async (_args, extra) => {
      const progressToken = extra._meta?.progressToken ?? 0;
      for (const progress of [0, 50, 100]) {
        if (progress > 0) await sleep(50);
        await extra.sendNotification({ method: 'notifications/progress', params: {
          progressToken, progress, total: 100, message: `Completed step ${progress} of 100` } });
      }
      return text(String(progressToken));
    } },
  { name: 'test_error_handling', description: 'Tests error response handling', inputSchema: NO_ARGS,
    run: async () => ({ isError: true, content: [{ type: 'text', text: 'This tool intentionally returns an error for testing' }] }) },
  // SEP-1699: the server closes the call's stream; the client comes back with Last-Event-ID
  { name: 'test_reconnection', description: 'Closes the SSE stream mid-call; the result comes after the client reconnects', inputSchema: NO_ARGS,
    run: async (_args, extra) => {
      extra.closeSSEStream?.();
      await sleep(100);
      return text('Reconnection test completed successfully. If you received this, the client properly reconnected after stream closure.');
    } },
  { name: 'test_sampling', description: 'Tests server-initiated sampling (LLM completion request)',
    inputSchema: stringArg('prompt', 'The prompt to send to the LLM'),
    run: async (args, extra) => {
      try {
        const r = await extra.sendRequest({ method: 'sampling/createMessage', params: {
          messages: [{ role: 'user', content: { type: 'text', text: args.prompt } }], maxTokens: 100 } },
        CreateMessageResultSchema);
        return text(`LLM response: ${r.content?.text || 'No response'}`);
      } catch (e) {
        return text(`Sampling not supported or error: ${e.message}`);
      }
    } },
  { name: 'test_elicitation', description: 'Tests server-initiated elicitation (user input request)',
    inputSchema: stringArg('message', 'The message to show the user'),
    run: async (args, extra) => elicit(extra, args.message, {
      type: 'object', properties: { response: { type: 'string', description: "User's response" } }, required: ['response'] }) },
  { name: 'test_elicitation_sep1034_defaults', description: 'Tests elicitation with default values per SEP-1034', inputSchema: NO_ARGS,
    run: async (_args, extra) => elicit(extra, 'Please review and update the form fields with defaults', DEFAULTS_FORM) },
  { name: 'test_elicitation_sep1330_enums', description: 'Tests elicitation with enum schema improvements per SEP-1330', inputSchema: NO_ARGS,
    run: async (_args, extra) => elicit(extra, 'Please select options from the enum fields', ENUMS_FORM) },
  // SEP-1613: the listing keeps $schema, $defs and additionalProperties as written
  { name: 'json_schema_2020_12_tool', description: 'Tool with JSON Schema 2020-12 features (SEP-1613)',
    inputSchema: {
      $schema: 'https://json-schema.org/draft/2020-12/schema',
      type: 'object',
      $defs: { address: { type: 'object', properties: { street: { type: 'string' }, city: { type: 'string' } } } },
      properties: { name: { type: 'string' }, address: { $ref: '#/$defs/address' } },
      additionalProperties: false,
    },
    run: async (args) => text(`JSON Schema 2020-12 tool called with: ${JSON.stringify(args)}`) },
];

/** Fixed resources: listing and contents. */
export const resources = [
  { uri: 'test://static-text', name: 'static-text', title: 'Static Text Resource', mimeType: 'text/plain',
    description: 'A static text resource for testing', text: 'This is the content of the static text resource.' },
  { uri: 'test://static-binary', name: 'static-binary', title: 'Static Binary Resource', mimeType: 'image/png',
    description: 'A static binary resource (image) for testing', blob: IMAGE },
  { uri: 'test://watched-resource', name: 'watched-resource', title: 'Watched Resource', mimeType: 'text/plain',
    description: 'A resource clients may subscribe to', text: 'Watched resource content' },
];

export const templates = [
  { uriTemplate: 'test://template/{id}/data', name: 'template', title: 'Resource Template', mimeType: 'application/json',
    description: 'A resource template with parameter substitution' },
];

/** The contents of a resource by URI, templates included; undefined for an unknown URI. */
export function readResource(uri) {
  const fixed = resources.find((r) => r.uri === uri);
  if (fixed) {
    const { uri: u, mimeType, text: t, blob } = fixed;
    return { contents: [t !== undefined ? { uri: u, mimeType, text: t } : { uri: u, mimeType, blob }] };
  }
  const m = /^test:\/\/template\/([^/]+)\/data$/.exec(uri);
  if (!m) return undefined;
  const data = { id: m[1], templateTest: true, data: `Data for ID: ${m[1]}` };
  return { contents: [{ uri, mimeType: 'application/json', text: JSON.stringify(data) }] };
}

const user = (content) => ({ role: 'user', content });
const arg = (name, description) => ({ name, description, required: true });

/** Each prompt: its listing and `get(args)`. */
export const prompts = [
  { name: 'test_simple_prompt', title: 'Simple Test Prompt', description: 'A simple prompt without arguments',
    get: () => [user({ type: 'text', text: 'This is a simple prompt for testing.' })] },
  { name: 'test_prompt_with_arguments', title: 'Prompt With Arguments', description: 'A prompt with required arguments',
    arguments: [arg('arg1', 'First test argument'), arg('arg2', 'Second test argument')],
    get: (a) => [user({ type: 'text', text: `Prompt with arguments: arg1='${a.arg1}', arg2='${a.arg2}'` })] },
  { name: 'test_prompt_with_embedded_resource', title: 'Prompt With Embedded Resource',
    description: 'A prompt that includes an embedded resource', arguments: [arg('resourceUri', 'URI of the resource to embed')],
    get: (a) => [
      user({ type: 'resource', resource: { uri: a.resourceUri, mimeType: 'text/plain', text: 'Embedded resource content for testing.' } }),
      user({ type: 'text', text: 'Please process the embedded resource above.' }),
    ] },
  { name: 'test_prompt_with_image', title: 'Prompt With Image', description: 'A prompt that includes image content',
    get: () => [
      user({ type: 'image', data: IMAGE, mimeType: 'image/png' }),
      user({ type: 'text', text: 'Please analyze the image above.' }),
    ] },
];
