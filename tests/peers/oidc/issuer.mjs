// A real OIDC issuer for intentgate's tests and demo: oauth2-mock-server (discovery, JWKS,
// /token, ...) plus a control server that mints good and hostile tokens on demand.
//
// Usage: node issuer.mjs [--port N] [--control-port N] [--default-aud AUD]
//   env:  OIDC_PORT, OIDC_CONTROL_PORT, OIDC_DEFAULT_AUD (flags win); 0 = pick a free port.
//
// Both servers bind 127.0.0.1 only. When ready, prints exactly one JSON line on stdout:
//   {"issuer":"http://127.0.0.1:PORT","control":"http://127.0.0.1:PORT2"}
// and runs until killed, told to (POST /shutdown), or, when stdin is a pipe, stdin closes
// (so a crashed test leaves no orphan). PEER_WATCH_STDIN=1/0 forces stdin watching on/off.
//
// Control API (see README.md beside this file):
//   POST /mint      {kind, sub?, aud?, ttl?, groups?, claims?} -> the token as text/plain
//   GET  /stats     -> {"requests": {"/jwks": n, ...}} requests the issuer has served, by path
//   POST /outage    {on: bool} -> while on, every issuer request answers 503
//   POST /shutdown  -> 200, then exit 0
//   GET  /healthz   -> 200

import { createPublicKey, createHmac, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { fstatSync } from 'node:fs';
import { OAuth2Server } from 'oauth2-mock-server';
import { SignJWT, UnsecuredJWT, exportJWK, generateKeyPair, importJWK } from 'jose';

const HOST = '127.0.0.1';
const MAX_BODY = 64 * 1024;

function parseArgs(argv) {
  const opts = {
    port: process.env.OIDC_PORT ?? '0',
    controlPort: process.env.OIDC_CONTROL_PORT ?? '0',
    defaultAud: process.env.OIDC_DEFAULT_AUD ?? 'intentgate',
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) fail(`${arg} needs a value`);
      return v;
    };
    if (arg === '--port') opts.port = value();
    else if (arg === '--control-port') opts.controlPort = value();
    else if (arg === '--default-aud') opts.defaultAud = value();
    else if (/^\d+$/.test(arg)) opts.port = arg;
    else fail(`unknown argument ${arg}`);
  }
  for (const key of ['port', 'controlPort']) {
    const n = Number(opts[key]);
    if (!Number.isInteger(n) || n < 0 || n > 65535) fail(`invalid ${key}: ${opts[key]}`);
    opts[key] = n;
  }
  return opts;
}

function fail(message) {
  process.stderr.write(`oidc-issuer: ${message}\n`);
  process.exit(2);
}

const b64url = (data) => Buffer.from(data).toString('base64url');
const b64json = (obj) => b64url(JSON.stringify(obj));
const now = () => Math.floor(Date.now() / 1000);

