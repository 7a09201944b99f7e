/**
 * chorus-sse.js: the Server-Sent Events transport of chorus.js, which
 * imports it (serve both files side by side; chorusd serves this one at
 * /chorus-sse.js). Guide: docs/BROWSER.md, wire format: docs/PROTOCOL.md.
 *
 * One EventSource per subscribed topic on GET /sse/{topic}, resumed with
 * ?since=<epoch>:<offset> from the client's own position; publishes are
 * POST /api/publish/{topic}; ping() times GET /healthz. Positions,
 * duplicate suppression and the gap/replayed/state events stay in the
 * Chorus core: this file only turns stream events into the core's
 * subscribed/message/epoch-change calls, so both transports behave alike.
 *
 * Reconnecting is done here, not by EventSource: a failed stream is closed
 * and reopened with backoff from the core's current position, so that the
 * token provider is asked again and `since` is exactly what the handlers
 * saw (EventSource's own retry would reuse the first URL and token).
 */

/** http(s) base of the broker's HTTP endpoints, from its ws(s)://.../ws URL. */
export function httpBase(url) {
  const u = new URL(url);
  if (u.protocol === 'ws:') u.protocol = 'http:';
  else if (u.protocol === 'wss:') u.protocol = 'https:';
  const path = u.pathname.replace(/\/ws\/?$/, '').replace(/\/$/, '');
  return u.origin + path;
}

/** The URL of a topic's stream; since is {epoch, offset} or null. */
export function sseUrl(base, topic, since, token) {
  const q = [];
  if (since) q.push(`since=${encodeURIComponent(`${since.epoch}:${since.offset}`)}`);
  if (token) q.push(`token=${encodeURIComponent(token)}`);
  return `${base}/sse/${encodeURIComponent(topic)}${q.length ? `?${q.join('&')}` : ''}`;
}

/** GET url and read only the status and, for an error, its JSON body
 *  ({error, message}); the stream itself is aborted. null when the broker
 *  could not be reached (or a cross-origin answer could not be read). */
export async function probeStatus(fetchFn, url, timeout) {
  if (!fetchFn) return null;
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), timeout);
  try {
    const r = await fetchFn(url, {
      signal: ctl.signal, cache: 'no-store', headers: { Accept: 'text/event-stream' },
    });
    let body = {};
    if (r.status !== 200) body = await r.json().catch(() => ({}));
    return { status: r.status, code: body?.error, message: body?.message };
  } catch {
    return null;
  } finally {
    clearTimeout(timer);
    ctl.abort();
  }
}

function parse(ev) {
  try {
    const d = JSON.parse(ev.data);
    return d && typeof d === 'object' ? d : null;
  } catch {
    return null;
  }
}

export class SseTransport {
  /** core: the Chorus instance (its _topics, _onSubscribed, _onMessage...). */
  constructor(core) {
    this.core = core;
    this.ES = core._ES;
    this.base = httpBase(core.url);
    this.streams = new Map(); // topic -> stream (see _stream)
    this.stopped = false;
  }

  /** true when no stream is down: each has opened since it was started or
   *  last failed (a topic subscribed while open does not count until it
   *  fails, as a subscribe does not change a WebSocket's state). */
  allOpen() {
    for (const s of this.streams.values()) if (s.down) return false;
    return true;
  }

  start() {
    for (const [topic, t] of this.core._topics) this.add(topic, t, true);
    this.core._sseChanged({});
  }

  stop() {
    this.stopped = true;
    for (const topic of [...this.streams.keys()]) this.remove(topic);
  }

  /** Reopens every stream now (reconnect(), the browser's 'online'). */
  restart() {
    for (const s of this.streams.values()) {
      if (s.open) continue;
      this._close(s);
      s.failures = 0;
      this._open(s);
    }
    this.core._sseChanged({});
  }

  add(topic, t, down) {
    if (this.streams.has(topic)) return;
    const s = {
      topic, t, es: null, open: false, down, failures: 0, retry: null, stable: null, since: null, reported: false,
      gapFollows: false, closeInfo: null,
    };
    this.streams.set(topic, s);
    this._open(s);
  }

