/**
 * chorus.js: the browser client of the Chorus pub/sub broker.
 * ES modules with no dependencies and no build step: this one (the API,
 * positions, requests, events) imports its transports from ./chorus-ws.js
 * and ./chorus-sse.js; keep the three files side by side. The broker
 * serves them at /chorus.js, /chorus-ws.js and /chorus-sse.js.
 * Full guide: docs/BROWSER.md.
 *
 *   import { Chorus } from '/chorus.js';
 *   const c = new Chorus('ws://localhost:8080/ws', { token });
 *   const off = c.subscribe('news', (data, meta) => show(data, meta.offset));
 *   const offset = await c.publish('news', { text: 'hi' });
 *   c.on('state', (s, info) => ...);   // 'connecting' | 'open' | 'closed'
 *   c.on('gap', ({ topic }) => refetch(topic));
 *   off(); c.close();
 *
 * new Chorus(url, options)
 *   url                 ws:// or wss:// URL of the broker's /ws endpoint.
 *   options.token       string, or a function returning a string or a
 *                       promise of one (called before every connection, so
 *                       it can refresh an expiring token). Sent as the
 *                       `token` query parameter.
 *   options.timeout     ms before publish/subscribe/ping fail (10000).
 *   options.backoff     {min: 250, max: 30000}: reconnect delays grow
 *                       exponentially from min to max, with jitter (each
 *                       delay is drawn between half and all of its step).
 *   options.persist     true or a key prefix string: remember each topic's
 *                       epoch and offset in localStorage, so a reloaded page
 *                       resumes where it left off (prefix 'chorus:').
 *   options.storage     a localStorage-like object to persist to instead.
 *   options.pingInterval ms of silence before the client pings the broker
 *                       to detect a dead connection (25000; 0 turns off).
 *   options.transport   'auto' (default), 'websocket' or 'sse'. 'auto'
 *                       starts with WebSocket and falls back to Server-Sent
 *                       Events when the handshake keeps failing while the
 *                       broker answers over HTTP (see Transports below).
 *   options.upgradeInterval ms between WebSocket attempts while 'auto' runs
 *                       on SSE (60000; 0: never try WebSocket again).
 *   options.WebSocket   a WebSocket constructor (default: the global one;
 *                       in Node, pass the `ws` package's).
 *   options.EventSource an EventSource constructor (default: the global).
 *   options.fetch       fetch for /healthz, HTTP publishes and probes
 *                       (default: the global one).
 *   options.connect     false: do not connect until connect() is called.
 *
 * Methods
 *   subscribe(topic, handler, {since}) -> unsubscribe()
 *       handler(data, meta), meta = {topic, offset, ts, epoch, replayed}.
 *       Messages reach handlers in offset order, each offset once per epoch,
 *       across reconnects. `since` ({epoch, offset}) starts from a known
 *       position; otherwise a persisted one is used, else live from now.
 *       The returned function has a `ready` promise: the first `subscribed`
 *       reply ({epoch, offset, recovered}), or the error that refused it.
 *       Unsubscribing the last handler of a topic forgets its position.
 *   publish(topic, data) -> Promise<offset>, once the broker stored it.
 *       Waits for a connection if there is none (within the timeout). A
 *       publish in flight when the connection drops is rejected with code
 *       'disconnected': the broker may or may not have stored it.
 *   ping() -> Promise<round trip ms>.
 *   position(topic) -> {epoch, offset} of the last message handled.
 *   on(event, fn) -> off(); off(event, fn).
 *   connect() / reconnect(): connect now (also after a fatal 'closed').
 *   close(): close for good (until connect()); rejects pending requests.
 *   state: 'connecting' | 'open' | 'closed'.
 *   transport: 'websocket' | 'sse', the one in use now.
 *
 * Events
 *   'state' (state, info): info.code/reason of the close that caused it,
 *       info.retryIn (ms) while waiting to reconnect, info.error when fatal.
 *   'open' (): every connection, including reconnects.
 *   'transport' (transport, {reason}): the client moved to 'sse' or back
 *       to 'websocket'.
 *   'gap' ({topic, epoch, previousEpoch, since, offset}): a resume came back
 *       `recovered: false`: messages were lost (history trimmed or reset);
 *       refetch the topic's state. What the broker still has follows.
 *   'replayed' ({topic, count, recovered}): after a resume, the `count`
 *       missed messages it delivered (meta.replayed) are all in.
 *   'error' (ChorusError): err.code is a broker error code (forbidden,
 *       invalid_topic...) for a refused subscription, or one of
 *       'token_expired', 'policy' (close 1008), 'handshake_refused' (the
 *       broker answers /healthz but refuses the WebSocket: bad token,
 *       origin, limits), 'timeout', 'handler' (a handler threw).
 *
 * Reconnecting
 *   Any lost connection is retried with backoff; close codes 1001 (broker
 *   restarting) and 1013 (slow consumer) included. The browser's 'online'
 *   event retries at once. A browser cannot see the HTTP status of a
 *   refused handshake (401 looks like close 1006), so: when the handshake
 *   fails and the token's `exp` has passed, the client reports
 *   'token_expired' and stops; after 3 failed handshakes in a row it probes
 *   GET /healthz and, if the broker answers, reports 'handshake_refused'
 *   once and keeps retrying at the maximum delay only. Close 1008 (policy,
 *   e.g. token expired during the session) is reported and not retried:
 *   the state becomes 'closed' until connect() (with a new token) is called.
 *
 * Transports (docs/BROWSER.md has the details and the differences)
 *   'sse': one EventSource per subscribed topic on GET /sse/{topic},
 *   publishes by POST /api/publish/{topic}. 'auto': after 3 failed
 *   WebSocket handshakes in a row, GET /sse/{a subscribed topic} (or
 *   /healthz) with fetch decides: 200 moves the client to SSE, 401/403 is
 *   'handshake_refused'. On SSE, one WebSocket handshake every
 *   upgradeInterval; the client moves back when one opens. Positions are
 *   the client's, so a move either way loses nothing and repeats nothing.
 */

