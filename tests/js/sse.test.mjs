// Unit tests of chorus.js's Server-Sent Events transport and of the 'auto'
// fallback, against the real chorusd's GET /sse/{topic}, directly or
// through a proxy that breaks WebSocket (helpers.mjs), and a scripted SSE
// server for the one thing chorusd cannot be made to do on demand (an epoch
// change under a live stream). Node's own EventSource is injected, as a
// browser would provide it; run.sh turns it on.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { createServer } from 'node:http';
import { Chorus } from '../../client/js/chorus.js';
import { Broker, cliPub, waitFor, sleep, makeToken, noWebSocketProxy } from '../browser/helpers.mjs';

const require = createRequire(new URL('../browser/package.json', import.meta.url));
const WS = require('ws');
const NodeEventSource = globalThis.EventSource;
if (!NodeEventSource) throw new Error('no EventSource in this Node: run it with --experimental-eventsource (run.sh does)');

const cleanups = [];
after(async () => { for (const f of cleanups.reverse()) await f(); });

async function broker(conf) {
  const b = await new Broker(conf).start();
  cleanups.push(() => b.cleanup());
  return b;
}

async function proxyTo(b) {
  const p = await noWebSocketProxy(b.http);
  cleanups.push(() => p.close());
  return p;
}

function client(url, opts = {}) {
  const c = new Chorus(url, {
    WebSocket: WS, EventSource: NodeEventSource, backoff: { min: 50, max: 400 }, ...opts,
  });
  c.events = [];
  for (const ev of ['state', 'gap', 'replayed', 'error', 'transport']) {
    c.on(ev, (a, b) => c.events.push([ev, a, b]));
  }
  cleanups.push(() => c.close());
  return c;
}

function collect(c, topic, opts) {
  const got = [];
  got.unsub = c.subscribe(topic, (data, meta) => got.push({ data, ...meta }), opts);
  return got;
}

const offsetsOf = (got) => got.map((m) => m.offset);
const range = (a, b) => Array.from({ length: b - a + 1 }, (_, i) => a + i);
const eventsOf = (c, name) => c.events.filter(([e]) => e === name).map(([, a, b]) => [a, b]);

function assertExactlyOnce(got, newest, what) {
  const offs = offsetsOf(got);
  assert.deepEqual(offs.filter((o, i) => offs.indexOf(o) !== i), [], `${what}: offsets delivered twice`);
  assert.deepEqual(offs, range(1, newest), `${what}: every offset 1..${newest} once, in order`);
}

test("transport 'sse': streams per topic, HTTP publish, the same meta and errors", async () => {
  const b = await broker();
  const c = client(b.url, { transport: 'sse' });
  assert.equal(c.transport, 'sse');
  const got = collect(c, 'sse.basic');
  const sub = await got.unsub.ready;
  assert.equal(sub.offset, 0);
  assert.match(sub.epoch, /^[0-9a-f]{32}$/);
  await waitFor(() => c.state === 'open', { what: 'open' });
  assert.equal(await c.publish('sse.basic', { text: 'hi' }), 1);
  const multi = 'two\nlines\r\nand a third\n\ndata: not an event';
  assert.equal(await c.publish('sse.basic', multi), 2);
  await waitFor(() => got.length === 2, { what: '2 messages' });
  assert.deepEqual(got[0].data, { text: 'hi' });
  assert.equal(got[1].data, multi, 'line breaks inside data arrive as one message');
  assert.equal(got[0].topic, 'sse.basic');
  assert.equal(got[0].epoch, sub.epoch);
  assert.equal(got[0].replayed, false);
  assert.ok(Math.abs(got[0].ts - Date.now()) < 60000);
  assert.ok((await c.ping()) >= 0);
  assert.deepEqual(c.position('sse.basic'), { epoch: sub.epoch, offset: 2 });

  // A second topic: its own stream; the first goes on.
  const other = collect(c, 'sse.other');
  await other.unsub.ready;
  await cliPub(b.url, 'sse.other', '"from the CLI"');
  await cliPub(b.url, 'sse.basic', 3);
  await waitFor(() => other.length === 1 && got.length === 3, { what: 'both topics' });
  assert.equal(other[0].data, 'from the CLI');

  // Refusals carry the broker's code, as over WebSocket.
  await assert.rejects(c.publish('bad topic', 1), (e) => e.code === 'invalid_topic');
  const bad = c.subscribe('no spaces allowed', () => {});
  await assert.rejects(bad.ready, (e) => e.code === 'invalid_topic');
  assert.ok(c.events.some(([e, err]) => e === 'error' && err.code === 'invalid_topic'));

  // Unsubscribing closes that stream only.
  got.unsub();
  await c.publish('sse.basic', 4);
  await c.publish('sse.other', 'still here');
  await waitFor(() => other.length === 2, { what: 'remaining topic' });
  assert.equal(got.length, 3);
  assert.equal(c.state, 'open');
  assert.deepEqual(eventsOf(c, 'transport'), [], 'no transport change');
});