async function main() {
  const opts = parseArgs(process.argv.slice(2));

  const server = new OAuth2Server();
  const issuer = server.issuer;
  // The first key is the primary RS256 signing key; the ES256 key is published from the start.
  const rsa = await issuer.keys.generate('RS256');
  const ec = await issuer.keys.generate('ES256');
  // A key pair whose public half is never published: for `unknown-kid`.
  const stranger = await generateKeyPair('RS256', { extractable: true });
  const strangerKid = `unpublished-${randomBytes(8).toString('hex')}`;

  // The RSA public key as PEM text, for the HS256 key-confusion attack.
  const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...rsaPublic } = rsa;
  const rsaPublicPem = createPublicKey({ key: rsaPublic, format: 'jwk' })
    .export({ type: 'spki', format: 'pem' })
    .toString();

  // Count and optionally fail issuer requests. The mock's request handler is an express app
  // that dispatches through `app.handle`, so wrapping it sees every request.
  const requests = {};
  let outage = false;
  const app = server.service.requestHandler;
  if (typeof app.handle === 'function') {
    const handle = app.handle.bind(app);
    app.handle = (req, res, next) => {
      const path = (req.url ?? '/').split('?')[0];
      requests[path] = (requests[path] ?? 0) + 1;
      if (outage) {
        res.statusCode = 503;
        res.setHeader('content-type', 'text/plain');
        res.end('outage (simulated by the test control server)\n');
        return;
      }
      handle(req, res, next);
    };
  } else {
    process.stderr.write('oidc-issuer: cannot hook the request handler; /stats and /outage are inert\n');
  }

  await server.start(opts.port, HOST);
  const port = server.address().port;
  // The mock would otherwise advertise http://localhost:PORT.
  issuer.url = `http://${HOST}:${port}`;

  const rotatedKids = [];

  async function signWith(jwk, header, payload) {
    const key = await importJWK(jwk, jwk.alg);
    return new SignJWT(payload)
      .setProtectedHeader({ typ: 'JWT', ...header, alg: jwk.alg, kid: jwk.kid })
      .sign(key);
  }

  function baseClaims(req) {
    const t = now();
    const ttl = req.ttl ?? 600;
    const claims = {
      iss: issuer.url,
      sub: req.sub ?? 'alice',
      aud: req.aud ?? opts.defaultAud,
      iat: t,
      nbf: t - 1,
      exp: t + ttl,
      jti: randomBytes(12).toString('hex'),
    };
    if (req.groups !== undefined) claims.groups = req.groups;
    return { ...claims, ...(req.claims ?? {}) };
  }

  async function mint(req) {
    const claims = baseClaims(req);
    const t = claims.iat;
    switch (req.kind) {
      case 'valid':
        return signWith(rsa, {}, claims);
      case 'valid-es256':
        return signWith(ec, {}, claims);
      case 'groups':
        return signWith(rsa, {}, { ...claims, groups: req.groups ?? ['developers', 'oncall'] });
      case 'alg-none':
        // Header {"alg":"none","typ":"JWT"} and an empty signature.
        return new UnsecuredJWT(claims).encode();
      case 'hs256-rsa-public-key': {
        // HMAC-SHA256 keyed with the bytes of the issuer's RSA public key PEM (SPKI, with the
        // trailing newline), carrying the RSA key's kid: a verifier that takes `alg` from the
        // token and uses the "key" it finds for that kid accepts it.
        const header = { alg: 'HS256', typ: 'JWT', kid: rsa.kid };
        const input = `${b64json(header)}.${b64json(claims)}`;
        const mac = createHmac('sha256', rsaPublicPem).update(input).digest();
        return `${input}.${b64url(mac)}`;
      }
      case 'wrong-aud':
        return signWith(rsa, {}, { ...claims, aud: `not-${claims.aud}` });
      case 'wrong-iss':
        return signWith(rsa, {}, { ...claims, iss: 'https://attacker.invalid' });
      case 'expired':
        return signWith(rsa, {}, { ...claims, iat: t - 7200, nbf: t - 7200, exp: t - 3600 });
      case 'not-yet-valid':
        return signWith(rsa, {}, { ...claims, nbf: t + 3600, exp: t + 7200 });
      case 'unknown-kid': {
        const jwk = { ...(await exportJWK(stranger.privateKey)), alg: 'RS256', kid: strangerKid };
        return signWith(jwk, {}, claims);
      }
      case 'tampered': {
        const token = await signWith(rsa, {}, claims);
        const [h, , s] = token.split('.');
        const changed = { ...claims, sub: `${claims.sub}-admin` };
        return `${h}.${b64json(changed)}.${s}`;
      }
      case 'oversized':
        return signWith(rsa, {}, { ...claims, padding: 'x'.repeat(16 * 1024) });
      case 'rotated': {
        const jwk = await issuer.keys.generate('RS256', {
          kid: `rotated-${rotatedKids.length + 1}-${randomBytes(4).toString('hex')}`,
        });
        rotatedKids.push(jwk.kid);
        return signWith(jwk, {}, claims);
      }
      default:
        throw new BadRequest(`unknown kind ${JSON.stringify(req.kind)}; known: ${KINDS.join(', ')}`);
    }
  }

  const control = createServer((req, res) => {
    handleControl(req, res).catch((err) => {
      const status = err instanceof BadRequest ? 400 : 500;
      if (status === 500) process.stderr.write(`oidc-issuer: ${err.stack ?? err}\n`);
      reply(res, status, 'text/plain', `${err.message}\n`);
    });
  });

  async function handleControl(req, res) {
    const path = (req.url ?? '/').split('?')[0];
    const route = `${req.method} ${path}`;
    if (route === 'GET /healthz') return reply(res, 200, 'text/plain', 'ok\n');
    if (route === 'GET /stats') {
      return reply(res, 200, 'application/json', JSON.stringify({ requests, rotated_kids: rotatedKids }));
    }
    if (route === 'POST /mint') {
      const body = await readJson(req);
      validateMint(body);
      return reply(res, 200, 'text/plain', await mint(body));
    }
    if (route === 'POST /outage') {
      const body = await readJson(req);
      if (typeof body.on !== 'boolean') throw new BadRequest('body must be {"on": true|false}');
      outage = body.on;
      return reply(res, 200, 'application/json', JSON.stringify({ outage }));
    }
    if (route === 'POST /shutdown') {
      res.on('finish', () => shutdown(0));
      return reply(res, 200, 'text/plain', 'bye\n');
    }
    return reply(res, 404, 'text/plain', `no route ${route}\n`);
  }

  await new Promise((resolve, reject) => {
    control.once('error', reject);
    control.listen(opts.controlPort, HOST, resolve);
  });
  const controlPort = control.address().port;

  let stopping = false;
  async function shutdown(code) {
    if (stopping) return;
    stopping = true;
    control.closeAllConnections?.();
    await Promise.allSettled([server.stop(), new Promise((r) => control.close(r))]);
    process.exit(code);
  }
  process.on('SIGTERM', () => shutdown(0));
  process.on('SIGINT', () => shutdown(0));
  watchStdin(() => shutdown(0));

  process.stdout.write(
    `${JSON.stringify({ issuer: issuer.url, control: `http://${HOST}:${controlPort}` })}\n`,
  );
}

