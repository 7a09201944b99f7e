// The demo page served at / by chorusd: one topic at a time, live messages
// with their offsets, a publish form, a connection indicator and a notice
// of what a reconnect replayed, and the transport in use (WebSocket, or
// Server-Sent Events after a fallback). URL parameters: ?topic=NAME&token=JWT
// &transport=auto|websocket|sse.
import { Chorus } from '/chorus.js';

const MAX_ROWS = 1000; // older rows are dropped so a busy topic stays fast
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const wsUrl = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;

const TRANSPORTS = ['auto', 'websocket', 'sse'];
const transport = TRANSPORTS.includes(params.get('transport')) ? params.get('transport') : 'auto';
const client = new Chorus(wsUrl, { token: params.get('token') || undefined, persist: true, transport });
// For debugging from the console (and for the browser tests).
const demo = { client, offsets: [], replayed: 0, errors: [] };
window.chorusDemo = demo;

let unsubscribe = null;
let topic = '';

function log(text) {
  const li = document.createElement('li');
  li.textContent = `${new Date().toLocaleTimeString()} ${text}`;
  $('log').prepend(li);
  while ($('log').children.length > 200) $('log').lastChild.remove();
}

function preview(data) {
  const s = typeof data === 'string' ? data : JSON.stringify(data);
  return s.length > 300 ? `${s.slice(0, 300)}… (${s.length} chars)` : s;
}

function showNotice(text, kind = '') {
  const n = $('notice');
  n.textContent = text;
  n.className = `notice ${kind}`;
  n.hidden = false;
}

function onMessage(data, meta) {
  demo.offsets.push(meta.offset);
  const li = document.createElement('li');
  li.dataset.offset = meta.offset;
  if (meta.replayed) li.className = 'replayed';
  const off = document.createElement('span');
  off.className = 'off';
  off.textContent = `#${meta.offset}`;
  const body = document.createElement('span');
  body.className = 'data';
  body.textContent = preview(data);
  const time = document.createElement('time');
  const when = new Date(meta.ts);
  time.dateTime = when.toISOString();
  time.textContent = when.toLocaleTimeString();
  li.append(off, body, time);
  const list = $('messages');
  list.prepend(li);
  while (list.children.length > MAX_ROWS) list.lastChild.remove();
  $('count').textContent = demo.offsets.length;
  $('empty').hidden = true;
}

function watch(name) {
  if (unsubscribe) unsubscribe();
  topic = name;
  demo.offsets = [];
  $('messages').replaceChildren();
  $('count').textContent = '0';
  $('empty').hidden = false;
  $('notice').hidden = true;
  $('current-topic').textContent = name;
  $('topic').value = name;
  document.title = `${name} · Chorus`;
  const url = new URL(location.href);
  url.searchParams.set('topic', name);
  history.replaceState(null, '', url);
  unsubscribe = client.subscribe(name, onMessage);
  unsubscribe.ready.then(
    (s) => log(`subscribed to ${name} (epoch ${s.epoch.slice(0, 8)}…, newest offset ${s.offset})`),
    (e) => showNotice(`Cannot subscribe to ${name}: ${e.message}`, 'gap'));
}

const STATE_TEXT = { open: 'live', connecting: 'connecting…', closed: 'disconnected' };
const TRANSPORT_TEXT = { websocket: 'WebSocket', sse: 'SSE' };

function showTransport(name) {
  const badge = $('transport');
  badge.dataset.transport = name;
  badge.textContent = TRANSPORT_TEXT[name];
  badge.title = name === 'sse'
    ? 'Server-Sent Events: one stream per topic, publishing over HTTP'
    : 'one WebSocket for every topic';
}
showTransport(client.transport);

client.on('transport', (name, { reason }) => {
  showTransport(name);
  log(`transport: ${TRANSPORT_TEXT[name]} (${reason})`);
});

client.on('state', (state, info) => {
  const box = $('conn');
  box.dataset.state = state;
  let text = STATE_TEXT[state];
  if (state === 'connecting' && info.retryIn !== undefined) {
    text = `offline, retrying in ${Math.max(1, Math.round(info.retryIn / 1000))} s`;
  }
  if (state === 'closed' && info.error) text = `stopped: ${info.error.code.replace('_', ' ')}`;
  $('conn-text').textContent = text;
  const why = info.code ? ` (close ${info.code}${info.reason ? ` ${info.reason}` : ''})` : '';
  log(`${state}${why}`);
});

client.on('replayed', ({ topic: t, count }) => {
  if (t !== topic) return;
  demo.replayed += count;
  showNotice(`Resumed: replayed ${count} missed message${count === 1 ? '' : 's'}.`);
  log(`resumed ${t}: replayed ${count} missed messages`);
});

client.on('gap', ({ topic: t }) => {
  if (t !== topic) return;
  showNotice(`Some messages on ${t} were lost from history while offline; ` +
    'what the broker still has is shown.', 'gap');
  log(`gap on ${t}`);
});

client.on('error', (e) => {
  demo.errors.push({ code: e.code, message: e.message });
  log(`error ${e.code}: ${e.message}`);
  if (e.code === 'token_expired' || e.code === 'policy' || e.code === 'handshake_refused') {
    showNotice(e.code === 'token_expired'
      ? 'Your session token has expired. Reload with a new token to reconnect.'
      : e.message.replace(/^chorus: /, ''), 'gap');
  }
});

$('topic-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const name = $('topic').value.trim();
  if (name && name !== topic) watch(name);
});

$('pub-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const raw = $('data').value;
  if (!raw.trim()) return;
  let data = raw;
  try { data = JSON.parse(raw); } catch { /* plain text is sent as a string */ }
  const out = $('pub-result');
  const button = ev.submitter || ev.target.querySelector('button');
  button.disabled = true;
  try {
    const offset = await client.publish(topic, data);
    out.className = 'hint';
    out.textContent = `Published to ${topic} at offset ${offset}.`;
    $('data').value = '';
  } catch (e) {
    out.className = 'hint error';
    out.textContent = e.message.replace(/^chorus: /, '');
  } finally {
    button.disabled = false;
  }
});

watch(params.get('topic') || 'demo');
