// Real-browser test of the SSE fallback: the demo page, served through a
// proxy that breaks WebSocket (as proxies that strip `Upgrade` do), in
// headless Debian chromium against the real broker and the chorus CLI;
// and a page of another origin on SSE, which needs the broker's CORS.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import {
  Broker, launchBrowser, cliPub, floodBlockedPage, waitFor, sleep, noWebSocketProxy, makeToken, ARTIFACTS, CLIENT_DIR,
} from './helpers.mjs';

let browser;
const cleanups = [];

before(async () => { browser = await launchBrowser(); });
after(async () => {
  await browser?.close();
  for (const f of cleanups.reverse()) await f();
});

const offsets = (page) => page.evaluate(() => window.chorusDemo.offsets.slice());
const connState = (page) => page.evaluate(() => document.getElementById('conn').dataset.state);
const range = (n) => Array.from({ length: n }, (_, i) => i + 1);

test('WebSocket broken by a proxy: the page falls back to SSE, survives kill -9, every offset once', async () => {
  const topic = 'sse.browser';
  const b = await new Broker().start();
  cleanups.push(() => b.cleanup());
  const proxy = await noWebSocketProxy(b.http);
  cleanups.push(() => proxy.close());

  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  let sockets = 0;
  page.on('websocket', () => { sockets++; });
  await page.goto(`${proxy.http}/?topic=${topic}`);

  // The fallback: three refused handshakes, then one stream over SSE.
  const badge = page.locator('#transport');
  await page.locator('#transport[data-transport="sse"]').waitFor({ timeout: 10000 });
  assert.equal(await badge.textContent(), 'SSE');
  // Three, and one more if the check was slower than the next retry.
  assert.ok(sockets === 3 || sockets === 4, `${sockets} WebSocket attempts before the fallback`);
  assert.equal(proxy.upgrades, sockets);
  await waitFor(() => page.evaluate((t) => !!window.chorusDemo.client.position(t), topic),
    { what: 'page subscribed over SSE' });
  assert.equal(await connState(page), 'open');
  assert.match(await page.textContent('#log'), /transport: SSE \([34] WebSocket handshakes failed/);

  // Receives what the CLI publishes, and publishes from its form over HTTP.
  await cliPub(b.url, topic, '{"text":"hello over SSE"}');
  await page.locator('#messages li[data-offset="1"]').waitFor({ timeout: 5000 });
  assert.match(await page.textContent('#messages li[data-offset="1"]'), /hello over SSE/);
  await page.fill('#data', 'typed while on SSE');
  await page.click('#pub-form button');
  await page.locator('#messages li[data-offset="2"]').waitFor({ timeout: 5000 });
  assert.match(await page.textContent('#pub-result'), /offset 2/);
  assert.ok(proxy.paths.includes(`POST /api/publish/${topic}`), 'the page published over HTTP');
  mkdirSync(ARTIFACTS, { recursive: true });
  const shot = join(ARTIFACTS, 'demo-sse.png');
  await page.screenshot({ path: shot, fullPage: true });
  assert.ok(statSync(shot).size > 5000, 'screenshot is not blank');

  // kill -9 of the broker while the CLI publishes.
  let running = true;
  let acked = 0;
  const publisher = (async () => {
    while (running) {
      try {
        await cliPub(b.url, topic, JSON.stringify({ n: acked }), { timeout: 5000 });
        acked++;
      } catch {
        await sleep(50); // broker down: keep trying, as an app would
      }
    }
  })();
  await waitFor(async () => (await offsets(page)).length >= 12, { what: '10 more live messages' });
  await b.kill9();
  await waitFor(async () => (await connState(page)) !== 'open', { what: 'page notices the broker is gone' });
  await sleep(1000); // the page retries meanwhile, with growing delays
  // Keep the page away while the broker is back and the CLI publishes, so
  // that there is always something to replay.
  await page.context().setOffline(true);
  await b.start(); // same port, same database
  const before = acked;
  await waitFor(() => acked >= before + 3, { what: '3 publishes while the page is away' });
  await page.context().setOffline(false); // 'online': the page reconnects at once
  await sleep(1500);
  running = false;
  await publisher;

  const { offset: newest } = await b.history(topic);
  assert.ok(newest >= acked + 2 && acked > 10, `newest ${newest}, acked ${acked}`);
  await waitFor(async () => (await offsets(page)).length >= newest, { what: `all ${newest} offsets` });
  await sleep(300); // nothing more may arrive
  const got = await offsets(page);
  assert.deepEqual(got.filter((o, i) => got.indexOf(o) !== i), [], 'offsets delivered twice');
  assert.deepEqual(got, range(newest), `every offset 1..${newest} once, in order`);

  const notice = page.locator('#notice');
  await notice.waitFor({ state: 'visible', timeout: 5000 });
  const m = /replayed (\d+) missed message/.exec(await notice.textContent());
  assert.ok(m && Number(m[1]) >= 3, `replay notice: ${await notice.textContent()}`);
  assert.equal(await connState(page), 'open');
  assert.equal(await badge.getAttribute('data-transport'), 'sse', 'still on SSE');
  assert.deepEqual(await page.evaluate(() => window.chorusDemo.errors), []);
  assert.deepEqual(errors, []);
  await page.close();
});

test("transport 'sse' in the page: a slow-consumer close is resumed from with every offset once", async () => {
  const topic = 'sse.slow';
  const b = await new Broker({ max_outbound_bytes: '16k', history_size: 10000 }).start();
  cleanups.push(() => b.cleanup());
  const page = await browser.newPage();
  let streams = 0;
  page.on('request', (r) => { if (r.url().includes(`/sse/${topic}`)) streams++; });
  await page.goto(`${b.http}/?topic=${topic}&transport=sse`);
  assert.equal(await page.locator('#transport').getAttribute('data-transport'), 'sse');
  await waitFor(() => page.evaluate((t) => !!window.chorusDemo.client.position(t), topic),
    { what: 'page subscribed over SSE' });

  // chromium stops reading the stream and the broker's queue for it
  // passes 16k
  const COUNT = 4000;
  await floodBlockedPage(page, b.url, topic, COUNT);

  await waitFor(async () => (await offsets(page)).length >= COUNT,
    { timeout: 60000, what: `all ${COUNT} offsets after the slow-consumer close` });
  await sleep(300);
  const got = await offsets(page);
  assert.deepEqual(got.filter((o, i) => got.indexOf(o) !== i), [], 'offsets delivered twice');
  assert.deepEqual(got, range(COUNT), `every offset 1..${COUNT} once, in order`);
  assert.match(b.log(), /slow consumer/, 'the broker ended the stream as a slow consumer');
  assert.ok(streams >= 2, `the stream was opened again (${streams} stream requests)`);
  assert.equal(await connState(page), 'open');
  await page.close();
});

/** A page server on its own origin: the client files and a page that
 *  runs chorus.js on SSE against the broker named in its query. */
async function otherOriginPage() {
  const page = `<!doctype html><meta charset="utf-8"><title>other origin</title>
<script type="module">
import { Chorus } from '/chorus.js';
const q = new URLSearchParams(location.search);
const c = new Chorus(q.get('broker'), { transport: 'sse', token: q.get('token') });
window.got = [];
window.errors = [];
c.on('error', (e) => window.errors.push({ code: e.code, status: e.status }));
c.subscribe('x.feed', (data, meta) => window.got.push(meta.offset));
window.pub = (d) => c.publish('x.feed', d).then((o) => o, (e) => e.code);
window.denied = c.subscribe('secret.x', () => {}).ready.then(() => 'subscribed', (e) => e.code);
window.c = c;
</script>`;
  const http = createServer((req, res) => {
    const name = new URL(req.url, 'http://x').pathname.slice(1);
    if (['chorus.js', 'chorus-ws.js', 'chorus-sse.js'].includes(name)) {
      res.writeHead(200, { 'content-type': 'text/javascript' });
      return res.end(readFileSync(join(CLIENT_DIR, name)));
    }
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(page);
  });
  await new Promise((r) => http.listen(0, '127.0.0.1', r));
  const origin = `http://127.0.0.1:${http.address().port}`;
  cleanups.push(() => { http.closeAllConnections(); http.close(); });
  return origin;
}

test('a page on another admitted origin streams, publishes with a token (preflight) and reads a 403', async () => {
  const secret = 'browser-test-secret-of-at-least-32-bytes';
  const origin = await otherOriginPage();
  const b = await new Broker({ auth_secret: secret, allow_anonymous: 'off', allowed_origins: origin }).start();
  cleanups.push(() => b.cleanup());
  const token = makeToken(secret, {
    sub: 'page', exp: Math.floor(Date.now() / 1000) + 3600, subscribe: ['x.*'], publish: ['x.*'],
  });
  const page = await browser.newPage();
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  await page.goto(`${origin}/?broker=${encodeURIComponent(b.url)}&token=${encodeURIComponent(token)}`);
  await waitFor(() => page.evaluate(() => !!window.c?.position('x.feed')), { what: 'the stream from another origin' });
  // POST with Authorization and Content-Type: only after a preflight.
  assert.equal(await page.evaluate(() => window.pub({ n: 1 })), 1);
  assert.equal(await page.evaluate(() => window.pub({ n: 2 })), 2);
  await waitFor(() => page.evaluate(() => window.got.length === 2), { what: 'both messages' });
  assert.deepEqual(await page.evaluate(() => window.got), [1, 2]);
  // The 403 of a topic the token does not allow is read across origins.
  assert.equal(await page.evaluate(() => window.denied), 'forbidden');
  assert.ok((await page.evaluate(() => window.errors)).some((e) => e.code === 'forbidden' && e.status === 403));
  assert.deepEqual(pageErrors, []);
  await page.close();
});
