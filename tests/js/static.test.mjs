// chorusd serves the browser client and the demo page from its built-in
// copies, with caching headers, and files under web_root first.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { Broker, CLIENT_JS, CLIENT_DIR, tempDir } from '../browser/helpers.mjs';

const sha = (s) => createHash('sha256').update(s).digest('hex');
const brokers = [];
after(async () => { for (const b of brokers) await b.cleanup(); });
async function broker(conf) {
  const b = await new Broker(conf).start();
  brokers.push(b);
  return b;
}

test('/chorus.js: the client, as JavaScript, with an ETag that revalidates', async () => {
  const b = await broker();
  const r = await fetch(`${b.http}/chorus.js`);
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('content-type'), 'text/javascript; charset=utf-8');
  assert.equal(r.headers.get('cache-control'), 'no-cache');
  const etag = r.headers.get('etag');
  assert.match(etag, /^"[0-9a-f]{20}"$/);
  assert.equal(sha(await r.text()), sha(readFileSync(CLIENT_JS, 'utf8')),
    'the same bytes as client/js/chorus.js (rebuild chorusd after editing it)');

  const again = await fetch(`${b.http}/chorus.js`, { headers: { 'If-None-Match': etag } });
  assert.equal(again.status, 304);
  assert.equal(again.headers.get('etag'), etag);
  assert.equal(await again.text(), '');
  const list = await fetch(`${b.http}/chorus.js`, { headers: { 'If-None-Match': `"x", W/${etag}` } });
  assert.equal(list.status, 304);
  const stale = await fetch(`${b.http}/chorus.js`, { headers: { 'If-None-Match': '"0000"' } });
  assert.equal(stale.status, 200);

  const head = await fetch(`${b.http}/chorus.js`, { method: 'HEAD' });
  assert.equal(head.status, 200);
  assert.equal(head.headers.get('content-length'), String(Buffer.byteLength(readFileSync(CLIENT_JS))));
  const post = await fetch(`${b.http}/chorus.js`, { method: 'POST', body: '' });
  assert.equal(post.status, 405);
});

test('/chorus-ws.js and /chorus-sse.js: the transports chorus.js imports, beside it', async () => {
  const b = await broker();
  for (const name of ['chorus-ws.js', 'chorus-sse.js']) {
    const r = await fetch(`${b.http}/${name}`);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), 'text/javascript; charset=utf-8');
    assert.equal(sha(await r.text()), sha(readFileSync(join(CLIENT_DIR, name), 'utf8')));
    assert.ok(readFileSync(CLIENT_JS, 'utf8').includes(`from './${name}'`), `${name} imported relatively`);
  }
});

test('/ and /index.html: the demo page and its files', async () => {
  const b = await broker();
  for (const path of ['/', '/index.html']) {
    const r = await fetch(`${b.http}${path}`);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), 'text/html; charset=utf-8');
    const html = await r.text();
    assert.match(html, /<title>Chorus live demo<\/title>/);
    assert.doesNotMatch(html, /https?:\/\//, 'no external resources');
  }
  const css = await fetch(`${b.http}/demo.css`);
  assert.equal(css.headers.get('content-type'), 'text/css; charset=utf-8');
  const js = await fetch(`${b.http}/demo.js`);
  assert.match(await js.text(), /from '\/chorus.js'/);
  assert.equal((await fetch(`${b.http}/nothing-here.js`)).status, 404);
  assert.equal((await fetch(`${b.http}/%2e%2e/etc/passwd`)).status, 404);
});

test('web_root is served first; the built-in files stay as fallback', async () => {
  const root = tempDir('webroot');
  writeFileSync(join(root, 'index.html'), '<h1>my app</h1>');
  mkdirSync(join(root, 'sub'));
  writeFileSync(join(root, 'sub', 'app.js'), 'export const x = 1;\n');
  const b = await broker({ web_root: root });
  const index = await fetch(`${b.http}/`);
  assert.equal(await index.text(), '<h1>my app</h1>');
  const etag = index.headers.get('etag');
  assert.ok(etag, 'web_root files have an ETag');
  assert.equal((await fetch(`${b.http}/`, { headers: { 'If-None-Match': etag } })).status, 304);
  const app = await fetch(`${b.http}/sub/app.js`);
  assert.equal(app.headers.get('content-type'), 'text/javascript; charset=utf-8');
  assert.equal(await app.text(), 'export const x = 1;\n');
  const client = await fetch(`${b.http}/chorus.js`);
  assert.equal(client.status, 200, 'built-in /chorus.js still served');
  assert.equal(sha(await client.text()), sha(readFileSync(CLIENT_JS, 'utf8')));
  // A web_root's own chorus.js wins (a deployment may pin its copy).
  writeFileSync(join(root, 'chorus.js'), '// pinned\n');
  assert.equal(await (await fetch(`${b.http}/chorus.js`)).text(), '// pinned\n');
});
