// Lets @modelcontextprotocol/conformance run on Node 20 (`node --import ./node20_loader.mjs …`).
// The package imports fs.globSync, which Node 22 added; under Node 20 its `fs` import is served a
// module with all of node:fs plus globSync from the pinned glob package (same call shape for the
// one use it has: glob('**/checks.json', { cwd })). Other modules get node:fs untouched.
import { register } from 'node:module';
import { isMainThread } from 'node:worker_threads';

const SHIM = 'gatehouse-node20:fs';

// The hooks run in a thread of their own: register them from the main thread only.
if (isMainThread) register(import.meta.url);

export async function resolve(specifier, context, next) {
  const fromConformance = context.parentURL?.includes('/@modelcontextprotocol/conformance/');
  if (fromConformance && (specifier === 'fs' || specifier === 'node:fs')) {
    const glob = await next('glob', context);
    return { url: `${SHIM}?${encodeURIComponent(glob.url)}`, shortCircuit: true };
  }
  return next(specifier, context);
}

export async function load(url, context, next) {
  if (!url.startsWith(`${SHIM}?`)) return next(url, context);
  const glob = decodeURIComponent(url.slice(SHIM.length + 1));
  const source = [
    "export * from 'node:fs';",
    "export { default } from 'node:fs';",
    `export { globSync } from ${JSON.stringify(glob)};`,
  ].join('\n');
  return { format: 'module', source, shortCircuit: true };
}
