// openid-client with its DPoP support (RFC 9449) against a running gatehouse. FLOWS=bound:
// client_credentials and the authorization code bound to a key it makes, calls through the gateway
// with the proofs it makes itself, userinfo, a refresh of a bound family (and one with another key,
// refused). FLOWS=nonces, against a gateway with nonces on: the nonce challenges it answers on its
// own. Prints "ok: <flow>" per flow; any failure exits non-zero.
// Input (environment): GATEHOUSE_URL, FLOWS, SVC_SECRET, ALICE_PASSWORD.
import * as client from 'openid-client';

const ok = (what) => console.log(`ok: ${what}`);
const must = (cond, what) => {
  if (!cond) throw new Error(`failed: ${what}`);
};

// The person's part of the code flow: open the sign-in page, submit the form, follow to the code.
async function signIn(base, url, username, password) {
  const page = await fetch(url, { redirect: 'manual' });
  must(page.status === 200, `sign-in page ${page.status}`);
  const html = await page.text();
  const cookie = page.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ');
  const form = new URLSearchParams();
  for (const m of html.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)) {
    form.set(m[1], m[2].replaceAll('&amp;', '&').replaceAll('&quot;', '"').replaceAll('&#39;', "'"));
  }
  form.set('username', username);
  form.set('password', password);
  const post = await fetch(new URL('/oauth/authorize', base), {
    method: 'POST',
    body: form,
    headers: { cookie },
    redirect: 'manual',
  });
  must(post.status === 303, `sign-in answered ${post.status}`);
  return new URL(post.headers.get('location'));
}

// A call through the gateway with this handle's proofs; the echo upstream answers with the request.
async function call(config, token, base, path, DPoP) {
  const r = await client.fetchProtectedResource(config, token, new URL(path, base), 'GET', undefined, undefined, { DPoP });
  must(r.status === 200, `${path} answered ${r.status}`);
  return r.json();
}

const base = new URL(process.env.GATEHOUSE_URL);

if (process.env.FLOWS === 'nonces') {
  // the token endpoint asks for a nonce (400 use_dpop_nonce), the resource too (401) for a handle
  // that never learnt it, and the client answers each challenge itself
  const svc = await client.discovery(base, 'svc', process.env.SVC_SECRET);
  const key = await client.randomDPoPKeyPair('ES256');
  const first = client.getDPoPHandle(svc, key);
  const cc = await client.clientCredentialsGrant(svc, { scope: 'orders.read' }, { DPoP: first });
  must(cc.token_type === 'dpop', 'token with a nonce');
  ok('nonce challenge at the token endpoint answered by the client');
  const unaware = client.getDPoPHandle(svc, key);
  await call(svc, cc.access_token, base, '/api/orders', unaware);
  await call(svc, cc.access_token, base, '/api/orders', first);
  ok('nonce challenge at the resource answered by the client');
  process.exit(0);
}

const svc = await client.discovery(base, 'svc', process.env.SVC_SECRET);
const algs = svc.serverMetadata().dpop_signing_alg_values_supported;
must(Array.isArray(algs) && algs.includes('ES256'), `dpop_signing_alg_values_supported ${algs}`);
ok('metadata names the DPoP algorithms');

const key = await client.randomDPoPKeyPair('ES256');
const DPoP = client.getDPoPHandle(svc, key);
const cc = await client.clientCredentialsGrant(svc, { scope: 'orders.read' }, { DPoP });
must(cc.token_type === 'dpop', `client_credentials token_type ${cc.token_type}`);
ok('client_credentials with DPoP');

const seen = await call(svc, cc.access_token, base, '/api/orders', DPoP);
must([].concat(seen.headers['x-auth-client-id']).includes('svc'), `identity ${JSON.stringify(seen.headers)}`);
await call(svc, cc.access_token, base, '/bound/orders', DPoP);
await call(svc, cc.access_token, base, '/api/orders', DPoP);
ok('calls through the gateway with its own proofs');

const spa = await client.discovery(base, 'browser', undefined, client.None());
const spaKey = await client.randomDPoPKeyPair('ES256');
const spaDPoP = client.getDPoPHandle(spa, spaKey);
const verifier = client.randomPKCECodeVerifier();
const state = client.randomState();
const nonce = client.randomNonce();
const authUrl = client.buildAuthorizationUrl(spa, {
  redirect_uri: 'https://app.example/cb',
  scope: 'openid profile orders.read',
  code_challenge: await client.calculatePKCECodeChallenge(verifier),
  code_challenge_method: 'S256',
  state,
  nonce,
});
const callback = await signIn(base, authUrl, 'alice@example.com', process.env.ALICE_PASSWORD);
const tokens = await client.authorizationCodeGrant(
  spa,
  callback,
  { pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true },
  undefined,
  { DPoP: spaDPoP },
);
must(tokens.token_type === 'dpop' && tokens.refresh_token, `code token_type ${tokens.token_type}`);
await call(spa, tokens.access_token, base, '/api/orders', spaDPoP);
ok('authorization_code with DPoP');

const info = await client.fetchUserInfo(spa, tokens.access_token, tokens.claims().sub, { DPoP: spaDPoP });
must(info.name === 'Alice', 'userinfo name');
ok('userinfo with DPoP');

// the family is bound to the key that began it: another key's refresh is refused, before rotation
const thief = client.getDPoPHandle(spa, await client.randomDPoPKeyPair('ES256'));
let refused;
try {
  await client.refreshTokenGrant(spa, tokens.refresh_token, undefined, { DPoP: thief });
} catch (e) {
  refused = e.error;
}
must(refused === 'invalid_dpop_proof', `refresh with another key: ${refused}`);
const refreshed = await client.refreshTokenGrant(spa, tokens.refresh_token, undefined, { DPoP: spaDPoP });
must(refreshed.token_type === 'dpop' && refreshed.refresh_token !== tokens.refresh_token, 'rotated');
await call(spa, refreshed.access_token, base, '/api/orders', spaDPoP);
ok('refresh bound to the key');
