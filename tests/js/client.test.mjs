// Unit tests of chorus.js's reconnect/resume logic under Node's test runner,
// against the real chorusd (and, for what chorusd cannot be made to do on
// demand, a scripted `ws` server). The client gets `ws` injected; it has no
// dependency of its own.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { createServer } from 'node:http';
import { Chorus } from '../../client/js/chorus.js';
import { Broker, cliPub, waitFor, sleep, makeToken } from '../browser/helpers.mjs';

const require = createRequire(new URL('../browser/package.json', import.meta.url));
const WS = require('ws');

const brokers = [];
const clients = [];
after(async () => {
  for (const c of clients) c.close();
  for (const b of brokers) await b.cleanup();
});

async function broker(conf) {
  const b = await new Broker(conf).start();
  brokers.push(b);
  return b;
}

/** A ws WebSocket whose connections the test can hold back (they fail as
 *  a dead broker's would) and whose instances it can reach. */
function gatedWS() {
  const gate = { open: true, sockets: [], attempts: 0, dup: false };
  gate.WebSocket = class extends WS {
    constructor(url) {
      gate.attempts++;
      super(gate.open ? url : 'ws://127.0.0.1:1/ws');
      gate.sockets.push(this);
      if (gate.dup) {
        // Every frame delivered twice: the client must drop the copies.
        this.on('message', (data, binary) => {
          if (!binary) queueMicrotask(() => this.onmessage?.({ data: data.toString() }));
        });
      }
    }
  };
  return gate;
}

// These are the WebSocket transport's tests (tests/js/sse.test.mjs has the
// SSE ones): 'auto' could move some of them to SSE.
function client(url, opts = {}) {
  const c = new Chorus(url, { WebSocket: WS, transport: 'websocket', backoff: { min: 50, max: 400 }, ...opts });
  c.events = [];
  for (const ev of ['state', 'gap', 'replayed', 'error']) {
    c.on(ev, (a, b) => c.events.push([ev, a, b]));
  }
  clients.push(c);
  return c;
}

function collect(c, topic) {
  const got = [];
  const unsub = c.subscribe(topic, (data, meta) => got.push({ data, ...meta }));
  got.unsub = unsub;
  return got;
}

const offsetsOf = (got) => got.map((m) => m.offset);
const range = (a, b) => Array.from({ length: b - a + 1 }, (_, i) => a + i);

test('publish resolves with the offset; handlers get data and meta', async () => {
  const b = await broker();
  const c = client(b.url);
  const got = collect(c, 'unit.basic');
  const sub = await got.unsub.ready;
  assert.equal(sub.offset, 0);
  assert.match(sub.epoch, /^[0-9a-f]{32}$/);
  assert.equal(await c.publish('unit.basic', { text: 'hi' }), 1);
  assert.equal(await c.publish('unit.basic', 'two'), 2);
  await waitFor(() => got.length === 2, { what: '2 messages' });
  assert.deepEqual(got[0].data, { text: 'hi' });
  assert.equal(got[0].topic, 'unit.basic');
  assert.equal(got[0].epoch, sub.epoch);
  assert.equal(got[0].replayed, false);
  assert.ok(Math.abs(got[0].ts - Date.now()) < 60000);
  assert.ok((await c.ping()) >= 0);
  assert.equal(c.state, 'open');
});

test('after a broker restart (1001) it resumes with since: replayed in order, once', async () => {
  const b = await broker();
  const gate = gatedWS();
  const c = client(b.url, { WebSocket: gate.WebSocket });
  const got = collect(c, 'unit.restart');
  await got.unsub.ready;
  await cliPub(b.url, 'unit.restart', [1, 2, 3]);
  await waitFor(() => got.length === 3, { what: '3 live messages' });

  gate.open = false; // the client cannot come back before we publish
  await b.stop(); // SIGTERM: the broker closes with 1001
  await waitFor(() => c.events.some(([e, s, i]) => e === 'state' && s === 'connecting' && i.code === 1001),
    { what: 'close 1001 seen' });
  await b.start();
  await cliPub(b.url, 'unit.restart', [4, 5, 6, 7]);
  gate.open = true;
  await waitFor(() => got.length === 7, { what: '7 messages' });
  assert.deepEqual(offsetsOf(got), range(1, 7));
  assert.deepEqual(got.map((m) => m.replayed), [false, false, false, true, true, true, true]);
  const replayed = c.events.filter(([e]) => e === 'replayed').map(([, r]) => r);
  assert.deepEqual(replayed, [{ topic: 'unit.restart', count: 4, recovered: true }]);
  assert.equal(c.events.filter(([e]) => e === 'gap').length, 0);
  // Live again after the replay.
  await c.publish('unit.restart', 8);
  await waitFor(() => got.length === 8, { what: 'live after resume' });
});

