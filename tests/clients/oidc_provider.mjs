// A real, certified OpenID provider (panva's oidc-provider) for the gateway's sign-in tests.
// Configuration comes as JSON in OP_CONFIG: { port, issuer, clients, users }. Its development
// sign-in form accepts any password for the users listed; consent is granted without asking.
// Prints "ready" once it listens.
import dns from 'node:dns';
import Provider from 'oidc-provider';

// the gateway listens on 127.0.0.1; "localhost" must not resolve to ::1 first
dns.setDefaultResultOrder('ipv4first');

const cfg = JSON.parse(process.env.OP_CONFIG);
const users = cfg.users || {};

const configuration = {
  clients: cfg.clients,
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: true },
    backchannelLogout: { enabled: true },
    rpInitiatedLogout: { enabled: true },
  },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    // azp only for the users given one: an ID token authorised for another party
    profile: ['name', 'azp'],
    groups: ['groups'],
  },
  scopes: ['openid', 'email', 'profile', 'groups', 'offline_access'],
  // ID tokens carry the granted claims, as Keycloak's and Entra's do
  conformIdTokenClaims: false,
  cookies: { keys: ['gatehouse-test-cookie-key'] },
  // the gateway under test is on 127.0.0.1, which the provider's SSRF guard refuses by default
  fetch(url, options) {
    delete options.dispatcher;
    return fetch(url, options);
  },
  async findAccount(ctx, id) {
    const u = users[id];
    if (!u) return undefined;
    return { accountId: id, async claims() { return { sub: id, ...u }; } };
  },
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId
      || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope('openid email profile groups');
    await grant.save();
    return grant;
  },
};

const provider = new Provider(cfg.issuer, configuration);
provider.on('backchannel.error', (ctx, err, client) => {
  console.error(`backchannel logout to ${client.clientId} failed: ${err.message} ${err.cause ? (err.cause.message || err.cause.code) : ''}`);
});
provider.on('backchannel.success', (ctx, client) => {
  console.log(`backchannel logout to ${client.clientId} sent`);
});
provider.listen(cfg.port, '127.0.0.1', () => console.log('ready'));
