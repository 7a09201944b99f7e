/**
 * chorus-ws.js: the WebSocket transport of chorus.js, which imports it
 * (serve the files side by side; chorusd serves this one at /chorus-ws.js).
 * Guide: docs/BROWSER.md, wire format: docs/PROTOCOL.md.
 *
 * One WebSocket to the broker's /ws for every topic: it opens the socket,
 * turns the /ws frames into the core's subscribed/message/reply calls,
 * pings a silent connection, and works out why handshakes keep failing
 * (an expired token, a broker that refuses us, or, for 'auto', a path to
 * the broker that breaks WebSocket). Positions, requests, backoff and the
 * events stay in the Chorus core (chorus.js).
 */
import { httpBase, sseUrl, probeStatus } from './chorus-sse.js';

export class WsTransport {
  /** core: the Chorus instance (its _topics, _pending, _settle...). */
  constructor(core) {
    this.core = core;
    this.ws = null;
    this.pingTimer = null;
    this.stableTimer = null;
    this.lastRx = 0;
    this.handshakeFails = 0; // attempts in a row that never reached 'open'
    this.refusedReported = false;
    this.probing = false;
  }

  /** A fresh start (connect()): the refusal checks begin again. */
  reset() {
    this.handshakeFails = 0;
    this.refusedReported = false;
  }

  url(token) {
    const base = this.core.url;
    if (!token) return base;
    return `${base}${base.includes('?') ? '&' : '?'}token=${encodeURIComponent(token)}`;
  }

  async open() {
    const core = this.core;
    const tk = await core._tokenNow();
    if (!tk || core._stopped || this.ws || core._transport !== 'websocket') return;
    let ws;
    try {
      ws = new core._WS(this.url(tk.token));
    } catch (e) {
      return core._fatal(core._error('bad_url', `chorus: cannot open ${core.url}: ${e.message}`));
    }
    this.ws = ws;
    this._wire(ws, false);
  }

  /** Takes over a socket that is open already (the move back from SSE). */
  adopt(ws) {
    this.ws = ws;
    this._wire(ws, true);
    this._onOpen();
  }

  _wire(ws, opened) {
    ws.onopen = () => {
      opened = true;
      this._onOpen();
    };
    ws.onmessage = (ev) => {
      this.lastRx = Date.now();
      this._onFrame(typeof ev.data === 'string' ? ev.data : String(ev.data));
    };
    ws.onerror = () => {}; // onclose follows and carries the code
    ws.onclose = (ev) => { if (this.ws === ws) this._lost(opened, ev.code, ev.reason); };
  }

  _onOpen() {
    const core = this.core;
    this.handshakeFails = 0;
    this.refusedReported = false;
    this.lastRx = Date.now();
    // Only a connection that stays up resets the backoff, so a broker that
    // accepts and drops at once is not hammered.
    this.stableTimer = setTimeout(() => { core._failures = 0; }, 2000);
    core._setState('open');
    core._emit('open');
    for (const [topic, t] of core._topics) core._sendSubscribe(topic, t);
    for (const [, r] of core._pending) if (!r.sent) core._sendReq(r);
    this._armPing();
  }

  send(frame) {
    this.ws.send(JSON.stringify(frame));
  }

  /** Detaches and closes the socket without triggering _lost. */
  drop(code = 1000, reason = '') {
    clearTimeout(this.pingTimer);
    clearTimeout(this.stableTimer);
    const ws = this.ws;
    this.ws = null;
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onclose = null;
    try { ws.close(code, reason); } catch { /* already closing */ }
    this.core._afterDisconnect();
  }

  _lost(opened, code, reason) {
    const core = this.core;
    this.ws = null;
    clearTimeout(this.pingTimer);
    clearTimeout(this.stableTimer);
    core._afterDisconnect();
    if (core._stopped) return;
    const info = { code, reason };
    if (code === 1008) return core._policyClose(code, reason);
    core._failures++;
    if (!opened) {
      this.handshakeFails++;
      // A browser hides the handshake's HTTP status; an expired token is the
      // one cause we can tell from here, and retrying cannot fix it.
      if (core._expired()) {
        return core._fatal(core._error('token_expired',
          'chorus: the token has expired; the broker refused the connection',
          { closeCode: code }), info);
      }
      if (this.handshakeFails >= core._opt.refusedAfter) this._askWhyRefused();
    }
    core._schedule(info);
  }