test('frames delivered twice reach the handler once', async () => {
  const b = await broker();
  const gate = gatedWS();
  gate.dup = true;
  const c = client(b.url, { WebSocket: gate.WebSocket });
  const got = collect(c, 'unit.dup');
  await got.unsub.ready;
  for (let i = 1; i <= 5; i++) await c.publish('unit.dup', i);
  await sleep(200);
  assert.deepEqual(offsetsOf(got), range(1, 5));
});

test('a slow-consumer close (1013) is resumed from without loss or duplicates', async () => {
  const b = await broker({ max_outbound_bytes: '16k', history_size: 10000 });
  const gate = gatedWS();
  const c = client(b.url, { WebSocket: gate.WebSocket });
  const got = collect(c, 'unit.slow');
  await got.unsub.ready;
  // Stop reading the socket, as a busy page would, while 24 MB arrive:
  // more than loopback's socket buffers can hold (up to about 10 MB with
  // autotuning), so the broker's queue must pass 16k.
  gate.sockets.at(-1)._socket.pause();
  const N = 3000;
  const lines = range(1, N).map((i) => JSON.stringify(`${i} ${'y'.repeat(8000)}`));
  await cliPub(b.url, 'unit.slow', lines, { timeout: 120000 });
  gate.sockets.at(-1)._socket.resume();
  await waitFor(() => got.length >= N, { timeout: 60000, what: `${N} messages` });
  assert.deepEqual(offsetsOf(got), range(1, N));
  assert.ok(c.events.some(([e, s, i]) => e === 'state' && s === 'connecting' && i.code === 1013),
    'closed with 1013 and reconnected');
  assert.equal(c.state, 'open');
});

test('a foreign epoch gives a gap event, then what the broker still has', async () => {
  const b = await broker();
  await cliPub(b.url, 'unit.gap', ['a', 'b', 'c']);
  const c = client(b.url);
  const got = [];
  c.subscribe('unit.gap', (d, m) => got.push([d, m.offset]),
    { since: { epoch: '0123456789abcdef0123456789abcdef', offset: 2 } });
  await waitFor(() => got.length === 3, { what: 'retained messages' });
  assert.deepEqual(got, [['a', 1], ['b', 2], ['c', 3]]);
  const gaps = c.events.filter(([e]) => e === 'gap').map(([, g]) => g);
  assert.equal(gaps.length, 1);
  assert.equal(gaps[0].topic, 'unit.gap');
  assert.equal(gaps[0].previousEpoch, '0123456789abcdef0123456789abcdef');
  assert.equal(gaps[0].offset, 3);
});

test('persist: a new client (a reloaded page) resumes from storage', async () => {
  const b = await broker();
  const store = new Map();
  const storage = { getItem: (k) => store.get(k) ?? null, setItem: (k, v) => store.set(k, v), removeItem: (k) => store.delete(k) };
  const c1 = client(b.url, { persist: 'test:', storage });
  const got1 = collect(c1, 'unit.persist');
  await got1.unsub.ready;
  await cliPub(b.url, 'unit.persist', [1, 2, 3]);
  await waitFor(() => got1.length === 3, { what: 'first page' });
  c1.close(); // flushes the position
  assert.ok([...store.keys()].some((k) => k.startsWith('test:') && k.endsWith('|unit.persist')));
  await cliPub(b.url, 'unit.persist', [4, 5]);
  const c2 = client(b.url, { persist: 'test:', storage });
  const got2 = collect(c2, 'unit.persist');
  await waitFor(() => got2.length === 2, { what: 'missed messages' });
  await sleep(100);
  assert.deepEqual(offsetsOf(got2), [4, 5]);
  assert.ok(got2.every((m) => m.replayed));
  // Unsubscribing forgets the position.
  got2.unsub();
  await sleep(50);
  assert.ok(![...store.keys()].some((k) => k.endsWith('|unit.persist')));
});