test("'auto' behind a proxy that breaks WebSocket moves to SSE after 3 handshakes", async () => {
  const b = await broker();
  const p = await proxyTo(b);
  const c = client(p.url, { upgradeInterval: 0 });
  assert.equal(c.transport, 'websocket');
  const got = collect(c, 'auto.feed');
  const early = c.publish('auto.feed', 'published while connecting');
  await waitFor(() => c.transport === 'sse', { what: 'fallback to SSE' });
  // refusedAfter handshakes, and one more if the check was slower than the
  // next retry.
  const tries = p.upgrades;
  assert.ok(tries === 3 || tries === 4, `${tries} handshakes before the fallback`);
  const [[to, { reason }]] = eventsOf(c, 'transport');
  assert.equal(to, 'sse');
  assert.match(reason, /^[34] WebSocket handshakes failed while the broker answers over HTTP$/);
  assert.equal(await early, 1, 'a publish waiting for the connection goes over HTTP once');
  await got.unsub.ready;
  await c.publish('auto.feed', 'after');
  await waitFor(() => got.length >= 1 && got.at(-1).data === 'after', { what: 'live over SSE' });
  assert.deepEqual(offsetsOf(got).slice(-1), [2]);
  assert.equal(c.state, 'open');
  assert.deepEqual(eventsOf(c, 'error'), []);
  assert.ok(p.paths.includes('POST /api/publish/auto.feed'), 'published through the proxy');
  assert.equal(p.upgrades, tries, 'upgradeInterval 0: no more WebSocket attempts');
});

test("'auto' with nothing subscribed decides on /healthz, then publishes over HTTP", async () => {
  const b = await broker();
  const p = await proxyTo(b);
  const c = client(p.url, { upgradeInterval: 0 });
  const offset = c.publish('auto.nosub', 'only a publish');
  await waitFor(() => c.transport === 'sse', { what: 'fallback to SSE' });
  assert.equal(await offset, 1);
  assert.ok(p.paths.includes('GET /healthz'), 'the check was /healthz');
  assert.ok(!p.paths.some((x) => x.startsWith('GET /sse/')), 'no stream without a topic');
  assert.equal(c.state, 'open');
});

test('SSE: broker killed with kill -9 and restarted: resumed, every offset once', async () => {
  const topic = 'sse.restart';
  const b = await broker();
  const p = await proxyTo(b);
  const c = client(p.url, { transport: 'sse' });
  const got = collect(c, topic);
  await got.unsub.ready;
  await cliPub(b.url, topic, [1, 2, 3]);
  await waitFor(() => got.length === 3, { what: '3 live messages' });

  p.refuse = 503; // the client cannot come back before we publish
  await b.kill9();
  await waitFor(() => c.state === 'connecting', { what: 'stream lost' });
  await b.start();
  await cliPub(b.url, topic, [4, 5, 6, 7]);
  await sleep(300); // a few refused attempts, retried with backoff
  p.refuse = 0;
  await waitFor(() => got.length === 7, { what: '7 messages' });
  await sleep(200);
  assertExactlyOnce(got, 7, 'after kill -9');
  assert.deepEqual(got.map((m) => m.replayed), [false, false, false, true, true, true, true]);
  assert.deepEqual(eventsOf(c, 'replayed').map(([r]) => r), [{ topic, count: 4, recovered: true }]);
  assert.deepEqual(eventsOf(c, 'gap'), []);
  assert.equal(c.state, 'open');
  await c.publish(topic, 8);
  await waitFor(() => got.length === 8, { what: 'live after the resume' });
});