import { SseTransport } from './chorus-sse.js';
import { WsTransport } from './chorus-ws.js';

const DEFAULTS = {
  timeout: 10000,
  pingInterval: 25000,
  backoff: { min: 250, max: 30000 },
  refusedAfter: 3,
  transport: 'auto',
  upgradeInterval: 60000,
};
const TRANSPORTS = ['auto', 'websocket', 'sse'];

/** An Error with a machine-readable `code` (and sometimes topic, closeCode). */
export class ChorusError extends Error {
  constructor(code, message, extra) {
    super(message);
    this.name = 'ChorusError';
    this.code = code;
    Object.assign(this, extra);
  }
}

/** The `exp` claim of a JWT in ms, or 0 when it has none or is no JWT. */
function tokenExpiry(token) {
  try {
    const part = String(token).split('.')[1];
    const b64 = part.replace(/-/g, '+').replace(/_/g, '/');
    const json = JSON.parse(atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4)));
    return typeof json.exp === 'number' ? json.exp * 1000 : 0;
  } catch {
    return 0;
  }
}

export class Chorus {
  constructor(url, options = {}) {
    this.url = url;
    this._opt = { ...DEFAULTS, ...options };
    this._opt.backoff = { ...DEFAULTS.backoff, ...options.backoff };
    this._mode = this._opt.transport;
    if (!TRANSPORTS.includes(this._mode)) {
      throw new Error(`chorus: transport must be one of ${TRANSPORTS.join(', ')}`);
    }
    this._WS = options.WebSocket || globalThis.WebSocket;
    this._ES = options.EventSource || globalThis.EventSource;
    if (this._mode === 'auto' && !this._WS) this._mode = 'sse';
    if (this._mode === 'auto' && !this._ES) this._mode = 'websocket';
    if (this._mode !== 'sse' && !this._WS) throw new Error('chorus: no WebSocket; pass {WebSocket}');
    if (this._mode === 'sse' && !this._ES) throw new Error('chorus: no EventSource; pass {EventSource}');
    // Bound: a browser's fetch called as a method of another object throws.
    this._fetch = options.fetch || globalThis.fetch?.bind(globalThis);
    this._listeners = new Map();
    // topic -> {handlers, epoch, offset, since, replay, ready, acked}
    this._topics = new Map();
    this._pending = new Map(); // request id -> {frame, sent, resolve, reject, timer}
    this._nextId = 1;
    this._wsT = new WsTransport(this);
    this._sse = null;        // the SseTransport while on SSE
    this._transport = this._mode === 'sse' ? 'sse' : 'websocket';
    this._upgradeTimer = null;
    this._upgradeWs = null;  // a WebSocket tried while on SSE
    this._state = 'closed';
    this._stopped = true;    // true after close() or a fatal error
    this._failures = 0;      // connection attempts in a row that failed
    this._retryTimer = null;

    const p = options.persist;
    this._storage = p ? options.storage || globalThis.localStorage : null;
    this._prefix = typeof p === 'string' ? p : 'chorus:';
    this._dirty = new Set();
    this._flushTimer = null;

    this._win = typeof window !== 'undefined' && window.addEventListener ? window : null;
    this._onOnline = () => { if (!this._stopped && this._state !== 'open') this.reconnect(); };
    this._onHide = () => this._flush();
    if (options.connect !== false) this.connect();
  }