test('unsubscribe stops delivery; a refused subscription is an error', async () => {
  const b = await broker();
  const c = client(b.url);
  const a = collect(c, 'unit.unsub');
  const other = collect(c, 'unit.unsub');
  await a.unsub.ready;
  await c.publish('unit.unsub', 1);
  await waitFor(() => a.length === 1 && other.length === 1, { what: 'both handlers' });
  a.unsub();
  await c.publish('unit.unsub', 2);
  await waitFor(() => other.length === 2, { what: 'remaining handler' });
  assert.equal(a.length, 1);
  const bad = c.subscribe('no spaces allowed', () => {});
  await assert.rejects(bad.ready, (e) => e.code === 'invalid_topic');
  assert.ok(c.events.some(([e, err]) => e === 'error' && err.code === 'invalid_topic'));
  await assert.rejects(c.publish('bad topic', 1), (e) => e.code === 'invalid_topic');
});

test('requests time out with a clear error', async () => {
  // A server that accepts WebSockets and never answers.
  const mute = new WS.WebSocketServer({ port: 0, host: '127.0.0.1' });
  await new Promise((r) => mute.once('listening', r));
  const c = client(`ws://127.0.0.1:${mute.address().port}/ws`, { timeout: 300 });
  await assert.rejects(c.publish('t', 1), (e) => e.code === 'timeout' &&
    /publish to "t" timed out after 300 ms/.test(e.message));
  c.close();
  // Never connected at all.
  const d = client('ws://127.0.0.1:1/ws', { timeout: 300 });
  await assert.rejects(d.publish('t', 1), /timed out after 300 ms \(not connected\)/);
  d.close();
  await assert.rejects(d.publish('t', 1), (e) => e.code === 'closed');
  mute.close();
});