test('SSE: a foreign epoch or trimmed history gives gap, then what the broker has', async () => {
  const b = await broker({ history_size: 3 });
  await cliPub(b.url, 'sse.gap', ['a', 'b', 'c', 'd', 'e']);
  // The trim runs on a one-second timer.
  await waitFor(async () => (await b.history('sse.gap')).messages.map((m) => m.offset).join() === '3,4,5',
    { what: 'history trimmed to 3,4,5' });
  const c = client(b.url, { transport: 'sse' });
  const foreign = [];
  c.subscribe('sse.gap', (d, m) => foreign.push([d, m.offset]),
    { since: { epoch: '0123456789abcdef0123456789abcdef', offset: 2 } });
  await waitFor(() => foreign.length === 3, { what: 'retained messages' });
  assert.deepEqual(foreign, [['c', 3], ['d', 4], ['e', 5]]);
  assert.equal(eventsOf(c, 'gap').length, 1, 'one gap event per lost resume');
  const [[gap]] = eventsOf(c, 'gap');
  assert.equal(gap.topic, 'sse.gap');
  assert.equal(gap.previousEpoch, '0123456789abcdef0123456789abcdef');
  assert.equal(gap.offset, 5);

  // Same epoch, but offsets 2..4 were trimmed.
  const epoch = gap.epoch;
  const d = client(b.url, { transport: 'sse' });
  const trimmed = collect(d, 'sse.gap', { since: { epoch, offset: 1 } });
  await waitFor(() => trimmed.length === 3, { what: 'what is left' });
  assert.deepEqual(offsetsOf(trimmed), [3, 4, 5]);
  assert.equal(eventsOf(d, 'gap').length, 1);
  const [[g2]] = eventsOf(d, 'gap');
  assert.deepEqual([g2.epoch, g2.previousEpoch, g2.since, g2.offset], [epoch, epoch, 1, 5]);
  assert.deepEqual(eventsOf(d, 'replayed').map(([r]) => r), [{ topic: 'sse.gap', count: 3, recovered: false }]);
});

test('SSE with tokens: ?token= for streams, Bearer for publishes, 401 and 403 reported', async () => {
  const secret = 'sse-unit-test-secret-of-at-least-32-bytes';
  const b = await broker({ auth_secret: secret, allow_anonymous: 'off' });
  const now = Math.floor(Date.now() / 1000);
  const token = makeToken(secret, { sub: 'u', exp: now + 3600, subscribe: ['ok.*'], publish: ['ok.*'] });
  const c = client(b.url, { transport: 'sse', token: () => token });
  const got = collect(c, 'ok.a');
  await got.unsub.ready;
  assert.equal(await c.publish('ok.a', 'allowed'), 1);
  await waitFor(() => got.length === 1, { what: 'message' });
  await assert.rejects(c.publish('no.b', 1), (e) => e.code === 'forbidden' && e.status === 403);
  const refused = c.subscribe('no.b', () => {});
  await assert.rejects(refused.ready, (e) => e.code === 'forbidden' && /no\.b/.test(e.message));
  assert.equal(c.state, 'open', 'a refused topic does not hold the client back');
  assert.ok(!b.log().includes(token), 'the token never reaches the log');

  // An expired token: reported, not retried.
  const expired = makeToken(secret, { sub: 'u', exp: now - 10, subscribe: ['ok.*'] });
  const e = client(b.url, { transport: 'sse', token: expired });
  collect(e, 'ok.a');
  await waitFor(() => e.state === 'closed', { what: 'stopped' });
  assert.deepEqual(eventsOf(e, 'error').map(([err]) => err.code), ['token_expired']);

  // A forged token: the broker's reason, once, then slow retries.
  const forged = makeToken('not-the-secret-not-the-secret-not-the', { sub: 'u', exp: now + 3600 });
  const f = client(b.url, { transport: 'sse', token: forged, backoff: { min: 50, max: 5000 } });
  collect(f, 'ok.a');
  await waitFor(() => eventsOf(f, 'error').length > 0, { what: 'refusal reported' });
  await sleep(1000);
  const errs = eventsOf(f, 'error').map(([err]) => err);
  assert.equal(errs.length, 1);
  assert.equal(errs[0].status, 401);
  assert.match(errs[0].message, /refused the stream of "ok\.a"/);
  assert.equal(f.state, 'connecting');
});

