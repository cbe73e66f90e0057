// Unit tests of herald.js: node --test web/client/test/ (run by the Go test
// TestClientUnitTests in web/, so CI runs them). The transports are fakes
// (fakes.mjs); timers are Node's mock timers, so backoff and stall rules
// are checked without waiting.
import { test, mock, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { connect, backoff, decodeCursor, encodeCursor, UnauthorizedError } from '../herald.js'
import { fakeWS, fakeFetch, settle } from './fakes.mjs'

const E = '0000000000000001'
const pos = (o, e = E) => ({ e, o })
const cursorOf = (obj) => encodeCursor(new Map(Object.entries(obj).map(([t, o]) => [t, pos(o)])))
const ev = (topic, offset, data = offset) => ({ op: 'event', topic, offset, epoch: E, encoding: 'json', data })
const sseEvent = (topic, offset, data) => `id: ${cursorOf({ [topic]: offset })}\ndata: ${JSON.stringify(data)}\n\n`

// jwt makes an unsigned token whose payload has exp (seconds).
const jwt = (exp, sub = 'u') => ['e30', Buffer.from(JSON.stringify({ sub, exp })).toString('base64url'), 'sig'].join('.')

function setup (opts = {}) {
  mock.timers.enable({ apis: ['setTimeout', 'setInterval', 'Date'], now: 1_000_000 })
  const WS = fakeWS()
  const fetch = fakeFetch()
  const got = []
  const states = []
  const h = connect('http://herald.test', { topics: ['a'], WebSocket: WS, fetch, random: () => 0.5, ...opts })
  h.on('event', (e) => got.push(e.offset))
  h.on('transport', (t) => states.push(t))
  return { h, WS, fetch, got, states }
}

afterEach(() => mock.timers.reset())

// tick advances the clock in steps of 100 ms, letting the client run
// between them (a mock tick's timers all see the clock at its end).
async function tick (ms) {
  for (let left = ms; left > 0; left -= 100) {
    mock.timers.tick(Math.min(100, left))
    await settle()
  }
}

// openWS accepts WebSocket n and answers its subscribe at offset.
async function openWS (WS, n, offsets = { a: 0 }) {
  await settle()
  const ws = WS.all[n]
  ws.accept()
  await settle()
  ws.reply('subscribe', { topics: Object.entries(offsets).map(([topic, offset]) => ({ topic, epoch: E, offset })) })
  await settle()
  return ws
}

test('cursor: decodes tokens made by the Go server and encodes them back', () => {
  const multi = 'AQFhAawCC2NoYXQucm9vbS0x4L656rDDip6fASo'
  const m = decodeCursor(multi)
  assert.deepEqual([...m], [['a', pos(300)], ['chat.room-1', pos(42, '9f3c2a1b0d4e5f60')]])
  assert.equal(encodeCursor(m), multi)
  const big = 'AQtjaGF0LnJvb20tMf___________wGAgICAgCA'
  assert.deepEqual([...decodeCursor(big)], [['chat.room-1', pos(2 ** 40, 'ffffffffffffffff')]])
  assert.equal(encodeCursor(decodeCursor(big)), big)
  assert.equal(decodeCursor('').size, 0)
  assert.throws(() => decodeCursor('AgA'), { code: 'bad_cursor' })
  assert.throws(() => decodeCursor('AQVh'), { code: 'bad_cursor' })
})

test('backoff: full jitter between min and max, growing with the step', () => {
  let seed = 7
  const rand = () => { seed = (seed * 16807) % 2147483647; return seed / 2147483647 }
  const gaps = []
  for (let step = 0; step < 12; step++) gaps.push(backoff(step, 500, 20000, rand))
  for (const g of gaps) assert.ok(g >= 500 && g <= 20000, `gap ${g}`)
  assert.equal(backoff(0, 500, 20000, () => 0), 500)
  assert.equal(backoff(0, 500, 20000, () => 0.999), 999)
  assert.equal(backoff(40, 500, 20000, () => 0.999), 20000)
  const median = gaps.slice(6, 11).sort((x, y) => x - y)[2]
  assert.ok(median >= 4000, `median of attempts 6–10: ${median}`)
})

test('ws: subscribes, delivers events once, in order, to callbacks and the iterator', async () => {
  const { h, WS, got, states } = setup({ topics: ['a'], presence: { name: 'ann' } })
  const it = h.events()
  const ws = await openWS(WS, 0)
  assert.equal(ws.url, 'ws://herald.test/v1/ws')
  const sub = ws.last('subscribe')
  assert.deepEqual([sub.topics, sub.from, sub.presence, sub.cursor], [['a'], 'latest', { name: 'ann' }, undefined])
  assert.equal(h.state, 'connected')
  assert.equal(h.client, 'c1')
  for (const n of [1, 2, 2, 1, 3]) ws.push(ev('a', n))
  assert.deepEqual(got, [1, 2, 3])
  assert.deepEqual(states, ['ws'])
  assert.deepEqual([...decodeCursor(h.cursor)], [['a', pos(3)]])
  const seen = []
  for await (const e of it) {
    seen.push(e.offset)
    if (seen.length === 3) break
  }
  assert.deepEqual(seen, [1, 2, 3])
  h.close()
  assert.equal(h.state, 'closed')
  assert.ok(ws.closed)
})

test('fallback: ws refused, then sse refused, then long polling', async () => {
  const { h, WS, fetch, states } = setup()
  await settle()
  WS.all[0].drop(1006)
  await settle()
  const sse = fetch.last('/v1/sse')
  assert.equal(sse.url.searchParams.get('from'), 'latest')
  sse.respond(502, {})
  await settle()
  const poll = fetch.last('/v1/events')
  assert.equal(poll.url.searchParams.get('wait'), '0')
  poll.respond(200, { events: [], cursor: cursorOf({ a: 7 }) })
  await settle()
  assert.deepEqual(states, ['poll'])
  const next = fetch.last('/v1/events')
  assert.notEqual(next, poll)
  assert.equal(next.url.searchParams.get('wait'), '25')
  assert.deepEqual([...decodeCursor(next.url.searchParams.get('cursor'))], [['a', pos(7)]])
  h.close()
})

test('fallback: a WebSocket that opens but never answers is given up after the timeout', async () => {
  const { h, WS, fetch, states } = setup({ timeout: 3000 })
  await settle()
  WS.all[0].accept() // the upgrade passed; no frame follows (a proxy that blocks them)
  await tick(2900)
  assert.equal(fetch.calls.length, 0)
  await tick(200)
  assert.ok(WS.all[0].closed)
  const sse = fetch.last('/v1/sse')
  sse.stream()
  await settle()
  sse.send(`retry: 2000\nid: ${cursorOf({ a: 4 })}\n\n`)
  await settle()
  assert.deepEqual(states, ['sse'])
  h.close()
})

test('switch: a dropped stream resumes on another transport from the position, no loss, no repeat', async () => {
  const { h, WS, fetch, got, states } = setup({ transports: ['sse', 'ws'] })
  await settle()
  const sse = fetch.last('/v1/sse')
  sse.stream()
  await settle()
  sse.send(`retry: 2000\nid: ${cursorOf({ a: 0 })}\n\n`)
  for (const n of [1, 2, 3]) sse.send(sseEvent('a', n, { n }))
  sse.send(': hb\n\n')
  await settle()
  assert.deepEqual(got, [1, 2, 3])
  sse.respond = null
  sse.end() // the stream ends
  await settle()
  assert.equal(h.state, 'connecting')
  await tick(1000) // backoff(0) with random 0.5: 750 ms
  fetch.last('/v1/sse').respond(503, { error: { code: 'unavailable', message: 'x' } })
  await settle()
  const ws = WS.all[0]
  ws.accept()
  await settle()
  assert.deepEqual([...decodeCursor(ws.last('subscribe').cursor)], [['a', pos(3)]])
  ws.reply('subscribe', { topics: [{ topic: 'a', epoch: E, offset: 3 }] })
  for (const n of [3, 4, 5]) ws.push(ev('a', n))
  await settle()
  assert.deepEqual(got, [1, 2, 3, 4, 5])
  assert.deepEqual(states, ['sse', 'ws'])
  h.close()
})

test('sse: events of several topics are told apart by the cursor, types and presence pass through', async () => {
  const { h, fetch } = setup({ topics: ['a', 'b'], transports: ['sse'] })
  const events = []
  const joins = []
  h.on('event', (e) => events.push([e.topic, e.offset, e.type, e.data]))
  h.on('join', (j) => joins.push(j.client))
  await settle()
  const sse = fetch.last('/v1/sse')
  assert.deepEqual(sse.url.searchParams.getAll('topic'), ['a', 'b'])
  sse.stream()
  await settle()
  sse.send(`retry: 2000\nid: ${cursorOf({ a: 5, b: 9 })}\n\n`)
  sse.send(`id: ${cursorOf({ a: 6, b: 9 })}\nevent: chat\ndata: {"x":1}\n\n`)
  sse.send(`id: ${cursorOf({ a: 6, b: 10 })}\ndata: two\ndata: lines\n\n`)
  sse.send('event: join\ndata: {"topic":"a","client":"z"}\n\n')
  await settle()
  assert.deepEqual(events, [['a', 6, 'chat', { x: 1 }], ['b', 10, undefined, 'two\nlines']])
  assert.deepEqual(joins, ['z'])
  h.close()
})

test('upgrade: on a fallback the better transport is tried again with backoff, and taken when it opens', async () => {
  const { h, WS, fetch, states } = setup({ upgradeDelay: 5000, maxReconnectDelay: 20000 })
  await settle()
  WS.all[0].drop(1006)
  await settle()
  const sse = fetch.last('/v1/sse')
  sse.stream()
  await settle()
  sse.send(`retry: 2000\nid: ${cursorOf({ a: 2 })}\n\n`)
  await settle()
  assert.deepEqual(states, ['sse'])
  await tick(5000) // the first probe: 5000 + 0.5·5000
  assert.equal(WS.all.length, 1)
  await tick(2600)
  assert.equal(WS.all.length, 2)
  WS.all[1].drop(1006) // still blocked: the next probe waits longer
  await settle()
  await tick(7600)
  assert.equal(WS.all.length, 2)
  await tick(2500) // 5000 + 0.5·10000
  assert.equal(WS.all.length, 3)
  await openWS(WS, 2, { a: 2 })
  assert.deepEqual(states, ['sse', 'ws'])
  assert.ok(sse.aborted, 'the SSE stream is closed after the switch')
  h.close()
})

test('gap: surfaced once, from the position the client is at', async () => {
  const { h, WS } = setup()
  const gaps = []
  h.on('gap', (g) => gaps.push(g.reason))
  const ws = await openWS(WS, 0, { a: 3 })
  const gap = { op: 'gap', topic: 'a', reason: 'trimmed', requested: { epoch: E, offset: 3 }, resumed: { epoch: E, offset: 9 }, earliest: 10 }
  ws.push(gap)
  ws.push(gap)
  ws.push({ ...gap, reason: 'epoch_changed', requested: { epoch: E, offset: 9 }, resumed: { epoch: '00000000000000ff', offset: 0 } })
  assert.deepEqual(gaps, ['trimmed', 'epoch_changed'])
  assert.deepEqual([...decodeCursor(h.cursor)], [['a', pos(0, '00000000000000ff')]])
  h.close()
})

test('token: getToken is asked again before exp; the WebSocket is refreshed in place', async () => {
  let n = 0
  const now = 1_000_000
  const getToken = mock.fn(() => jwt(Math.floor(now / 1000) + 100, 'u' + ++n))
  const { h, WS } = setup({ getToken, pingInterval: 1e9 })
  const ws = await openWS(WS, 0)
  assert.equal(ws.sent[0].op, 'refresh') // the first command carries the token
  assert.equal(ws.sent[0].token, jwt(1100, 'u1'))
  assert.equal(getToken.mock.callCount(), 1)
  await tick(79_000)
  assert.equal(getToken.mock.callCount(), 1)
  await tick(1_500) // 100 s of life, refreshed 20 s before exp
  assert.equal(getToken.mock.callCount(), 2)
  assert.equal(ws.last('refresh').token, jwt(1100, 'u2'))
  assert.equal(WS.all.length, 1, 'no reconnect')
  h.close()
})

test('token: an SSE stream is reopened with the new token from the cursor, then switched to', async () => {
  let n = 0
  const getToken = () => jwt(1000 + 100, 'u' + ++n)
  const { h, fetch, got } = setup({ getToken, transports: ['sse'], stallTimeout: 1e9 })
  await settle()
  const a = fetch.last('/v1/sse')
  assert.equal(a.init.headers.Authorization, 'Bearer ' + jwt(1100, 'u1'))
  a.stream()
  await settle()
  a.send(`retry: 2000\nid: ${cursorOf({ a: 0 })}\n\n` + sseEvent('a', 1, 1))
  await tick(81_000)
  const b = fetch.last('/v1/sse')
  assert.notEqual(a, b)
  assert.equal(b.init.headers.Authorization, 'Bearer ' + jwt(1100, 'u2'))
  assert.deepEqual([...decodeCursor(b.url.searchParams.get('cursor'))], [['a', pos(1)]])
  b.stream()
  await settle()
  a.send(sseEvent('a', 2, 2)) // the old stream goes on until the new one opens
  b.send(`retry: 2000\nid: ${cursorOf({ a: 1 })}\n\n` + sseEvent('a', 2, 2) + sseEvent('a', 3, 3))
  await settle()
  assert.ok(a.aborted)
  assert.deepEqual(got, [1, 2, 3])
  h.close()
})

test('token: getToken throwing UnauthorizedError stops the client', async () => {
  const { h, WS, fetch } = setup({ getToken: () => { throw new UnauthorizedError('logged out') } })
  const errors = []
  h.on('error', (e) => errors.push(e.message))
  await settle()
  assert.equal(h.state, 'closed')
  assert.deepEqual(errors, ['logged out'])
  await tick(60_000)
  assert.equal(WS.all.length + fetch.calls.length, 0)
})

test('token: a static token that expired ends the client instead of looping', async () => {
  const { h, fetch } = setup({ token: jwt(10), transports: ['poll'] })
  await settle()
  fetch.last('/v1/events').respond(401, { error: { code: 'token_expired', message: 'token expired' } })
  await settle()
  assert.equal(h.state, 'closed')
  assert.equal(h.error.code, 'token_expired')
  await tick(60_000)
  assert.equal(fetch.calls.length, 1)
})

test('token: a refused token is replaced by a fresh one from getToken', async () => {
  let n = 0
  const { h, fetch, states } = setup({ getToken: () => 'k' + ++n, transports: ['poll'] })
  await settle()
  fetch.last('/v1/events').respond(401, { error: { code: 'token_expired', message: 'token expired' } })
  await settle()
  const again = fetch.last('/v1/events')
  assert.equal(again.init.headers.Authorization, 'Bearer k2')
  again.respond(200, { events: [], cursor: cursorOf({ a: 1 }) })
  await settle()
  assert.deepEqual(states, ['poll'])
  h.close()
})

test('backoff: immediate refusals are retried with growing, jittered delays, never faster than minReconnectDelay', async () => {
  let seed = 42
  const random = () => { seed = (seed * 16807) % 2147483647; return seed / 2147483647 }
  const { h, WS, fetch } = setup({ random, transports: ['ws', 'poll'] })
  const starts = []
  for (let round = 0; round < 11; round++) {
    // Wait for the round's WebSocket, refuse it and the long poll at once.
    for (let waited = 0; WS.all.length <= round; waited += 100) {
      assert.ok(waited < 21_000, `round ${round} did not start within 21 s`)
      await tick(100)
    }
    starts.push(Date.now())
    WS.all[round].drop(1006)
    await settle()
    fetch.last('/v1/events').respond(503, { error: { code: 'unavailable', message: 'down' } })
    await settle()
  }
  const gaps = starts.slice(1).map((t, i) => t - starts[i])
  for (const g of gaps) assert.ok(g >= 500 && g <= 20_100, `gap ${g}`)
  const median = gaps.slice(5, 10).sort((x, y) => x - y)[2]
  assert.ok(median >= 4000, `median of attempts 6–10: ${median} (gaps ${gaps})`)
  h.close()
})

test('stall: an SSE stream silent for stallTimeout is given up', async () => {
  const { h, WS, fetch, states } = setup({ transports: ['sse', 'ws'], stallTimeout: 10_000 })
  await settle()
  const sse = fetch.last('/v1/sse')
  sse.stream()
  await settle()
  sse.send(`retry: 2000\nid: ${cursorOf({ a: 0 })}\n\n`)
  await tick(9_000)
  sse.send(': hb\n\n')
  await settle()
  await tick(9_000)
  assert.equal(h.transport, 'sse')
  await tick(2_000)
  assert.ok(sse.aborted)
  assert.equal(h.state, 'connecting')
  await tick(1000)
  fetch.last('/v1/sse').respond(502, {})
  await openWS(WS, 0)
  assert.deepEqual(states, ['sse', 'ws'])
  h.close()
})

test('stall: a silent WebSocket is asked for an answer, and given up without one', async () => {
  const { h, WS } = setup({ pingInterval: 10_000, timeout: 4000 })
  const ws = await openWS(WS, 0)
  await tick(11_000)
  const probe = ws.last('unsubscribe')
  assert.ok(probe, 'a probe was sent')
  ws.push({ op: 'unsubscribed', id: probe.id, topics: [] })
  await tick(5_000)
  assert.equal(h.transport, 'ws')
  await tick(11_000)
  assert.ok(ws.closed, 'no answer to the second probe')
  assert.equal(h.state, 'connecting')
  h.close()
})

test('fatal refusals end the client: forbidden on subscribe', async () => {
  const { h, WS } = setup()
  await settle()
  WS.all[0].accept()
  await settle()
  WS.all[0].reply('subscribe', { op: 'error', code: 'forbidden', message: 'no' })
  await settle()
  assert.equal(h.state, 'closed')
  assert.equal(h.error.code, 'forbidden')
})

test('publish: over the WebSocket when in use, else HTTP POST', async () => {
  const { h, WS, fetch } = setup()
  await settle()
  const p1 = h.publish('a', { x: 1 }, { type: 't', key: 'k1', headers: { h: 'v' } })
  await settle()
  const post = fetch.last('/v1/topics/a/events')
  assert.equal(post.init.method, 'POST')
  assert.equal(post.init.body, '{"x":1}')
  assert.deepEqual(post.init.headers, { 'Content-Type': 'application/json', 'Idempotency-Key': 'k1', 'Herald-Event-Type': 't', 'Herald-Header-h': 'v' })
  post.respond(201, { topic: 'a', offset: 1, epoch: E, cursor: 'x', duplicate: false })
  assert.equal((await p1).offset, 1)
  const ws = await openWS(WS, 0)
  const p2 = h.publish('a', 'hi', { text: true })
  const cmd = ws.last('publish')
  assert.deepEqual([cmd.topic, cmd.text, cmd.data], ['a', 'hi', undefined])
  ws.push({ op: 'ack', id: cmd.id, topic: 'a', offset: 2, epoch: E, cursor: 'y', duplicate: false })
  assert.equal((await p2).offset, 2)
  const p3 = h.publish('b', 1)
  ws.reply('publish', { op: 'error', code: 'forbidden', message: 'no' })
  await assert.rejects(p3, { code: 'forbidden' })
  const p4 = h.presence('a')
  ws.reply('presence', { op: 'presence', topic: 'a', count: 1, members: [{ client: 'c1' }] })
  assert.equal((await p4).count, 1)
  h.close()
})

test('cursor store: a reloaded page resumes from the saved cursor', async () => {
  const saved = []
  const store = { load: () => cursorOf({ a: 41, other: 3 }), save: (c) => saved.push(c) }
  const { h, WS } = setup({ cursorStore: store })
  const ws = await openWS(WS, 0, { a: 41 })
  assert.deepEqual([...decodeCursor(ws.last('subscribe').cursor)], [['a', pos(41)]], 'only the topics followed')
  ws.push(ev('a', 42))
  ws.push(ev('a', 43))
  assert.equal(saved.length, 0)
  await tick(300)
  assert.deepEqual(saved, [cursorOf({ a: 43 })], 'saves are batched')
  ws.push(ev('a', 44))
  h.close()
  assert.deepEqual(saved.at(-1), cursorOf({ a: 44 }))
})
