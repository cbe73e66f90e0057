// herald.js: the JavaScript client of herald, one ES module with no
// dependencies, for browsers (and Node 18+, given a WebSocket class).
//
//   import { connect } from '/v1/client/herald.js'
//   const h = connect('https://herald.example', { topics: ['chat.room-1'], getToken })
//   h.on('event', (ev) => show(ev.data))   // or: for await (const ev of h) …
//   h.on('gap', (g) => reload(g.topic))
//   await h.publish('chat.room-1', { text: 'hi' })
//
// Transports, tried in the order of options.transports: 'ws' (GET /v1/ws,
// docs/protocol.md), 'sse' (GET /v1/sse read with fetch, so that every
// event type, error status and heartbeat comment is seen and the token goes
// in a header), 'poll' (long polling on GET /v1/events). A transport is in
// use once it has delivered its first frame; one that does not within
// options.timeout, or that stalls later, is given up for the next. While on
// a fallback the client tries the better ones again now and then (full-jitter
// backoff from upgradeDelay to maxReconnectDelay), and switches when one
// opens. Every transport starts from the client's own position of each topic
// (epoch, offset), and an event at or before that position is dropped, so a
// switch loses and repeats nothing. Docs: web/client/README.md.

const MAX_STEP = 31

/** An error with herald's code (docs/api.md, "Errors"). */
export class HeraldError extends Error {
  constructor (code, message, status) {
    super(message || code)
    this.name = 'HeraldError'
    this.code = code
    this.status = status
  }
}

/** Thrown by getToken to say the user may not connect: the client stops. */
export class UnauthorizedError extends Error {
  constructor (message) {
    super(message || 'unauthorized')
    this.name = 'UnauthorizedError'
  }
}

// Codes that end the client when a transport is refused with them: trying
// again, on this transport or another, gives the same answer.
const FATAL = new Set(['bad_request', 'bad_topic', 'bad_cursor', 'forbidden', 'too_large', 'not_found',
  'method_not_allowed', 'unsupported_media_type'])
const AUTH = new Set(['unauthenticated', 'token_expired'])

/**
 * The delay before reconnect attempt `step` (0, 1, …): full jitter, as
 * centrifuge-js: min + random(0, min(max, min·2^step)), at most max.
 */
export function backoff (step, min, max, random = Math.random) {
  return Math.min(max, min + Math.floor(random() * Math.min(max, min * 2 ** Math.min(step, MAX_STEP))))
}

const unb64 = (s) => atob(s.replace(/-/g, '+').replace(/_/g, '/'))
const b64 = (s) => btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')

/**
 * Decodes a cursor (docs/decisions/0002-cursor-encoding.md) into a Map of
 * topic → {e: epoch as 16 hex digits, o: offset}.
 */
export function decodeCursor (token) {
  const m = new Map()
  if (!token) return m
  let s
  try { s = unb64(token) } catch { s = '' }
  if (s.charCodeAt(0) !== 1) throw new HeraldError('bad_cursor', 'not a herald cursor')
  let i = 1
  // uv reads a uvarint: as a Number (lengths, offsets: below 2^53), or as
  // a BigInt (epochs: 64 bits).
  const uv = (big) => {
    let n = big ? 0n : 0
    for (let mul = 1; ; mul *= 128) {
      if (i >= s.length) throw new HeraldError('bad_cursor', 'truncated cursor')
      const b = s.charCodeAt(i++)
      n += big ? BigInt(b & 127) * BigInt(mul) : (b & 127) * mul
      if (b < 128) return n
    }
  }
  while (i < s.length) {
    const n = uv()
    const topic = s.slice(i, i += n)
    const e = uv(true).toString(16).padStart(16, '0')
    m.set(topic, { e, o: uv() })
  }
  return m
}

/** Encodes a Map of topic → {e, o} as a cursor (the inverse of decodeCursor). */
export function encodeCursor (positions) {
  let s = '\x01'
  const uv = (n) => {
    for (n = BigInt(n); n > 127n; n >>= 7n) s += String.fromCharCode(Number(n & 127n) | 128)
    s += String.fromCharCode(Number(n))
  }
  for (const t of [...positions.keys()].sort()) {
    const p = positions.get(t)
    uv(t.length)
    s += t
    uv(BigInt('0x' + p.e))
    uv(p.o)
  }
  return b64(s)
}