  remove(topic) {
    const s = this.streams.get(topic);
    if (!s) return;
    this.streams.delete(topic);
    this._close(s);
    if (!this.stopped) this.core._sseChanged({});
  }

  _close(s) {
    clearTimeout(s.retry);
    clearTimeout(s.stable);
    s.retry = s.stable = null;
    const es = s.es;
    s.es = null;
    s.open = false;
    s.t.acked = false;
    this.core._endReplay(s.t, null);
    if (es) {
      es.onopen = es.onerror = null;
      es.close();
    }
  }

  async _open(s) {
    s.retry = null;
    const tk = await this.core._tokenNow();
    if (!tk || this.stopped || this.streams.get(s.topic) !== s || s.es) return;
    const t = s.t;
    s.since = t.epoch ? { epoch: t.epoch, offset: t.offset } : null;
    const url = sseUrl(this.base, s.topic, s.since, tk.token);
    let es;
    try {
      es = new this.ES(url);
    } catch (e) {
      return this.core._fatal(this.core._error('bad_url', `chorus: cannot open ${url}: ${e.message}`));
    }
    s.es = es;
    const mine = (fn) => (ev) => { if (s.es === es) fn(ev); };
    es.onopen = mine(() => {
      s.open = true;
      s.down = false;
      s.reported = false;
      // As with WebSocket, only a stream that stays up resets its backoff.
      s.stable = setTimeout(() => { s.failures = 0; }, 2000);
      this.core._sseChanged({});
    });
    es.addEventListener('subscribed', mine((ev) => this._onSubscribed(s, parse(ev))));
    es.addEventListener('gap', mine((ev) => this._onGap(s, parse(ev))));
    es.addEventListener('close', mine((ev) => this._onClose(s, parse(ev))));
    es.addEventListener('message', mine((ev) => {
      const m = parse(ev);
      if (!m) return;
      if (m.topic === undefined) m.topic = s.topic;
      if (m.topic === s.topic) this.core._onMessage(m);
    }));
    es.onerror = mine(() => this._lost(s, url));
  }

  /** `subscribed` opens every stream, as the /ws reply does a subscribe;
   *  another one on a stream already going says that the topic's epoch
   *  changed under it (recovered: false). Each recovered: false is
   *  followed by a `gap` that repeats it (see _onGap). */
  _onSubscribed(s, d) {
    if (!d || typeof d.epoch !== 'string' || !Number.isInteger(d.offset)) return;
    const t = s.t;
    s.gapFollows = d.recovered === false;
    if (t.acked) {
      if (d.epoch !== t.epoch) this.core._onEpochChanged({ topic: s.topic, epoch: d.epoch, offset: d.offset });
      return;
    }
    const recovered = s.since ? d.recovered !== false : true;
    this.core._onSubscribed(s.topic, t, s.since, { epoch: d.epoch, offset: d.offset, recovered });
  }

  /** `gap` comes right after a `subscribed` with recovered: false, which
   *  was reported already: the gap event is the client's from that one.
   *  One without it is taken for what it says on its own. */
  _onGap(s, d) {
    if (!d || typeof d.epoch !== 'string' || !Number.isInteger(d.offset)) return;
    const t = s.t;
    if (s.gapFollows) {
      s.gapFollows = false;
      return;
    }
    if (t.acked) {
      if (d.epoch !== t.epoch) this.core._onEpochChanged({ topic: s.topic, epoch: d.epoch, offset: d.offset });
      return;
    }
    const since = s.since || { epoch: t.epoch, offset: t.offset };
    this.core._onSubscribed(s.topic, t, since, { epoch: d.epoch, offset: d.offset, recovered: false });
  }

  /** `close`, the broker's last event on a stream: the /ws close code.
   *  1008 (a token that expired during the session) stops the client as
   *  over WebSocket; the others (1001, 1011, 1013) are reconnects, and the
   *  code is passed on in the `state` info. */
  _onClose(s, d) {
    if (!d || !Number.isInteger(d.code)) return;
    s.closeInfo = { code: d.code, reason: typeof d.reason === 'string' ? d.reason : '' };
    if (d.code === 1008) {
      this._close(s);
      this.core._policyClose(d.code, s.closeInfo.reason);
    }
  }

