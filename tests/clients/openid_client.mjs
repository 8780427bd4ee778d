// openid-client with its defaults against a running gatehouse: discovery, client_credentials,
// private_key_jwt, jwt-bearer, code + PKCE through the sign-in form, refresh, userinfo,
// introspection and revocation. Prints "ok: <flow>" per flow; any failure exits non-zero.
// Input (environment): GATEHOUSE_URL, SVC_SECRET, SIGNER_KEY (PKCS#8 PEM file), ALICE_PASSWORD.
import * as client from 'openid-client';
import * as jose from 'jose';
import { readFileSync } from 'node:fs';

const base = new URL(process.env.GATEHOUSE_URL);
const ok = (what) => console.log(`ok: ${what}`);
const must = (cond, what) => {
  if (!cond) throw new Error(`failed: ${what}`);
};

// The person's part of the code flow: open the sign-in page, submit the form, follow to the code.
async function signIn(url, username, password) {
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

const svc = await client.discovery(base, 'svc', process.env.SVC_SECRET);
must(svc.serverMetadata().issuer === base.href.replace(/\/$/, ''), 'issuer');
ok('discovery');

const cc = await client.clientCredentialsGrant(svc, { scope: 'orders.read' });
must(cc.access_token && cc.token_type.toLowerCase() === 'bearer', 'client_credentials token');
ok('client_credentials');

const pem = readFileSync(process.env.SIGNER_KEY, 'utf8');
const key = await jose.importPKCS8(pem, 'RS256');
const signer = await client.discovery(base, 'signer', undefined, client.PrivateKeyJwt(key));
const pkj = await client.clientCredentialsGrant(signer, { scope: 'orders.read' });
must(pkj.access_token, 'private_key_jwt token');
ok('private_key_jwt');

// a jwt-bearer grant for alice, signed by the client "signer"
const grantFor = (audience) =>
  new jose.SignJWT({})
    .setProtectedHeader({ alg: 'RS256' })
    .setIssuer('signer')
    .setSubject('alice')
    .setAudience(audience)
    .setIssuedAt()
    .setExpirationTime('1h')
    .setJti(crypto.randomUUID())
    .sign(key);
const assertion = await grantFor(signer.serverMetadata().token_endpoint);
const bearer = await client.genericGrantRequest(
  signer,
  'urn:ietf:params:oauth:grant-type:jwt-bearer',
  { assertion, scope: 'orders.read' },
);
must(bearer.access_token, 'jwt-bearer token');
ok('jwt-bearer');

// None() sends client_id in the body beside the assertion (RFC 7523 §2.1 allows it)
const named = await client.discovery(base, 'signer', undefined, client.None());
const grant = await grantFor(named.serverMetadata().token_endpoint);
const namedBearer = await client.genericGrantRequest(
  named,
  'urn:ietf:params:oauth:grant-type:jwt-bearer',
  { assertion: grant, scope: 'orders.read' },
);
must(namedBearer.access_token, 'jwt-bearer token with client_id');
ok('jwt-bearer with None() naming its client_id');

const spa = await client.discovery(base, 'browser', undefined, client.None());
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
const callback = await signIn(authUrl, 'alice@example.com', process.env.ALICE_PASSWORD);
const tokens = await client.authorizationCodeGrant(spa, callback, {
  pkceCodeVerifier: verifier,
  expectedState: state,
  expectedNonce: nonce,
  idTokenExpected: true,
});
const claims = tokens.claims();
must(claims.sub === 'user-alice', `id token sub ${claims.sub}`);
ok('authorization_code with PKCE and an RS256 ID token');

const info = await client.fetchUserInfo(spa, tokens.access_token, claims.sub);
must(info.name === 'Alice', 'userinfo name');
ok('userinfo');

const refreshed = await client.refreshTokenGrant(spa, tokens.refresh_token);
must(refreshed.access_token && refreshed.refresh_token !== tokens.refresh_token, 'rotated');
ok('refresh');

const live = await client.tokenIntrospection(svc, cc.access_token);
must(live.active === true && live.client_id === 'svc', 'introspection active');
await client.tokenRevocation(svc, cc.access_token);
const dead = await client.tokenIntrospection(svc, cc.access_token);
must(dead.active === false, 'introspection after revocation');
ok('introspection and revocation');