/** A cursor store in localStorage (or another Storage) under key. */
export function localStorageCursor (key, storage = globalThis.localStorage) {
  return {
    load () { try { return storage.getItem(key) } catch { return null } },
    save (c) { try { storage.setItem(key, c) } catch {} }
  }
}

/** Connects to the herald at url (its base, e.g. https://herald.example). */
export function connect (url, options) {
  return new Herald(url, options)
}

// jwtExp returns a JWT's exp (seconds), or 0 for anything else (an API key).
function jwtExp (token) {
  try { return JSON.parse(unb64(token.split('.')[1])).exp || 0 } catch { return 0 }
}

function headers (token, h = {}) {
  if (token) h.Authorization = 'Bearer ' + token
  return h
}

async function answerError (res) {
  let e = {}
  try { e = (await res.json()).error || {} } catch {}
  return new HeraldError(e.code || (res.status >= 500 ? 'unavailable' : 'bad_request'), e.message || 'HTTP ' + res.status, res.status)
}

function parse (data) {
  try { return JSON.parse(data) } catch { return data }
}

export class Herald {
  constructor (url, options = {}) {
    const o = this.options = {
      transports: ['ws', 'sse', 'poll'],
      from: 'latest',
      timeout: 5000,
      minReconnectDelay: 500,
      maxReconnectDelay: 20000,
      upgradeDelay: 5000,
      pingInterval: 25000,
      stallTimeout: 35000,
      pollWait: 25,
      pollLimit: 1000,
      ...options
    }
    if (!o.topics || !o.topics.length) throw new TypeError('herald: connect needs options.topics')
    const g = globalThis
    this._WS = o.WebSocket || g.WebSocket
    this._fetch = o.fetch || ((...a) => g.fetch(...a))
    this._rand = o.random || Math.random
    this._names = o.transports.filter((n) => n !== 'ws' || this._WS)
    const base = new URL(url || '/', g.location && g.location.href)
    if (!base.pathname.endsWith('/')) base.pathname += '/'
    this._base = base
    this._pos = new Map() // topic → {e, o}: the last event (or gap) taken
    this._store = o.cursorStore
    const c = o.cursor || (this._store && this._store.load())
    if (c) for (const [t, p] of decodeCursor(c)) if (o.topics.includes(t)) this._pos.set(t, p)
    this._on = {}
    this._iters = new Set()
    this._timers = new Set()
    this._live = new Set() // transports open or opening
    this._cur = null // the transport in use
    this._gen = 0 // bumped by every (re)connect and by close: stale work stops
    this._step = 0 // reconnect backoff step
    this._pstep = 0 // upgrade probe backoff step
    this._best = 0 // the transport rounds start with (later after a failed open)
    this._token = o.token
    this.state = 'disconnected'
    this.transport = null
    this.client = null
    this.error = null
    queueMicrotask(() => this._loop(0))
  }

  /** The cursor of every topic's position: pass it back as options.cursor. */
  get cursor () {
    return encodeCursor(this._pos)
  }

  /** Calls fn(value) on name: event, gap, join, leave, state, transport, error. Returns an unsubscribe function. */
  on (name, fn) {
    const s = this._on[name] || (this._on[name] = new Set())
    s.add(fn)
    return () => s.delete(fn)
  }

  _emit (name, v) {
    const s = this._on[name]
    if (s) {
      for (const fn of s) {
        try { fn(v) } catch (e) { setTimeout(() => { throw e }) }
      }
    }
  }

  /** An async iterator over the events, ending when the client closes. */
  events () {
    const q = []
    let wake = null
    let done = false
    const it = {
      push (ev) {
        if (wake) { wake({ value: ev, done: false }); wake = null } else q.push(ev)
      },
      end () {
        done = true
        if (wake) { wake({ value: undefined, done: true }); wake = null }
      },
      next: () => q.length
        ? Promise.resolve({ value: q.shift(), done: false })
        : done ? Promise.resolve({ value: undefined, done: true }) : new Promise((resolve) => { wake = resolve }),
      return: () => {
        this._iters.delete(it)
        it.end()
        return Promise.resolve({ value: undefined, done: true })
      },
      [Symbol.asyncIterator] () { return it }
    }
    this._iters.add(it)
    if (this.state === 'closed') it.end()
    return it
  }