/** A scripted broker: onConnection(ws, req) decides; counts connections. */
async function scripted(onConnection, { refuse } = {}) {
  const http = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('ok\n'); // /healthz
  });
  const wss = new WS.WebSocketServer({ noServer: true });
  const s = { connections: 0, urls: [] };
  http.on('upgrade', (req, sock, head) => {
    s.connections++;
    s.urls.push(req.url);
    if (refuse) {
      sock.end(`HTTP/1.1 ${refuse}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
      return;
    }
    wss.handleUpgrade(req, sock, head, (ws) => onConnection(ws, req));
  });
  await new Promise((r) => http.listen(0, '127.0.0.1', r));
  s.url = `ws://127.0.0.1:${http.address().port}/ws`;
  s.close = () => { wss.close(); http.closeAllConnections(); http.close(); };
  return s;
}

test('an unsolicited subscribed (epoch changed under the subscription) is a gap', async () => {
  const A = 'a'.repeat(32), B = 'b'.repeat(32);
  const s = await scripted((ws) => {
    ws.on('message', (raw) => {
      const m = JSON.parse(raw.toString());
      if (m.op !== 'subscribe') return;
      const send = (o) => ws.send(JSON.stringify(o));
      send({ op: 'subscribed', id: m.id, topic: m.topic, epoch: A, offset: 2, recovered: false });
      send({ op: 'message', topic: m.topic, offset: 3, ts: 1, data: 'a3' });
      // Redis restarted: a new epoch, its retained messages, then live.
      send({ op: 'subscribed', topic: m.topic, epoch: B, offset: 2, recovered: false });
      send({ op: 'message', topic: m.topic, offset: 1, ts: 2, data: 'b1' });
      send({ op: 'message', topic: m.topic, offset: 2, ts: 3, data: 'b2' });
      send({ op: 'message', topic: m.topic, offset: 3, ts: 4, data: 'b3' });
    });
  });
  const c = client(s.url);
  const got = collect(c, 'e');
  await waitFor(() => got.length === 4, { what: 'four messages' });
  assert.deepEqual(got.map((m) => [m.epoch, m.offset, m.data]),
    [[A, 3, 'a3'], [B, 1, 'b1'], [B, 2, 'b2'], [B, 3, 'b3']]);
  const gaps = c.events.filter(([e]) => e === 'gap').map(([, g]) => g);
  assert.equal(gaps.length, 1);
  assert.equal(gaps[0].previousEpoch, A);
  assert.equal(gaps[0].epoch, B);
  assert.deepEqual(c.position('e'), { epoch: B, offset: 3 });
  c.close();
  s.close();
});

test('close 1008 is reported and not retried', async () => {
  const s = await scripted((ws) => ws.close(1008, 'token expired'));
  const c = client(s.url, { token: 'abc' });
  await waitFor(() => c.state === 'closed', { what: 'closed' });
  await sleep(500);
  assert.equal(s.connections, 1);
  const err = c.events.find(([e]) => e === 'error')[1];
  assert.equal(err.code, 'policy');
  assert.match(err.message, /token expired/);
  assert.equal(s.urls[0], '/ws?token=abc');
  await assert.rejects(c.publish('t', 1), (e) => e.code === 'policy' || e.code === 'closed');
  s.close();
});

test('1001 and 1013 closes are reconnected', async () => {
  let n = 0;
  const s = await scripted((ws) => {
    n++;
    if (n === 1) ws.close(1001, 'broker shutting down');
    else if (n === 2) ws.close(1013, 'slow consumer');
  });
  const c = client(s.url);
  await waitFor(() => n === 3 && c.state === 'open', { what: 'third connection open' });
  const closes = c.events.filter(([e, , i]) => e === 'state' && i?.code).map(([, , i]) => i.code);
  assert.deepEqual(closes, [1001, 1013]);
  s.close();
});

test('an expired token refused at the handshake is reported once, not hammered', async () => {
  const s = await scripted(null, { refuse: '401 Unauthorized' });
  const now = Math.floor(Date.now() / 1000);
  const c = client(s.url, { token: makeToken('k', { exp: now - 10 }) });
  await waitFor(() => c.state === 'closed', { what: 'closed' });
  await sleep(600);
  assert.equal(s.connections, 1);
  const errs = c.events.filter(([e]) => e === 'error').map(([, e]) => e.code);
  assert.deepEqual(errs, ['token_expired']);
  s.close();
});

test('a handshake refused for another reason is reported after 3 tries, then slow retries', async () => {
  const s = await scripted(null, { refuse: '401 Unauthorized' });
  const now = Math.floor(Date.now() / 1000);
  let asked = 0;
  const c = client(s.url, {
    token: () => { asked++; return makeToken('k', { exp: now + 3600 }); },
    backoff: { min: 50, max: 5000 },
  });
  await waitFor(() => c.events.some(([e, err]) => e === 'error' && err.code === 'handshake_refused'),
    { what: 'handshake_refused' });
  const at = s.connections;
  await sleep(1500);
  assert.ok(s.connections - at <= 1, `${s.connections - at} more attempts after the report`);
  assert.ok(asked >= 3, 'the token provider is called before each attempt');
  assert.equal(c.state, 'connecting');
  c.close();
  s.close();
});

test("the browser's 'online' event reconnects at once", async () => {
  const b = await broker();
  globalThis.window = new EventTarget(); // what the client listens on
  try {
    const c = client(b.url, { backoff: { min: 20000, max: 20000 } });
    const got = collect(c, 'unit.online');
    await got.unsub.ready;
    await b.stop();
    await waitFor(() => c.events.some(([e, , i]) => e === 'state' && i?.retryIn >= 10000),
      { what: 'a long retry delay' });
    await b.start();
    await cliPub(b.url, 'unit.online', 'while offline');
    window.dispatchEvent(new Event('online'));
    await waitFor(() => got.length === 1, { timeout: 3000, what: 'resumed at once' });
    assert.equal(got[0].replayed, true);
    c.close();
  } finally {
    delete globalThis.window;
  }
});