test("'auto' does not fall back when the broker refuses this client over HTTP too", async () => {
  const secret = 'sse-unit-test-secret-of-at-least-32-bytes';
  const b = await broker({ auth_secret: secret, allow_anonymous: 'off' });
  const now = Math.floor(Date.now() / 1000);
  const forged = makeToken('not-the-secret-not-the-secret-not-the', { sub: 'u', exp: now + 3600 });
  const c = client(b.url, { token: forged, backoff: { min: 50, max: 5000 } });
  collect(c, 'ok.a');
  await waitFor(() => eventsOf(c, 'error').length > 0, { what: 'handshake_refused' });
  const [[err]] = eventsOf(c, 'error');
  assert.equal(err.code, 'handshake_refused');
  assert.match(err.message, /its HTTP answer: 401/);
  assert.equal(c.transport, 'websocket');
  assert.deepEqual(eventsOf(c, 'transport'), []);
});

test("'websocket' never falls back, even where 'auto' would", async () => {
  const b = await broker();
  const p = await proxyTo(b);
  const w = client(p.url, { transport: 'websocket', backoff: { min: 50, max: 200 } });
  collect(w, 'sse.never');
  await waitFor(() => eventsOf(w, 'error').some(([e]) => e.code === 'handshake_refused'),
    { what: 'handshake_refused in websocket mode' });
  assert.equal(w.transport, 'websocket');
  assert.deepEqual(eventsOf(w, 'transport'), []);
  assert.ok(!p.paths.some((x) => x.startsWith('GET /sse/')), 'no stream asked for');
});

test("'auto' moves WebSocket -> SSE -> WebSocket while publishes go on: every offset once", async () => {
  const topic = 'sse.moves';
  const b = await broker();
  const p = await proxyTo(b);
  p.allowWebSocket = true;
  const c = client(p.url, { upgradeInterval: 300 });
  const got = collect(c, topic);
  await got.unsub.ready;
  assert.equal(c.transport, 'websocket');
  let running = true;
  let n = 0;
  const publisher = (async () => {
    while (running) { await cliPub(b.url, topic, n++); await sleep(20); }
  })();
  const more = async (k, what) => {
    const at = got.length;
    await waitFor(() => got.length >= at + k, { what });
  };
  await more(5, 'messages over WebSocket');
  // The path starts breaking WebSocket: the socket drops, handshakes fail.
  p.allowWebSocket = false;
  p.dropWebSockets();
  await waitFor(() => c.transport === 'sse', { what: 'fallback to SSE' });
  await more(5, 'messages over SSE');
  p.allowWebSocket = true;
  await waitFor(() => c.transport === 'websocket', { what: 'back on WebSocket' });
  await more(5, 'messages over WebSocket again');
  running = false;
  await publisher;
  const { offset: newest } = await b.history(topic);
  await waitFor(() => got.length >= newest, { what: `all ${newest}` });
  await sleep(200);
  assertExactlyOnce(got, newest, 'across both moves');
  assert.deepEqual(eventsOf(c, 'transport').map(([t]) => t), ['sse', 'websocket']);
  assert.equal(c.state, 'open');
  assert.deepEqual(eventsOf(c, 'error'), []);
});

const event = (res, name, id, o) =>
  res.write(`${id ? `id: ${id}\n` : ''}event: ${name}\ndata: ${JSON.stringify(o)}\n\n`);

/** A scripted SSE broker: GET /sse/TOPIC runs onStream(res, url); anything
 *  else is /healthz. */
async function scriptedSse(onStream) {
  const http = createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    if (!url.pathname.startsWith('/sse/')) return res.end('ok\n');
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    onStream(res, url);
  });
  await new Promise((r) => http.listen(0, '127.0.0.1', r));
  const s = { url: `ws://127.0.0.1:${http.address().port}/ws` };
  s.close = () => { http.closeAllConnections(); http.close(); };
  cleanups.push(() => s.close());
  return s;
}