  [Symbol.asyncIterator] () {
    return this.events()
  }

  /**
   * Publishes data (a JSON value; a string with {text: true}) to topic: over
   * the WebSocket when it is in use, else HTTP POST. Options: type, key (an
   * idempotency key: a publish cut off on the WebSocket is then retried over
   * HTTP), headers, text. Resolves to the ack {topic, offset, epoch, cursor,
   * duplicate}.
   */
  async publish (topic, data, opts = {}) {
    const t = this._cur
    if (t && t.send) {
      const cmd = { op: 'publish', topic, type: opts.type, key: opts.key, headers: opts.headers }
      cmd[opts.text ? 'text' : 'data'] = data
      try {
        return await t.send(cmd)
      } catch (e) {
        if (e.code !== 'disconnected' || !opts.key) throw e
      }
    }
    const h = headers(this._token, { 'Content-Type': opts.text ? 'text/plain; charset=utf-8' : 'application/json' })
    if (opts.key) h['Idempotency-Key'] = opts.key
    if (opts.type) h['Herald-Event-Type'] = opts.type
    for (const k in opts.headers || {}) h['Herald-Header-' + k] = opts.headers[k]
    const res = await this._fetch(this._url('topics/' + encodeURIComponent(topic) + '/events'), {
      method: 'POST', headers: h, body: opts.text ? data : JSON.stringify(data), credentials: this.options.credentials
    })
    if (!res.ok) throw await answerError(res)
    return res.json()
  }

  /** Who is on topic (a topic with presence on): {count, members}. WebSocket only. */
  presence (topic) {
    const t = this._cur
    if (!t || !t.send) return Promise.reject(new HeraldError('unavailable', 'presence needs the WebSocket transport'))
    return t.send({ op: 'presence', topic })
  }

  /** Stops the client: closes the transport, saves the cursor, ends the iterators. */
  close () {
    if (this.state === 'closed') return
    this._gen++
    for (const id of this._timers) clearTimeout(id)
    this._timers.clear()
    for (const t of [...this._live]) t.close()
    this._cur = null
    this.transport = null
    if (this._store) this._store.save(this.cursor)
    this._state('closed')
    for (const it of this._iters) it.end()
  }

  _state (s) {
    if (this.state !== s) {
      this.state = s
      this._emit('state', s)
    }
  }

  _after (ms, fn) {
    const id = setTimeout(() => { this._timers.delete(id); fn() }, ms)
    this._timers.add(id)
    return id
  }

  _cancel (id) {
    clearTimeout(id)
    this._timers.delete(id)
  }

  _sleep (ms, gen) {
    return new Promise((resolve) => this._after(ms, () => resolve(gen === this._gen)))
  }

  _url (path, q) {
    const u = new URL('v1/' + path, this._base)
    for (const k in q || {}) {
      for (const v of [].concat(q[k])) if (v != null) u.searchParams.append(k, v)
    }
    return u
  }

  // _query is the subscription every transport opens with.
  _query () {
    const o = this.options
    return { topic: o.topics, cursor: this._pos.size ? this.cursor : undefined, from: o.from }
  }

  _fatal (e) {
    this.error = e
    this._emit('error', e)
    this.close()
  }

  // _event takes an event from any live transport: once, in order.
  _event (ev) {
    const p = this._pos.get(ev.topic)
    if (p && p.e === ev.epoch && ev.offset <= p.o) return
    this._pos.set(ev.topic, { e: ev.epoch, o: ev.offset })
    this._dirty()
    this._emit('event', ev)
    for (const it of this._iters) it.push(ev)
  }

  // _gap takes a gap that starts where the client is; another transport's
  // report of the same gap starts elsewhere by then.
  _gap (g) {
    const p = this._pos.get(g.topic)
    const r = g.requested
    if (p && r && (p.e !== r.epoch || p.o !== r.offset)) return
    this._pos.set(g.topic, { e: g.resumed.epoch, o: g.resumed.offset })
    this._dirty()
    this._emit('gap', g)
  }

  // _start takes a transport's starting positions for topics that have none.
  _start (m) {
    for (const [t, p] of m) if (!this._pos.has(t) && this.options.topics.includes(t)) this._pos.set(t, p)
    this._dirty()
  }