  get state() { return this._state; }

  get transport() { return this._transport; }

  // ---- events ----------------------------------------------------------

  on(event, fn) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(fn);
    return () => this.off(event, fn);
  }

  off(event, fn) { this._listeners.get(event)?.delete(fn); }

  _emit(event, ...args) {
    const set = this._listeners.get(event);
    if (!set || set.size === 0) {
      if (event === 'error') console.error('chorus:', args[0]);
      return;
    }
    for (const fn of [...set]) {
      try { fn(...args); } catch (e) { console.error('chorus: listener threw', e); }
    }
  }

  _setState(s, info = {}) {
    this._state = s;
    this._emit('state', s, info);
  }

  // ---- connection ------------------------------------------------------

  connect() {
    if (!this._stopped && this._state !== 'closed') return;
    this._stopped = false;
    this._listenWindow(true);
    this._failures = 0;
    this._wsT.reset();
    // A new start tries the configured transport first again.
    const first = this._mode === 'sse' ? 'sse' : 'websocket';
    if (this._transport !== first) {
      this._transport = first;
      this._emit('transport', first, { reason: 'connect()' });
    }
    this._open();
  }

  /** Back online: retry now, not at the end of a long backoff. Page hidden
   *  (closed, navigated away): save positions now. Removed by close() so a
   *  discarded client can be garbage collected. */
  _listenWindow(on) {
    if (!this._win) return;
    const f = on ? 'addEventListener' : 'removeEventListener';
    this._win[f]('online', this._onOnline);
    this._win[f]('pagehide', this._onHide);
  }

  reconnect() {
    if (this._stopped) return this.connect();
    this._failures = 0;
    if (this._sse) return this._sse.restart();
    this._wsT.drop();
    clearTimeout(this._retryTimer);
    this._open();
  }

  close() {
    this._stopped = true;
    clearTimeout(this._retryTimer);
    this._stopTransports(1000, 'client closed');
    this._rejectAll('closed', 'chorus: client closed', true);
    this._flush();
    this._listenWindow(false);
    if (this._state !== 'closed') this._setState('closed', { code: 1000 });
  }

  _stopTransports(code, reason) {
    this._wsT.drop(code, reason);
    this._sse?.stop();
    this._sse = null;
    clearTimeout(this._upgradeTimer);
    const ws = this._upgradeWs;
    this._upgradeWs = null;
    if (ws) {
      ws.onopen = ws.onclose = null;
      try { ws.close(); } catch { /* already closing */ }
    }
  }

  /** The token for a new connection or HTTP request: {token}, or null when
   *  the provider failed (the client is then stopped with code 'token'). */
  async _tokenNow() {
    let token = this._opt.token;
    try {
      if (typeof token === 'function') token = await token();
    } catch (e) {
      this._fatal(new ChorusError('token', `chorus: token provider failed: ${e.message}`));
      return null;
    }
    this._token = token;
    return { token };
  }

  _error(code, message, extra) { return new ChorusError(code, message, extra); }

  _open() {
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    this._setState('connecting', { attempt: this._failures });
    if (this._transport === 'websocket') return this._wsT.open();
    if (this._sse) return this._sse.restart();
    this._sse = new SseTransport(this);
    return this._sse.start();
  }

  _afterDisconnect() {
    // Sent requests cannot be answered any more. Publishes are not resent:
    // the broker may have stored one, and a resend would store it twice.
    // HTTP requests (made while on SSE) do not depend on the socket.
    for (const [id, r] of this._pending) {
      if (!r.sent || r.http) continue;
      if (r.kind === 'subscribe') { this._pending.delete(id); clearTimeout(r.timer); continue; }
      this._settle(id, new ChorusError('disconnected',
        `chorus: connection lost before the broker answered ${r.kind}` +
        (r.kind === 'publish' ? ' (it may or may not have been stored)' : '')));
    }
    for (const t of this._topics.values()) { t.acked = false; this._endReplay(t, null); }
  }

  /** Close 1008 (over WebSocket, or an SSE stream's `close` event): the
   *  broker's policy, e.g. a token that expired during the session.
   *  Retrying with the same token cannot help: stop and report. */
  _policyClose(code, reason) {
    const expired = this._expired();
    return this._fatal(new ChorusError(expired ? 'token_expired' : 'policy',
      expired ? 'chorus: the token has expired' :
        `chorus: closed by the broker's policy (1008${reason ? ': ' + reason : ''})`,
      { closeCode: code, reason }), { code, reason });
  }

  _expired() {
    const exp = this._token ? tokenExpiry(this._token) : 0;
    return exp > 0 && exp <= Date.now();
  }

  /** Backoff delay after `failures` attempts in a row: exponential from
   *  min to max, drawn between half and all of the step. */
  _delay(failures) {
    const { min, max } = this._opt.backoff;
    const step = Math.min(max, min * 2 ** Math.min(failures - 1, 30));
    return Math.round(step / 2 + (Math.random() * step) / 2);
  }

  _schedule(info) {
    const delay = this._delay(this._failures);
    this._setState('connecting', { ...info, attempt: this._failures, retryIn: delay });
    this._retryTimer = setTimeout(() => this._open(), delay);
  }

  _fatal(err, info = {}) {
    this._stopped = true;
    clearTimeout(this._retryTimer);
    this._stopTransports();
    this._rejectAll(err.code, err.message, false);
    this._emit('error', err);
    this._setState('closed', { ...info, error: err });
  }

  // ---- moving between transports ('auto') -----------------------------

  /** WebSocket keeps failing while the broker accepts us over HTTP (see
   *  WsTransport._whyRefused). Positions stay in _topics, so the streams
   *  resume each topic from the last offset handled. */
  _useSse(reason) {
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    this._wsT.drop();
    this._failures = 0;
    this._wsT.reset();
    this._transport = 'sse';
    this._emit('transport', 'sse', { reason });
    this._armUpgrade();
    this._open();
  }

  /** Called by the SSE transport whenever a stream opened or failed: the
   *  client is 'open' while no stream is failing. */
  _sseChanged(info) {
    if (this._stopped || !this._sse) return;
    if (this._sse.allOpen()) {
      if (this._state === 'open') return;
      this._setState('open');
      this._emit('open');
      for (const [, r] of this._pending) if (!r.sent) this._sendReq(r);
    } else if (this._state === 'open' || info.retryIn !== undefined) {
      this._setState('connecting', info);
    }
  }

  _armUpgrade() {
    clearTimeout(this._upgradeTimer);
    const every = this._opt.upgradeInterval;
    if (this._mode !== 'auto' || !every || this._stopped || this._transport !== 'sse') return;
    this._upgradeTimer = setTimeout(() => this._tryUpgrade(), every);
  }

  /** While 'auto' runs on SSE: one WebSocket handshake. If it opens, the
   *  streams are closed (their handlers detached first, so the positions
   *  are final) and every topic is subscribed again over it with since. */
  async _tryUpgrade() {
    const tk = await this._tokenNow();
    if (!tk || this._stopped || this._transport !== 'sse' || this._upgradeWs) return;
    let ws;
    try {
      ws = new this._WS(this._wsT.url(tk.token));
    } catch {
      return this._armUpgrade();
    }
    this._upgradeWs = ws;
    ws.onerror = () => {};
    ws.onclose = () => {
      if (this._upgradeWs !== ws) return;
      this._upgradeWs = null;
      this._armUpgrade();
    };
    ws.onopen = () => {
      if (this._upgradeWs !== ws) return;
      this._upgradeWs = null;
      this._sse.stop();
      this._sse = null;
      this._transport = 'websocket';
      this._emit('transport', 'websocket', { reason: 'a WebSocket handshake succeeded' });
      this._wsT.adopt(ws);
    };
  }

  // ---- requests --------------------------------------------------------

  /** onReply(m) runs synchronously on the reply, before any later frame:
   *  a resolved promise would run only after the frames that follow it in
   *  the same read (the replayed messages after `subscribed`). */
  _request(kind, frame, topic, onReply) {
    return new Promise((resolve, reject) => {
      const id = this._nextId++;
      const r = { id, kind, topic, frame: { ...frame, id }, sent: false, resolve, reject, onReply };
      r.timer = setTimeout(() => {
        this._settle(id, new ChorusError('timeout',
          `chorus: ${kind}${topic ? ` to "${topic}"` : ''} timed out after ${this._opt.timeout} ms` +
          (r.sent ? '' : ' (not connected)'), { topic }));
        if (kind === 'subscribe' && this._wsT.ws && this._state === 'open') this.reconnect();
      }, this._opt.timeout);
      this._pending.set(id, r);
      if (this._state === 'open') this._sendReq(r);
      else if (this._stopped) {
        this._settle(id, new ChorusError('closed', 'chorus: client is closed; call connect()'));
      }
    });
  }

  _sendReq(r) {
    if (this._sse) {
      if (r.kind === 'publish') return this._sse.post(r);
      if (r.kind === 'ping') return this._sse.ping(r);
      return this._settle(r.id, null, null); // streams carry subscriptions
    }
    r.sent = true;
    this._wsT.send(r.frame);
  }

  _settle(id, err, value) {
    const r = this._pending.get(id);
    if (!r) return null;
    this._pending.delete(id);
    clearTimeout(r.timer);
    if (err) r.abort?.(); // an HTTP request that timed out or was cancelled
    if (err) r.reject(err); else r.resolve(value);
    return r;
  }

  _rejectAll(code, message, all) {
    for (const [id, r] of this._pending) {
      if (all || !r.sent) this._settle(id, new ChorusError(code, message));
    }
  }

  publish(topic, data) {
    const frame = { op: 'publish', topic, data: data === undefined ? null : data };
    return this._request('publish', frame, topic);
  }

  ping() {
    const t0 = Date.now();
    return this._request('ping', { op: 'ping' }).then(() => Date.now() - t0);
  }

  // ---- subscriptions ---------------------------------------------------

  subscribe(topic, handler, opts = {}) {
    if (typeof handler !== 'function') throw new TypeError('chorus: handler must be a function');
    let t = this._topics.get(topic);
    const fresh = !t;
    if (fresh) {
      const saved = opts.since || this._load(topic);
      t = {
        handlers: new Set(), epoch: saved?.epoch ?? null, offset: saved?.offset ?? 0,
        replay: null, acked: false, readyWaiters: [],
      };
      this._topics.set(topic, t);
    }
    t.handlers.add(handler);
    const ready = new Promise((resolve, reject) => {
      if (t.acked && t.last) resolve(t.last);
      else t.readyWaiters.push({ resolve, reject });
    });
    ready.catch(() => {}); // reported through 'error' too
    if (fresh && this._sse) this._sse.add(topic, t, false);
    else if (fresh && this._state === 'open') this._sendSubscribe(topic, t);
    const unsubscribe = () => {
      if (this._topics.get(topic) !== t || !t.handlers.delete(handler)) return;
      if (t.handlers.size) return;
      this._topics.delete(topic);
      this._forget(topic);
      if (this._sse) this._sse.remove(topic);
      else if (this._state === 'open') {
        this._request('unsubscribe', { op: 'unsubscribe', topic }, topic).catch(() => {});
      }
    };
    unsubscribe.ready = ready;
    return unsubscribe;
  }

  position(topic) {
    const t = this._topics.get(topic);
    return t && t.epoch ? { epoch: t.epoch, offset: t.offset } : null;
  }

  _sendSubscribe(topic, t) {
    const frame = { op: 'subscribe', topic };
    const since = t.epoch ? { epoch: t.epoch, offset: t.offset } : null;
    if (since) frame.since = since;
    this._request('subscribe', frame, topic, (m) => this._onSubscribed(topic, t, since, m)).then(
      null,
      (e) => {
        if (this._topics.get(topic) !== t || e.code === 'disconnected') return;
        if (e.code === 'timeout' || e.code === 'closed') return this._emit('error', e);
        this._refuseTopic(topic, t, e);
      });
  }

  /** A subscription the broker refused (forbidden, invalid_topic...): drop
   *  the topic and tell the app. */
  _refuseTopic(topic, t, e) {
    if (this._topics.get(topic) !== t) return;
    this._topics.delete(topic);
    for (const w of t.readyWaiters.splice(0)) w.reject(e);
    this._emit('error', e);
  }

  _onSubscribed(topic, t, since, m) {
    if (this._topics.get(topic) !== t) return;
    t.acked = true;
    if (since) {
      if (!m.recovered) {
        this._emit('gap', { topic, epoch: m.epoch, previousEpoch: since.epoch,
          since: since.offset, offset: m.offset });
      }
      // Another epoch (or a newest offset below ours) is another history:
      // its offsets count from 1 again, so none of them was seen.
      if (m.epoch !== t.epoch || m.offset < t.offset) t.offset = 0;
      t.epoch = m.epoch;
      t.replay = { end: m.offset, count: 0, recovered: m.recovered };
      if (m.offset <= t.offset) this._endReplay(t, topic);
      else if (!m.recovered) {
        // What was trimmed never comes; do not wait for it forever.
        t.replay.timer = setTimeout(() => this._endReplay(t, topic), this._opt.timeout);
      }
    } else {
      t.epoch = m.epoch;
      t.offset = m.offset; // live from here; a reconnect resumes from here
    }
    this._save(topic, t);
    t.last = { epoch: m.epoch, offset: m.offset, recovered: m.recovered };
    for (const w of t.readyWaiters.splice(0)) w.resolve(t.last);
  }

  /** An unsolicited `subscribed` (no id): the topic's epoch changed under
   *  the live subscription (PROTOCOL.md). Handled as a resume that came
   *  back `recovered: false`: a gap, then the new epoch's messages. */
  _onEpochChanged(m) {
    const t = this._topics.get(m.topic);
    if (!t || !t.acked || typeof m.epoch !== 'string') return;
    clearTimeout(t.replay?.timer);
    t.replay = null;
    this._onSubscribed(m.topic, t, { epoch: t.epoch, offset: t.offset },
      { ...m, recovered: false });
  }

  _endReplay(t, topic) {
    const r = t.replay;
    if (!r) return;
    clearTimeout(r.timer);
    t.replay = null;
    if (topic) this._emit('replayed', { topic, count: r.count, recovered: r.recovered });
  }

  _onMessage(m) {
    const t = this._topics.get(m.topic);
    if (!t || typeof m.offset !== 'number') return;
    // Never twice: a resume replays from the last offset we handled, and a
    // message can race a reconnect.
    if (m.offset <= t.offset) return;
    t.offset = m.offset;
    const replayed = !!(t.replay && m.offset <= t.replay.end);
    if (replayed) t.replay.count++;
    const meta = { topic: m.topic, offset: m.offset, ts: m.ts, epoch: t.epoch, replayed };
    for (const h of [...t.handlers]) {
      try {
        h(m.data, meta);
      } catch (e) {
        this._emit('error', new ChorusError('handler', `chorus: a handler of "${m.topic}" threw: ${e.message}`,
          { topic: m.topic, cause: e }));
      }
    }
    if (t.replay && m.offset >= t.replay.end) this._endReplay(t, m.topic);
    this._save(m.topic, t);
  }

  // ---- persistence -----------------------------------------------------

  _key(topic) { return `${this._prefix}${this.url}|${topic}`; }

  _load(topic) {
    if (!this._storage) return null;
    try {
      const v = JSON.parse(this._storage.getItem(this._key(topic)));
      return v && typeof v.epoch === 'string' && Number.isInteger(v.offset) ? v : null;
    } catch {
      return null;
    }
  }

  _save(topic) {
    if (!this._storage) return;
    this._dirty.add(topic);
    // Batched: a busy topic would otherwise write storage per message.
    if (!this._flushTimer) this._flushTimer = setTimeout(() => this._flush(), 200);
  }

  _flush() {
    clearTimeout(this._flushTimer);
    this._flushTimer = null;
    if (!this._storage) return;
    for (const topic of this._dirty) {
      const t = this._topics.get(topic);
      try {
        if (t && t.epoch) this._storage.setItem(this._key(topic), JSON.stringify({ epoch: t.epoch, offset: t.offset }));
      } catch { /* quota or privacy mode: persistence is best effort */ }
    }
    this._dirty.clear();
  }

  _forget(topic) {
    this._dirty.delete(topic);
    try { this._storage?.removeItem(this._key(topic)); } catch { /* best effort */ }
  }
}

export default Chorus;