const KINDS = [
  'valid', 'valid-es256', 'alg-none', 'hs256-rsa-public-key', 'wrong-aud', 'wrong-iss', 'expired',
  'not-yet-valid', 'unknown-kid', 'tampered', 'oversized', 'rotated', 'groups',
];

class BadRequest extends Error {}

function validateMint(body) {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new BadRequest('body must be a JSON object');
  }
  if (typeof body.kind !== 'string') throw new BadRequest('"kind" (string) is required');
  for (const key of ['sub', 'aud']) {
    if (body[key] !== undefined && typeof body[key] !== 'string') throw new BadRequest(`"${key}" must be a string`);
  }
  if (body.ttl !== undefined && !(Number.isInteger(body.ttl) && body.ttl > 0)) {
    throw new BadRequest('"ttl" must be a positive integer (seconds)');
  }
  if (body.groups !== undefined && !(Array.isArray(body.groups) && body.groups.every((g) => typeof g === 'string'))) {
    throw new BadRequest('"groups" must be an array of strings');
  }
  if (body.claims !== undefined && (body.claims === null || typeof body.claims !== 'object' || Array.isArray(body.claims))) {
    throw new BadRequest('"claims" must be an object');
  }
}

function readJson(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > MAX_BODY) {
        reject(new BadRequest('body too large'));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      if (text.trim() === '') return resolve({});
      try {
        resolve(JSON.parse(text));
      } catch (err) {
        reject(new BadRequest(`invalid JSON: ${err.message}`));
      }
    });
    req.on('error', reject);
  });
}

function reply(res, status, type, body) {
  const buf = Buffer.from(body);
  res.writeHead(status, { 'content-type': type, 'content-length': buf.length });
  res.end(buf);
}

// Exit when stdin closes, but only when stdin is a pipe or socket: a terminal or /dev/null
// (a backgrounded `&` job in a script) must not stop the server.
function watchStdin(onClose) {
  const forced = process.env.PEER_WATCH_STDIN;
  let watch;
  if (forced === '1') watch = true;
  else if (forced === '0') watch = false;
  else {
    try {
      const st = fstatSync(0);
      watch = st.isFIFO() || st.isSocket();
    } catch {
      watch = false;
    }
  }
  if (!watch) return;
  process.stdin.on('data', () => {});
  process.stdin.on('end', onClose);
  process.stdin.on('close', onClose);
  process.stdin.on('error', onClose);
  process.stdin.resume();
}

main().catch((err) => {
  process.stderr.write(`oidc-issuer: failed to start: ${err.stack ?? err}\n`);
  process.exit(1);
});
