// A real OpenID Connect provider (oidc-provider) on loopback, for Improve's sign-in tests.
//
// Started by tests/oidc_provider.py. Configuration comes from the environment:
//   OIDC_PORT            port to listen on at 127.0.0.1 (the issuer is http://127.0.0.1:<port>)
//   OIDC_CLIENT_ID       the one confidential client
//   OIDC_CLIENT_SECRET   its secret
//   OIDC_REDIRECT_URI    its only redirect URI
// Prints "READY <issuer>" on stdout once it accepts connections; exits cleanly on SIGTERM/SIGINT.
//
// Accounts: the login typed on the provider's sign-in page is the account id (the `sub`) and the
// email. A login "unverified:<email>" gives <email> with email_verified false, for refusal tests.

import { generateKeyPairSync } from 'node:crypto';
import process from 'node:process';

import Provider, { interactionPolicy } from 'oidc-provider';

function required(name) {
  const value = process.env[name];
  if (!value) {
    process.stderr.write(`provider.mjs: environment variable ${name} is required\n`);
    process.exit(2);
  }
  return value;
}

const port = Number(required('OIDC_PORT'));
const clientId = required('OIDC_CLIENT_ID');
const clientSecret = required('OIDC_CLIENT_SECRET');
const redirectUri = required('OIDC_REDIRECT_URI');
const issuer = `http://127.0.0.1:${port}`;

const UNVERIFIED = 'unverified:';

function account(id) {
  const verified = !id.startsWith(UNVERIFIED);
  const email = verified ? id : id.slice(UNVERIFIED.length);
  return {
    accountId: id,
    async claims() {
      return {
        sub: id,
        email,
        email_verified: verified,
        name: email.split('@')[0],
      };
    },
  };
}

// A fresh signing key per run: without one, oidc-provider signs with published development keys
// and warns about it. RS256 is what every relying party (Authlib included) accepts by default.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'test', use: 'sig', alg: 'RS256' };

// Every authorization request shows the sign-in page, even with a live provider session, so the
// login a test types is always the account it gets (a real provider would silently reuse the
// session, which would make "sign in as someone else" tests depend on cookie history).
const policy = interactionPolicy.base();
policy.get('login').checks.add(
  new interactionPolicy.Check('fresh_login', 'every test signs in explicitly', (ctx) =>
    ctx.oidc.result?.login
      ? interactionPolicy.Check.NO_NEED_TO_PROMPT
      : interactionPolicy.Check.REQUEST_PROMPT),
);

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      redirect_uris: [redirectUri],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      // oidc-provider accepts client_secret_post too for a client registered with
      // client_secret_basic: both are "a shared secret", only the transport differs.
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  jwks: { keys: [signingKey] },
  scopes: ['openid', 'email', 'profile'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
  },
  // By default the id_token leaves scope claims to the userinfo endpoint when an access token is
  // issued; relying parties that read the email from the id_token alone need them in it.
  conformIdTokenClaims: false,
  findAccount: (_ctx, id) => account(id),
  interactions: { policy },
  features: {
    // The built-in login and consent pages: the "browser" in the tests walks these.
    devInteractions: { enabled: true },
  },
  // PKCE stays optional for this confidential client (the v9 default requires it only for public
  // clients and FAPI 2.0); a code_challenge that is sent is still checked at the token endpoint.
  pkce: { required: () => false },
  // Plain http on loopback: cookies cannot be Secure, and the default already only marks them
  // Secure over https. Short keys are fine for a throwaway process.
  cookies: { keys: ['improve-test-oidc-cookie-key'] },
});

// Errors the provider turns into responses are logged, so a failing test's stderr says why.
provider.on('server_error', (_ctx, err) => process.stderr.write(`server_error: ${err.stack}\n`));
for (const event of ['authorization.error', 'grant.error', 'userinfo.error']) {
  provider.on(event, (_ctx, err) => process.stderr.write(`${event}: ${err.message} ${err.error_description ?? ''}\n`));
}

const server = provider.listen(port, '127.0.0.1', () => {
  process.stdout.write(`READY ${issuer}\n`);
});

server.on('error', (err) => {
  process.stderr.write(`provider.mjs: ${err.stack}\n`);
  process.exit(1);
});

function shutdown() {
  // Keep-alive connections from the test's HTTP client would hold close() open.
  server.closeAllConnections();
  server.close(() => process.exit(0));
}

process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