  _dirty () {
    if (this._store && !this._saving) {
      this._saving = this._after(250, () => {
        this._saving = null
        this._store.save(this.cursor)
      })
    }
  }

  // _tok returns the token to connect with; fresh asks getToken again.
  async _tok (fresh) {
    const o = this.options
    if (o.getToken && (fresh || this._token == null)) {
      if (!this._tokenP) {
        this._tokenP = Promise.resolve().then(() => o.getToken()).finally(() => { this._tokenP = null })
      }
      this._token = await this._tokenP
      this._schedRefresh()
    }
    return this._token
  }

  // _schedRefresh asks getToken again before the token expires: at 80% of
  // its remaining life, and at most 30 s before its exp.
  _schedRefresh () {
    this._cancel(this._refreshT)
    const exp = jwtExp(this._token)
    if (!exp) return
    const left = exp * 1000 - Date.now()
    this._refreshT = this._after(Math.max(0, left - Math.min(30000, left / 5)), () => this._refresh(0))
  }

  async _refresh (step) {
    const gen = this._gen
    try {
      await this._tok(true)
    } catch (e) {
      if (e instanceof UnauthorizedError) return this._fatal(e)
      const o = this.options
      this._refreshT = this._after(backoff(step, o.minReconnectDelay, o.maxReconnectDelay, this._rand), () => this._refresh(step + 1))
      return
    }
    const t = this._cur
    if (gen !== this._gen || !t) return
    if (t.name === 'ws') {
      t.send({ op: 'refresh', token: this._token }).catch((e) => this._emit('error', e))
    } else if (t.name === 'sse') {
      // A stream keeps its credentials: open another with the new token,
      // from the cursor, and switch to it once it has opened.
      const n = await this._attempt([t.index], gen, true).catch(() => null)
      if (n && gen === this._gen && t === this._cur) this._use(n)
      else if (n) n.close()
    } // poll: the next request carries the new token
  }

  // _loop connects: rounds over the transports, with backoff between rounds.
  async _loop (wait) {
    const gen = ++this._gen
    const o = this.options
    this._state('connecting')
    for (;;) {
      if (wait && !(await this._sleep(wait, gen))) return
      let t
      try {
        t = await this._attempt(this._names.map((_, i) => i).slice(this._best), gen, false)
      } catch (e) {
        if (gen === this._gen) this._fatal(e)
        return
      }
      if (gen !== this._gen) {
        if (t) t.close()
        return
      }
      if (t) return this._use(t)
      this._best = 0
      wait = backoff(this._step++, o.minReconnectDelay, o.maxReconnectDelay, this._rand)
    }
  }

  // _attempt opens the first transport of the indexes that opens, or
  // resolves to null; it throws when trying again cannot help.
  async _attempt (indexes, gen, probe) {
    for (let k = 0, retried = false; k < indexes.length; k++) {
      const i = indexes[k]
      let t
      try {
        const token = await this._tok(this._stale)
        this._stale = false
        if (gen !== this._gen) return null
        t = this._open(i, token)
        await t.ready
        return t
      } catch (e) {
        if (t) t.close()
        if (e instanceof UnauthorizedError) throw e
        if (gen !== this._gen || probe) continue
        if (AUTH.has(e.code)) {
          if (!this.options.getToken) throw e
          this._stale = true
          if (!retried) { retried = true; k-- } // once more with a fresh token
          continue
        }
        if (FATAL.has(e.code)) throw e
        this._emit('error', e)
        if (i === this._best && k + 1 < indexes.length) this._best = indexes[k + 1]
      }
    }
    return null
  }

  _use (t) {
    const old = this._cur
    this._cur = t
    t.since = Date.now()
    if (old && old !== t) old.close()
    this.transport = t.name
    this.client = t.client || null
    this._state('connected')
    this._emit('transport', t.name)
    this._schedProbe(t)
  }

  _schedProbe (t) {
    this._cancel(this._probeT)
    if (t.index === 0) return
    const o = this.options
    const d = backoff(this._pstep++, o.upgradeDelay, Math.max(o.upgradeDelay, o.maxReconnectDelay), this._rand)
    this._probeT = this._after(d, async () => {
      const gen = this._gen
      const n = await this._attempt(this._names.slice(0, t.index).map((_, i) => i), gen, true).catch(() => null)
      if (gen !== this._gen || t !== this._cur) {
        if (n) n.close()
      } else if (n) {
        this._pstep = 0
        this._best = n.index
        this._use(n)
      } else {
        this._schedProbe(t)
      }
    })
  }

