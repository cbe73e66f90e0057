// Fakes of a herald server's three transports, for the unit tests of
// herald.js under node --test: a WebSocket class and a fetch function that
// the tests drive frame by frame. The real server is exercised by the
// browser tests (internal/server/heraldjs_browser_test.go).

export const flush = () => new Promise((resolve) => setImmediate(resolve))

export async function settle (n = 5) {
  for (let i = 0; i < n; i++) await flush()
}

/** A fake WebSocket class; every instance is kept in FakeWS.all. */
export function fakeWS () {
  const all = []
  class FakeWS {
    constructor (url) {
      this.url = url
      this.sent = []
      this.closed = false
      all.push(this)
    }

    send (s) { this.sent.push(JSON.parse(s)) }
    close () { this.closed = true }
    // test side
    accept (client = 'c1') {
      this.onopen && this.onopen()
      this.push({ op: 'welcome', client, protocol: 1 })
    }

    push (msg) { this.onmessage && this.onmessage({ data: JSON.stringify(msg) }) }
    drop (code = 1006, reason = '') { this.onclose && this.onclose({ code, reason }) }
    last (op) { return this.sent.filter((c) => c.op === op).at(-1) }
    // reply answers the last command of op with fields.
    reply (op, fields) {
      const c = this.last(op)
      this.push({ op: fields.op || op + 'd', id: c.id, ...fields })
    }
  }
  FakeWS.all = all
  return FakeWS
}

/**
 * A fake fetch. Requests are kept in f.calls ({url, init, respond, stream});
 * a test answers each: respond(status, json) for a JSON answer, or
 * stream() for an SSE body whose frames it then writes with send(text).
 */
export function fakeFetch () {
  const calls = []
  const f = (url, init = {}) => new Promise((resolve, reject) => {
    const u = new URL(url)
    const call = {
      url: u,
      path: u.pathname,
      init,
      respond (status, body) {
        resolve(new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } }))
      },
      stream () {
        let ctl
        const body = new ReadableStream({ start (c) { ctl = c } })
        call.send = (text) => ctl.enqueue(new TextEncoder().encode(text))
        call.end = () => ctl.close()
        resolve(new Response(body, { status: 200, headers: { 'Content-Type': 'text/event-stream' } }))
      },
      fail (err) { reject(err) }
    }
    if (init.signal) {
      init.signal.addEventListener('abort', () => {
        call.aborted = true
        reject(new DOMException('aborted', 'AbortError'))
        if (call.send) try { call.end() } catch {}
      })
    }
    calls.push(call)
  })
  f.calls = calls
  f.last = (path) => calls.filter((c) => c.path === path).at(-1)
  return f
}
