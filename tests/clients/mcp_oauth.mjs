// The TypeScript SDK's OAuthClientProvider for mcp_client.mjs: a public client (pre-registered, named
// by a client ID metadata document, or registering itself) that keeps everything in memory, sends
// the user to the authorization URL by printing it (the Rust test signs in through the gateway's
// form), and takes the code at a loopback redirect URI.
import http from 'node:http';
import { randomUUID } from 'node:crypto';

const claims = (jwt) => JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString());

export class TestOAuthProvider {
  /**
   * The provider, with its redirect URI listening on 127.0.0.1:`port`. `clientId`: a pre-registered
   * client; `metadataUrl`: the client's metadata document, which the SDK uses as its client_id when
   * the authorization server supports them; neither: the SDK registers the client.
   */
  static async listen({ clientId, metadataUrl }, port, say) {
    const p = new TestOAuthProvider(clientId, `http://127.0.0.1:${port}/cb`, say);
    if (metadataUrl) p.clientMetadataUrl = metadataUrl;
    p.server = http.createServer((req, res) => p.callback(req, res));
    await new Promise((resolve, reject) => p.server.listen(port, '127.0.0.1', resolve).on('error', reject));
    return p;
  }

  constructor(clientId, redirectUrl, say) {
    this.clientId = clientId;
    this._redirectUrl = redirectUrl;
    this.say = say;
    this.authorizations = 0;
    this.tokenSaves = 0;
    this.codes = [];
    this.waiting = [];
  }

  get redirectUrl() {
    return this._redirectUrl;
  }

  get clientMetadata() {
    return {
      client_name: 'gatehouse test client',
      redirect_uris: [this._redirectUrl],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  }

  state() {
    this._state = randomUUID();
    return this._state;
  }

  clientInformation() {
    return this._client ?? (this.clientId ? { client_id: this.clientId } : undefined);
  }

  saveClientInformation(info) {
    this._client = info;
    this.say('client', { client_id: info.client_id, scope: info.scope ?? null });
  }

  invalidateCredentials(what) {
    if (what === 'all' || what === 'client') this._client = undefined;
    if (what === 'all' || what === 'tokens') this._tokens = undefined;
    if (what === 'all' || what === 'verifier') this._verifier = undefined;
  }

  tokens() {
    return this._tokens;
  }

  saveTokens(tokens) {
    this._tokens = tokens;
    this.tokenSaves += 1;
    const c = claims(tokens.access_token);
    this.say('tokens', { aud: c.aud, sub: c.sub, scope: tokens.scope, refresh: Boolean(tokens.refresh_token) });
  }

  redirectToAuthorization(url) {
    this.authorizations += 1;
    this.say('authorize', { url: url.href });
  }

  saveCodeVerifier(v) {
    this._verifier = v;
  }

  codeVerifier() {
    return this._verifier;
  }

  counts() {
    return { authorizations: this.authorizations, token_saves: this.tokenSaves };
  }

  /** The code the authorization server sends to the redirect URI next. */
  code() {
    return this.codes.length ? Promise.resolve(this.codes.shift()) : new Promise((r) => this.waiting.push(r));
  }

  callback(req, res) {
    const q = new URL(req.url, this._redirectUrl).searchParams;
    const ok = q.get('code') && q.get('state') === this._state;
    this.say('callback', { ok, iss: q.get('iss'), error: q.get('error') });
    res.writeHead(ok ? 200 : 400, { 'content-type': 'text/plain' }).end(ok ? 'signed in' : 'refused');
    if (!ok) return;
    const waiter = this.waiting.shift();
    if (waiter) waiter(q.get('code'));
    else this.codes.push(q.get('code'));
  }

  close() {
    this.server?.close();
  }
}