test('SSE: an epoch change under a live stream is a gap, then the new epoch', async () => {
  const A = 'a'.repeat(32), B = 'b'.repeat(32);
  const s = await scriptedSse((res, url) => {
    assert.equal(url.searchParams.get('since'), null);
    res.write('retry: 1500\n\n');
    event(res, 'subscribed', `${A}:2`, { topic: 'e', epoch: A, offset: 2, recovered: true });
    const ev = (name, id, o) => event(res, name, id, o);
    ev('message', `${A}:3`, { topic: 'e', offset: 3, ts: 1, data: 'a3' });
    res.write(': ping\n\n');
    // Redis restarted: as PROTOCOL.md says, subscribed for the new epoch
    // (recovered: false), gap, its retained messages, then live.
    ev('subscribed', `${B}:0`, { topic: 'e', epoch: B, offset: 2, recovered: false });
    ev('gap', null, { epoch: B, offset: 2 });
    ev('message', `${B}:1`, { topic: 'e', offset: 1, ts: 2, data: 'b1' });
    ev('message', `${B}:2`, { topic: 'e', offset: 2, ts: 3, data: 'b2' });
    ev('message', `${B}:3`, { topic: 'e', offset: 3, ts: 4, data: 'b3' });
  });
  const c = client(s.url, { transport: 'sse' });
  const got = collect(c, 'e');
  await waitFor(() => got.length === 4, { what: 'four messages' });
  assert.deepEqual(got.map((m) => [m.epoch, m.offset, m.data]),
    [[A, 3, 'a3'], [B, 1, 'b1'], [B, 2, 'b2'], [B, 3, 'b3']]);
  const gaps = eventsOf(c, 'gap').map(([g]) => g);
  assert.equal(gaps.length, 1);
  assert.deepEqual([gaps[0].previousEpoch, gaps[0].epoch], [A, B]);
  assert.deepEqual(c.position('e'), { epoch: B, offset: 3 });
});

test("SSE: the broker's close event: 1013 resumes from the position, 1008 stops", async () => {
  const A = 'c'.repeat(32);
  const searches = [];
  const s = await scriptedSse((res, url) => {
    searches.push(url.search);
    if (searches.length === 1) {
      event(res, 'subscribed', `${A}:0`, { topic: 'c', epoch: A, offset: 0, recovered: true });
      event(res, 'message', `${A}:1`, { topic: 'c', offset: 1, ts: 1, data: 'm1' });
      event(res, 'close', null, { code: 1013, reason: 'slow consumer' });
    } else {
      event(res, 'subscribed', `${A}:1`, { topic: 'c', epoch: A, offset: 2, recovered: true });
      event(res, 'message', `${A}:1`, { topic: 'c', offset: 1, ts: 1, data: 'm1 again' });
      event(res, 'message', `${A}:2`, { topic: 'c', offset: 2, ts: 2, data: 'm2' });
      event(res, 'close', null, { code: 1008, reason: 'token expired' });
    }
    res.end();
  });
  const c = client(s.url, { transport: 'sse' });
  const got = collect(c, 'c');
  await waitFor(() => c.state === 'closed', { what: 'stopped by 1008' });
  assert.deepEqual(searches, ['', `?since=${A}%3A1`], 'resumed from the last offset handled');
  assert.deepEqual(got.map((m) => [m.offset, m.data, m.replayed]), [[1, 'm1', false], [2, 'm2', true]]);
  const lost = eventsOf(c, 'state').find(([st, i]) => st === 'connecting' && i.code === 1013);
  assert.ok(lost, 'the 1013 close reached the state info');
  assert.equal(lost[1].reason, 'slow consumer');
  assert.deepEqual(eventsOf(c, 'replayed').map(([r]) => r), [{ topic: 'c', count: 1, recovered: true }]);
  const errs = eventsOf(c, 'error').map(([e]) => e);
  assert.deepEqual(errs.map((e) => e.code), ['policy']);
  assert.match(errs[0].message, /token expired/);
  await sleep(300);
  assert.equal(searches.length, 2, 'not retried after 1008');
});
