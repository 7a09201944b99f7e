// Shared by the browser tests and tests/js: the real chorusd on a free
// loopback port with a fresh database (stopped by PID), the chorus CLI,
// headless Debian chromium driven by playwright-core, and a proxy that
// breaks WebSocket (for the SSE fallback).
import { spawn, execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync, mkdirSync, openSync, readFileSync, rmSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { createServer as createHttpServer, request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { createHmac } from 'node:crypto';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '../..');
export const CHORUSD = process.env.CHORUSD || join(repo, 'build/chorusd');
export const CHORUS_CLI = process.env.CHORUS_CLI || join(repo, 'build/chorus');
export const CLIENT_DIR = join(repo, 'client/js');
export const CLIENT_JS = join(CLIENT_DIR, 'chorus.js');
const TMP = process.env.CHORUS_TMP || tmpdir();
export const ARTIFACTS = process.env.CHORUS_ARTIFACTS || join(TMP, 'artifacts');

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function tempDir(tag) {
  mkdirSync(TMP, { recursive: true });
  return mkdtempSync(join(TMP, `${tag}-`));
}

function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

/** Polls fn until it returns a truthy value (then returns it) or throws. */
export async function waitFor(fn, { timeout = 10000, every = 50, what = 'condition' } = {}) {
  const end = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what} (last: ${last})`);
    await sleep(every);
  }
}

/** One chorusd process; conf keys go to its config file. The database is
 *  in the broker's own directory, so restart() keeps the history. */
export class Broker {
  constructor(conf = {}) {
    this.dir = tempDir('chorusd');
    this.conf = { db_path: join(this.dir, 'chorus.db'), log_level: 'debug', ...conf };
    this.proc = null;
    this.logPath = join(this.dir, 'chorusd.log');
  }

  get url() { return `ws://127.0.0.1:${this.port}/ws`; }
  get http() { return `http://127.0.0.1:${this.port}`; }

  async start() {
    if (!this.port) this.port = await freePort();
    const cfg = join(this.dir, 'broker.conf');
    const lines = Object.entries({ listen: `127.0.0.1:${this.port}`, ...this.conf })
      .map(([k, v]) => `${k} = ${v}\n`);
    writeFileSync(cfg, lines.join(''));
    const log = openSync(this.logPath, 'a');
    this.proc = spawn(CHORUSD, ['-c', cfg], { stdio: ['ignore', log, log] });
    const proc = this.proc;
    proc.exited = new Promise((r) => proc.once('exit', (code, sig) => r(sig || code)));
    await waitFor(async () => {
      if (proc.exitCode !== null) throw new Error(`chorusd exited ${proc.exitCode}:\n${this.log()}`);
      const r = await fetch(`${this.http}/healthz`);
      return r.status === 200;
    }, { timeout: 10000, every: 25, what: 'chorusd /healthz' }).catch((e) => {
      throw new Error(`${e.message}\n${this.log()}`);
    });
    return this;
  }

  log() {
    try { return readFileSync(this.logPath, 'utf8'); } catch { return ''; }
  }

  async stop(signal = 'SIGTERM') {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return p?.exitCode;
    process.kill(p.pid, signal);
    const t = setTimeout(() => { try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ } }, 10000);
    const r = await p.exited;
    clearTimeout(t);
    return r;
  }

  kill9() { return this.stop('SIGKILL'); }

  async cleanup() {
    await this.stop();
    const log = this.log();
    if (/AddressSanitizer|runtime error:/.test(log)) throw new Error(`chorusd sanitizer report:\n${log}`);
    if (!process.env.CHORUS_KEEP_TMP) rmSync(this.dir, { recursive: true, force: true });
  }

  async history(topic, since = 0, limit = 1000) {
    const r = await fetch(`${this.http}/api/history/${encodeURIComponent(topic)}?since=${since}&limit=${limit}`);
    if (r.status !== 200) throw new Error(`history ${topic}: HTTP ${r.status}`);
    return r.json();
  }
}

/** chorus pub: one message, or every element of an array (one per line). */
export function cliPub(url, topic, data, { timeout = 20000 } = {}) {
  return new Promise((res, rej) => {
    const lines = Array.isArray(data);
    const p = execFile(CHORUS_CLI, ['pub', '--url', url, topic, lines ? '-' : String(data)],
      { timeout, maxBuffer: 1 << 24 }, (err, stdout, stderr) => {
        if (err) rej(new Error(`chorus pub failed: ${err.message} ${stderr}`));
        else res(stdout);
      });
    if (lines) {
      p.stdin.on('error', () => {}); // the CLI may exit early on a dead broker
      p.stdin.end(data.map((d) => `${d}\n`).join(''));
    }
  });
}

/** Publishes count messages of 8 KB (32 MB for 4000: well more than the
 *  kernel's and chromium's buffers hold), "<i> xxx...", with the CLI while
 *  the page's main thread is kept busy, and a second more: chromium stops
 *  reading, so the broker's queue for the page passes a small
 *  max_outbound_bytes and it closes the page as a slow consumer. */