  // _drop is told that a transport failed after it had opened.
  _drop (t, e) {
    if (t !== this._cur) return
    this._cur = null
    this.transport = null
    this._cancel(this._probeT)
    const o = this.options
    if (Date.now() - t.since >= o.maxReconnectDelay) this._step = 0
    if (AUTH.has(e.code)) {
      if (!o.getToken) return this._fatal(e)
      this._stale = true
    }
    this._emit('error', e)
    this._loop(backoff(this._step++, o.minReconnectDelay, o.maxReconnectDelay, this._rand))
  }

  // _open starts transport i. Its ready settles on the first server frame,
  // on failure, or after options.timeout.
  _open (i, token) {
    const o = this.options
    const name = this._names[i]
    let opened = false
    let resolve, reject
    const t = {
      name,
      index: i,
      closed: false,
      last: Date.now(),
      ready: new Promise((res, rej) => { resolve = res; reject = rej }),
      touch () { t.last = Date.now(); t.pinged = 0 },
      open: () => {
        if (opened || t.closed) return
        opened = true
        this._cancel(openT)
        resolve(t)
      },
      fail: (e) => {
        if (t.closed) return
        reject(e)
        t.close()
        if (opened) this._drop(t, e)
      },
      close: () => {
        if (t.closed) return
        t.closed = true
        this._live.delete(t)
        this._cancel(openT)
        clearInterval(watch)
        if (t.stop) t.stop()
        reject(new HeraldError('disconnected', name + ' closed'))
      }
    }
    this._live.add(t)
    const openT = this._after(o.timeout, () => t.fail(new HeraldError('timeout', name + ' did not open within ' + o.timeout + ' ms')))
    // The watchdog: a WebSocket silent for pingInterval is asked for a
    // reply (the protocol's pings are invisible to pages); one that stays
    // silent for timeout more, an SSE stream silent for stallTimeout, or a
    // long poll unanswered past its wait has stalled.
    const watch = setInterval(() => {
      const now = Date.now()
      const idle = now - t.last
      if (!opened) return
      if (name === 'ws') {
        if (t.pinged && now - t.pinged > o.timeout) t.fail(new HeraldError('stalled', 'no answer from the WebSocket'))
        else if (!t.pinged && idle > o.pingInterval) { t.pinged = now; t.ping() }
      } else if (idle > (name === 'sse' ? o.stallTimeout : o.pollWait * 1000 + o.timeout)) {
        t.fail(new HeraldError('stalled', name + ' stalled'))
      }
    }, Math.min(1000, o.timeout / 2))
    try {
      this['_' + name](t, token)
    } catch (e) {
      t.fail(e instanceof HeraldError ? e : new HeraldError('unavailable', String(e)))
    }
    return t
  }

  _ws (t, token) {
    const o = this.options
    const u = this._url('ws')
    u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:'
    const ws = new this._WS(u.href)
    const pending = new Map()
    let id = 0
    const send = t.send = (cmd) => new Promise((resolve, reject) => {
      if (t.closed) return reject(new HeraldError('disconnected', 'the WebSocket is closed'))
      cmd.id = ++id
      pending.set(cmd.id, [resolve, reject])
      ws.send(JSON.stringify(cmd))
    })
    // An unsubscribe of a topic the client does not follow is answered and
    // changes nothing: the protocol has no ping command.
    const probe = o.topics.includes('herald.ping') ? 'herald.ping-2' : 'herald.ping'
    t.ping = () => send({ op: 'unsubscribe', topics: [probe] }).catch(() => {})
    ws.onopen = () => {
      if (token) send({ op: 'refresh', token }).catch(t.fail)
      const q = this._query()
      send({ op: 'subscribe', topics: q.topic, cursor: q.cursor, from: q.from, presence: o.presence }).then((r) => {
        this._start(new Map(r.topics.map((p) => [p.topic, { e: p.epoch, o: p.offset }])))
        t.open()
      }, t.fail)
    }
    ws.onmessage = (m) => {
      t.touch()
      const f = JSON.parse(m.data)
      const op = f.op
      if (op === 'event') this._event(f)
      else if (op === 'gap') this._gap(f)
      else if (op === 'join' || op === 'leave') this._emit(op, f)
      else if (op === 'welcome') t.client = f.client
      else {
        const p = pending.get(f.id)
        if (!p) return op === 'error' && this._emit('error', new HeraldError(f.code, f.message))
        pending.delete(f.id)
        if (op === 'error') p[1](new HeraldError(f.code, f.message))
        else p[0](f)
      }
    }
    ws.onclose = (e) => {
      const code = (e.reason || '').split(':')[0]
      t.fail(new HeraldError(code || 'disconnected', e.reason || 'the WebSocket closed (' + e.code + ')'))
    }
    t.stop = () => {
      ws.onclose = ws.onmessage = ws.onopen = null
      try { ws.close(1000) } catch {}
      for (const p of pending.values()) p[1](new HeraldError('disconnected', 'the WebSocket closed'))
      pending.clear()
    }
  }

