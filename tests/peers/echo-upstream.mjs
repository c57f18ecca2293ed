// Echo upstream for intentgate's tests and demo (Node built-ins only).
//
// Usage: node echo-upstream.mjs [--port N]   (env ECHO_PORT; 0 = pick a free port)
//
// Binds 127.0.0.1 only and answers every request with 200 application/json:
//   {"method", "path", "query", "headers", "raw_headers", "body"}
// - path:        the request path without the query string
// - query:       the raw query string without "?" ("" when absent)
// - headers:     Node's view, names lower-cased (Node keeps only the first of some duplicated
//                headers, e.g. authorization; see raw_headers)
// - raw_headers: every header line as [name, value] in arrival order, duplicates kept, so a
//                test can see that exactly one authorization header reached the upstream
// - body:        the request body as UTF-8 text (capped at 1 MiB)
// A request header `x-echo-status: NNN` (200..599) makes the reply use that status.
//
// Prints {"url":"http://127.0.0.1:PORT"} on stdout when ready. Exits on SIGTERM/SIGINT and,
// when stdin is a pipe or socket, when stdin closes (PEER_WATCH_STDIN=1/0 forces it).

import { createServer } from 'node:http';
import { fstatSync } from 'node:fs';

const HOST = '127.0.0.1';
const MAX_BODY = 1024 * 1024;

function parsePort(argv) {
  let port = process.env.ECHO_PORT ?? '0';
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--port' && argv[i + 1] !== undefined) port = argv[++i];
    else if (/^\d+$/.test(argv[i])) port = argv[i];
    else {
      process.stderr.write(`echo-upstream: unknown argument ${argv[i]}\n`);
      process.exit(2);
    }
  }
  const n = Number(port);
  if (!Number.isInteger(n) || n < 0 || n > 65535) {
    process.stderr.write(`echo-upstream: invalid port ${port}\n`);
    process.exit(2);
  }
  return n;
}

const server = createServer((req, res) => {
  const chunks = [];
  let size = 0;
  req.on('data', (chunk) => {
    size += chunk.length;
    if (size <= MAX_BODY) chunks.push(chunk);
  });
  req.on('end', () => {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const rawHeaders = [];
    for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
      rawHeaders.push([req.rawHeaders[i], req.rawHeaders[i + 1]]);
    }
    const echo = {
      method: req.method,
      path: q === -1 ? url : url.slice(0, q),
      query: q === -1 ? '' : url.slice(q + 1),
      headers: req.headers,
      raw_headers: rawHeaders,
      body: Buffer.concat(chunks).toString('utf8'),
    };
    let status = 200;
    const wanted = Number(req.headers['x-echo-status']);
    if (Number.isInteger(wanted) && wanted >= 200 && wanted <= 599) status = wanted;
    const body = Buffer.from(`${JSON.stringify(echo)}\n`);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': body.length });
    res.end(req.method === 'HEAD' ? undefined : body);
  });
});

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

function stop() {
  server.closeAllConnections?.();
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
}

server.on('error', (err) => {
  process.stderr.write(`echo-upstream: ${err.message}\n`);
  process.exit(1);
});
server.listen(parsePort(process.argv.slice(2)), HOST, () => {
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  watchStdin(stop);
  process.stdout.write(`${JSON.stringify({ url: `http://${HOST}:${server.address().port}` })}\n`);
});