export async function floodBlockedPage(page, url, topic, count) {
  const big = 'x'.repeat(8000);
  const lines = Array.from({ length: count }, (_, i) => JSON.stringify(`${i + 1} ${big}`));
  // Busy for as long as the CLI publishes (however slow the build), with
  // only a moment between the busy spells.
  let publishing = true;
  const published = cliPub(url, topic, lines, { timeout: 120000 }).finally(() => { publishing = false; });
  const busy = () => page.evaluate(() => { const end = Date.now() + 1000; while (Date.now() < end); });
  while (publishing) await busy();
  await busy();
  await published;
}

/** An HS256 JWT signed with secret; claims like {sub, exp, sub_topics...}. */
export function makeToken(secret, claims) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const head = b64({ alg: 'HS256', typ: 'JWT' });
  const body = b64(claims);
  const sig = createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--disable-quic'];

/** A fresh headless chromium (its own user data dir); returns the context. */
export async function launchBrowser(options = {}) {
  const { chromium } = await import('playwright-core');
  const profile = tempDir('chromium-profile');
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: FLAGS,
    viewport: { width: 1024, height: 768 },
    ...options,
  });
  const close = ctx.close.bind(ctx);
  ctx.close = async () => {
    await close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
  };
  return ctx;
}

/** Passes a WebSocket upgrade through to target unchanged. */
function tunnel(t, req, sock, head) {
  const up = connect(Number(t.port), t.hostname, () => {
    let raw = `${req.method} ${req.url} HTTP/1.1\r\n`;
    for (let i = 0; i < req.rawHeaders.length; i += 2) raw += `${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}\r\n`;
    up.write(`${raw}\r\n`);
    if (head?.length) up.write(head);
    sock.pipe(up).pipe(sock);
  });
  up.on('error', () => sock.destroy());
  sock.on('close', () => up.destroy());
}

/** A proxy on 127.0.0.1 in front of the broker at `target` (http://...)
 *  that passes plain HTTP, streams included, and breaks WebSocket the way
 *  a proxy that strips `Upgrade` does: the request goes on without its
 *  upgrade headers and the broker's plain HTTP answer comes back, so the
 *  browser's handshake fails (while `allowWebSocket` is unset; set, it
 *  passes upgrades through). `refuse = STATUS` answers every plain request
 *  with it instead; dropWebSockets() cuts the upgraded connections. Counts
 *  what it saw; close() stops it. */
export async function noWebSocketProxy(target) {
  const t = new URL(target);
  const proxy = { requests: 0, upgrades: 0, paths: [], allowWebSocket: false, refuse: 0 };
  const upgraded = new Set(); // sockets the HTTP server no longer tracks
  const upstream = (req, headers, onResponse, onError) => {
    const up = httpRequest({ host: t.hostname, port: t.port, method: req.method, path: req.url, headers },
      onResponse);
    up.on('error', onError);
    return up;
  };
  const server = createHttpServer((req, res) => {
    proxy.requests++;
    proxy.paths.push(`${req.method} ${req.url.split('?')[0]}`);
    if (proxy.refuse) { // the path to the broker is down for now
      res.writeHead(proxy.refuse, { 'content-type': 'text/plain' });
      return res.end('proxy refusing\n');
    }
    const up = upstream(req, req.headers, (r) => {
      res.writeHead(r.statusCode, r.headers);
      r.pipe(res);
      // The broker died mid-stream: the client must see the stream end.
      r.on('close', () => { if (!r.complete) res.destroy(); });
    }, () => {
      if (res.headersSent) return res.destroy();
      res.writeHead(502, { 'content-type': 'text/plain' });
      res.end('broker unreachable\n');
    });
    req.pipe(up);
    res.on('close', () => up.destroy());
  });
  server.on('upgrade', (req, sock, head) => {
    proxy.upgrades++;
    upgraded.add(sock);
    sock.on('close', () => upgraded.delete(sock));
    sock.on('error', () => {});
    if (proxy.allowWebSocket) return tunnel(t, req, sock, head);
    const headers = { ...req.headers };
    for (const h of Object.keys(headers)) {
      if (h === 'upgrade' || h === 'connection' || h.startsWith('sec-websocket')) delete headers[h];
    }
    const up = upstream(req, headers, (r) => {
      let head = `HTTP/1.1 ${r.statusCode} ${r.statusMessage}\r\n`;
      for (const [k, v] of Object.entries(r.headers)) {
        if (!['connection', 'transfer-encoding', 'content-length', 'keep-alive'].includes(k)) head += `${k}: ${v}\r\n`;
      }
      sock.write(`${head}connection: close\r\n\r\n`);
      r.pipe(sock);
    }, () => sock.destroy());
    up.end();
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  proxy.port = server.address().port;
  proxy.http = `http://127.0.0.1:${proxy.port}`;
  proxy.url = `ws://127.0.0.1:${proxy.port}/ws`;
  proxy.dropWebSockets = () => { for (const sock of upgraded) sock.destroy(); };
  proxy.close = () => new Promise((r) => {
    for (const sock of upgraded) sock.destroy();
    server.closeAllConnections();
    server.close(() => r());
  });
  return proxy;
}