  _sse (t, token) {
    const ac = new AbortController()
    t.stop = () => ac.abort()
    let cur = null // the stream's cursor: its last id
    const frame = (f) => {
      let id = null
      let type = ''
      let data = null
      for (const line of f.split('\n')) {
        const k = line.indexOf(':')
        if (k === 0) continue // a comment: the heartbeat
        const name = k < 0 ? line : line.slice(0, k)
        let v = k < 0 ? '' : line.slice(k + 1)
        if (v[0] === ' ') v = v.slice(1)
        if (name === 'id') id = v
        else if (name === 'event') type = v
        else if (name === 'data') data = data == null ? v : data + '\n' + v
      }
      if (id == null) {
        // Signals without a position: the stream's end, presence.
        if (type === 'error') {
          const e = parse(data)
          t.fail(new HeraldError(e.code, e.message))
        } else if (type === 'join' || type === 'leave') {
          this._emit(type, parse(data))
        }
        return
      }
      const m = decodeCursor(id)
      if (!cur) {
        // The first frame: the stream's starting positions.
        cur = m
        this._start(m)
        return t.open()
      }
      const prev = cur
      cur = m
      if (type === 'gap') return this._gap(parse(data))
      // The event's topic is the one whose position moved.
      for (const [topic, p] of m) {
        const q = prev.get(topic)
        if (!q || q.e !== p.e || q.o !== p.o) {
          return this._event({ topic, offset: p.o, epoch: p.e, type: type || undefined, data: parse(data), cursor: id })
        }
      }
    }
    const p = this.options.presence
    this._fetch(this._url('sse', { ...this._query(), presence: p && JSON.stringify(p) }), {
      headers: headers(token, { Accept: 'text/event-stream' }),
      signal: ac.signal,
      cache: 'no-store',
      credentials: this.options.credentials
    }).then(async (res) => {
      if (!res.ok) throw await answerError(res)
      const rd = res.body.getReader()
      const dec = new TextDecoder()
      let buf = ''
      for (;;) {
        const { value, done } = await rd.read()
        if (done) throw new HeraldError('disconnected', 'the stream ended')
        t.touch()
        buf += dec.decode(value, { stream: true })
        for (let i; (i = buf.indexOf('\n\n')) >= 0 && !t.closed;) {
          const f = buf.slice(0, i)
          buf = buf.slice(i + 2)
          frame(f)
        }
      }
    }).catch((e) => t.fail(e instanceof HeraldError ? e : new HeraldError('disconnected', String(e))))
  }

  _poll (t) {
    const o = this.options
    const ac = new AbortController()
    t.stop = () => ac.abort()
    const loop = async () => {
      for (let wait = 0; !t.closed; wait = o.pollWait) {
        const res = await this._fetch(this._url('events', { ...this._query(), limit: o.pollLimit, wait }), {
          headers: headers(this._token),
          signal: ac.signal,
          cache: 'no-store',
          credentials: o.credentials
        })
        if (!res.ok) throw await answerError(res)
        const b = await res.json()
        if (t.closed) return
        t.touch()
        for (const g of b.gaps || []) this._gap(g)
        for (const e of b.events) this._event(e)
        this._start(decodeCursor(b.cursor))
        t.open()
      }
    }
    loop().catch((e) => t.fail(e instanceof HeraldError ? e : new HeraldError('disconnected', String(e))))
  }
}