  /** After refusedAfter failed handshakes: is the broker down, refusing
   *  us, or reachable only without WebSocket? One question at a time, on
   *  each failure until it is answered. */
  _askWhyRefused() {
    if (this.refusedReported || this.probing) return;
    const core = this.core;
    this.probing = true;
    this._whyRefused().then((why) => {
      this.probing = false;
      if (!why || core._stopped || core._state === 'open' || core._transport !== 'websocket') return;
      if (why.sse) {
        return core._useSse(`${this.handshakeFails} WebSocket handshakes failed ` +
          'while the broker answers over HTTP');
      }
      this.refusedReported = true;
      core._failures = Math.max(core._failures, 64); // stay at max delay
      core._emit('error', core._error('handshake_refused',
        'chorus: the broker is up but refuses the WebSocket handshake ' +
        (why.answer ? `(its HTTP answer: ${why.answer})` :
          '(bad or expired token, origin not allowed, or a connection limit)')));
    });
  }

  /** null when the broker seems down; {sse: true} when 'auto' should move
   *  to SSE (the broker accepts this client's stream over plain HTTP);
   *  else {answer} of the broker's refusal, when it could be read. */
  async _whyRefused() {
    const core = this.core;
    if (core._mode === 'auto') {
      // Read with CORS: a cross-origin page that cannot read the answer
      // could not use the streams and HTTP publishes either.
      const topic = core._topics.keys().next().value;
      const base = httpBase(core.url);
      const url = topic === undefined ? `${base}/healthz` : sseUrl(base, topic, null, core._token);
      const r = await probeStatus(core._fetch, url, core._opt.timeout);
      if (r?.status === 200) return { sse: true };
      if (r?.status === 401 || r?.status === 403) {
        return { answer: `${r.status}${r.message ? ` ${r.message}` : ''}` };
      }
      // Unreachable, a broker without /sse, or a cross-origin answer we may
      // not read: as in 'websocket' mode.
    }
    return (await this._probe()) ? {} : null;
  }

  /** true when GET /healthz of the broker answers at all. */
  async _probe() {
    const core = this.core;
    if (!core._fetch) return false;
    const u = new URL(core.url);
    u.protocol = u.protocol === 'wss:' ? 'https:' : 'http:';
    u.pathname = '/healthz';
    u.search = '';
    try {
      // no-cors: a cross-origin page cannot read the answer, but an opaque
      // response still proves the broker is reachable.
      const init = typeof window !== 'undefined' ? { mode: 'no-cors', cache: 'no-store' } : {};
      await core._fetch(u.href, init);
      return true;
    } catch {
      return false;
    }
  }

  _armPing() {
    clearTimeout(this.pingTimer);
    const core = this.core;
    const every = core._opt.pingInterval;
    if (!every) return;
    this.pingTimer = setTimeout(() => {
      if (!this.ws || core._state !== 'open') return;
      if (Date.now() - this.lastRx < every) return this._armPing();
      // A half-open TCP connection never closes by itself: no pong, retry.
      core.ping().then(() => this._armPing(), (e) => {
        if (e.code === 'timeout' && this.ws) {
          this.drop(4000, 'ping timeout');
          this._lost(true, 1006, 'ping timeout');
        }
      });
    }, every);
  }

  /** The /ws frames (PROTOCOL.md "Broker to client"). */
  _onFrame(text) {
    const core = this.core;
    let m;
    try { m = JSON.parse(text); } catch { return; }
    if (!m || typeof m !== 'object') return;
    switch (m.op) {
      case 'message': return core._onMessage(m);
      case 'subscribed': {
        if (m.id === undefined) return core._onEpochChanged(m);
        const r = core._pending.get(m.id);
        if (r?.onReply) r.onReply(m);
        return core._settle(m.id, null, m);
      }
      case 'published': return core._settle(m.id, null, m.offset);
      case 'unsubscribed': case 'pong': return core._settle(m.id, null, m);
      case 'error': {
        const r = core._pending.get(m.id);
        const err = core._error(m.code || 'error',
          `chorus: ${m.message || m.code}${r?.topic ? ` (topic "${r.topic}")` : ''}`, { topic: r?.topic });
        if (r) core._settle(m.id, err); else core._emit('error', err);
        return;
      }
      default: return;
    }
  }
}