  /** The stream failed or dropped. EventSource hides the HTTP status of a
   *  refusal, so a stream that never opened asks the same URL once with
   *  fetch to learn why (401, 403...) before retrying. */
  async _lost(s, url) {
    const wasOpen = s.open;
    this._close(s);
    s.down = true;
    s.failures++;
    if (!wasOpen) {
      const why = await probeStatus(this.core._fetch, url, this.core._opt.timeout);
      if (this.stopped || this.streams.get(s.topic) !== s || s.es) return;
      if (why && why.status !== 200 && this._refused(s, why)) return;
    }
    const delay = this.core._delay(s.failures);
    s.retry = setTimeout(() => this._open(s), delay);
    const closed = s.closeInfo || {};
    s.closeInfo = null;
    this.core._sseChanged({ ...closed, attempt: s.failures, retryIn: delay, topic: s.topic });
  }

  /** A refused stream: true when handled for good (fatal, or topic dropped). */
  _refused(s, why) {
    const core = this.core;
    const text = why.message || why.code || `HTTP ${why.status}`;
    if (why.status === 401) {
      if (core._expired()) {
        core._fatal(core._error('token_expired', 'chorus: the token has expired; the broker refused the stream'));
        return true;
      }
      // Bad token, say: retrying cannot fix it unless the token provider
      // returns another one. Report once, then retry at the maximum delay.
      s.failures = Math.max(s.failures, 64);
      if (!s.reported) {
        s.reported = true;
        core._emit('error', core._error(why.code || 'unauthorized',
          `chorus: the broker refused the stream of "${s.topic}": ${text}`, { topic: s.topic, status: 401 }));
      }
      return false;
    }
    if (why.status >= 400 && why.status < 500 && why.status !== 408 && why.status !== 429) {
      // forbidden, invalid_topic, not found: this topic cannot be had.
      this.streams.delete(s.topic);
      core._refuseTopic(s.topic, s.t, core._error(why.code || `http_${why.status}`,
        `chorus: ${text} (topic "${s.topic}")`, { topic: s.topic, status: why.status }));
      core._sseChanged({});
      return true;
    }
    return false; // limits, 5xx: retry with backoff
  }

  /** POST /api/publish/{topic} for a pending publish request r. Sent once:
   *  a network error after sending may or may not have stored it. */
  async post(r) {
    r.sent = true;
    r.http = true;
    const core = this.core;
    const tk = await core._tokenNow();
    if (!tk || !core._pending.has(r.id)) return;
    const ctl = new AbortController();
    r.abort = () => ctl.abort();
    const headers = { 'Content-Type': 'application/json' };
    if (tk.token) headers.Authorization = `Bearer ${tk.token}`;
    const url = `${this.base}/api/publish/${encodeURIComponent(r.topic)}`;
    let res, body;
    try {
      res = await core._fetch(url, {
        method: 'POST', headers, body: JSON.stringify(r.frame.data), signal: ctl.signal, cache: 'no-store',
      });
      body = await res.json().catch(() => ({}));
    } catch (e) {
      return core._settle(r.id, core._error('disconnected',
        `chorus: publish to "${r.topic}" failed (${e.message}); it may or may not have been stored`, { topic: r.topic }));
    }
    if (res.status === 200 && Number.isInteger(body?.offset)) return core._settle(r.id, null, body.offset);
    const code = body?.error || `http_${res.status}`;
    core._settle(r.id, core._error(code, `chorus: ${body?.message || code} (topic "${r.topic}")`,
      { topic: r.topic, status: res.status }));
  }

  /** ping over HTTP: GET /healthz. */
  async ping(r) {
    r.sent = true;
    r.http = true;
    const core = this.core;
    const ctl = new AbortController();
    r.abort = () => ctl.abort();
    try {
      const res = await core._fetch(`${this.base}/healthz`, { signal: ctl.signal, cache: 'no-store' });
      await res.text();
      if (res.status !== 200) throw new Error(`HTTP ${res.status}`);
      core._settle(r.id, null, { op: 'pong' });
    } catch (e) {
      core._settle(r.id, core._error('disconnected', `chorus: ping failed: ${e.message}`));
    }
  }
}
