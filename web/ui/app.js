// The herald dashboard (served at /ui/). It uses herald's public API only:
// GET /ui/config.json (is auth on?), GET /v1/topics, /v1/groups and
// /v1/webhooks (the admin grant), GET /metrics, POST /v1/topics/{topic}/events, and herald.js for the live
// tail. The operator's key stays in this tab's sessionStorage.
import { connect } from '/v1/client/herald.js'

const $ = (id) => document.getElementById(id)
const KEY = 'herald.dashboard.key'
const POLL_MS = 2000
const HISTORY = 90 // chart points: 3 minutes at one per 2 s
const TAIL_MAX = 200

const state = {
  auth: false,
  key: sessionStorage.getItem(KEY) || '',
  prevTopics: new Map(), // name → {last, at}
  prevMetrics: null, // {at, published, delivered}
  series: { pub: [], del: [], conns: [] },
  tail: null,
  tailed: 0
}

function authHeaders (h = {}) {
  if (state.key) h.Authorization = 'Bearer ' + state.key
  return h
}

function status (text, ok) {
  const s = $('status')
  s.textContent = text
  s.className = 'status ' + (ok ? 'ok' : 'bad')
}

async function apiError (res) {
  try {
    const e = (await res.json()).error
    return e.code + ': ' + e.message
  } catch {
    return 'HTTP ' + res.status
  }
}

function fmt (n) {
  if (n == null || Number.isNaN(n)) return '–'
  if (n >= 1e9) return (n / 1e9).toFixed(1) + ' G'
  if (n >= 1e6) return (n / 1e6).toFixed(1) + ' M'
  if (n >= 1e4) return (n / 1e3).toFixed(1) + ' k'
  return Number.isInteger(n) ? String(n) : n.toFixed(1)
}

function bytes (n) {
  if (n >= 1 << 30) return (n / (1 << 30)).toFixed(1) + ' GiB'
  if (n >= 1 << 20) return (n / (1 << 20)).toFixed(1) + ' MiB'
  if (n >= 1 << 10) return (n / (1 << 10)).toFixed(1) + ' KiB'
  return n + ' B'
}

function el (tag, text, cls) {
  const e = document.createElement(tag)
  if (text != null) e.textContent = text
  if (cls) e.className = cls
  return e
}

// parseMetrics reads the Prometheus text format: name{labels} value.
function parseMetrics (text) {
  const out = []
  for (const line of text.split('\n')) {
    if (!line || line[0] === '#') continue
    const m = /^([a-zA-Z_:][\w:]*)(\{([^}]*)\})?\s+(\S+)/.exec(line)
    if (!m) continue
    const labels = {}
    for (const l of (m[3] || '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2]
    out.push({ name: m[1], labels, value: Number(m[4]) })
  }
  return out
}

const sum = (ms, name, pred = () => true) => ms.filter((m) => m.name === name && pred(m.labels)).reduce((a, m) => a + m.value, 0)

function push (series, v) {
  series.push(v)
  if (series.length > HISTORY) series.shift()
}

function chart (svg, series) {
  svg.replaceChildren()
  const ns = 'http://www.w3.org/2000/svg'
  const base = document.createElementNS(ns, 'line')
  base.setAttribute('x1', 0); base.setAttribute('x2', 300); base.setAttribute('y1', 59); base.setAttribute('y2', 59)
  svg.append(base)
  if (series.length < 2) return
  const max = Math.max(1, ...series)
  const step = 300 / (HISTORY - 1)
  const x0 = 300 - (series.length - 1) * step
  const pts = series.map((v, i) => `${(x0 + i * step).toFixed(1)},${(58 - (v / max) * 54).toFixed(1)}`)
  const line = document.createElementNS(ns, 'polyline')
  line.setAttribute('points', pts.join(' '))
  svg.append(line)
  const title = document.createElementNS(ns, 'title')
  title.textContent = 'max ' + fmt(max)
  svg.append(title)
}

async function refreshMetrics () {
  const res = await fetch('/metrics', { cache: 'no-store' })
  if (!res.ok) throw new Error('metrics: HTTP ' + res.status)
  const ms = parseMetrics(await res.text())
  const now = Date.now()
  const published = sum(ms, 'herald_events_published_total')
  const delivered = sum(ms, 'herald_events_delivered_total')
  const conns = ms.filter((m) => m.name === 'herald_connections')
  const total = conns.reduce((a, m) => a + m.value, 0)
  $('conns').textContent = fmt(total)
  $('conns-by').textContent = conns.map((m) => `${m.labels.transport} ${fmt(m.value)}`).join(' · ') || '–'
  $('subs').textContent = fmt(sum(ms, 'herald_subscriptions'))
  $('slow').textContent = fmt(sum(ms, 'herald_slow_consumer_disconnects_total'))
  $('pub-total').textContent = fmt(published) + ' total'
  $('del-total').textContent = fmt(delivered) + ' total'
  const prev = state.prevMetrics
  // Rates over at least a second: an extra refresh (after a publish from
  // the form) comes soon after the last one and would make a spike.
  if (prev && now - prev.at < 1000) return
  if (prev) {
    const dt = (now - prev.at) / 1000
    const pr = Math.max(0, (published - prev.published) / dt)
    const dr = Math.max(0, (delivered - prev.delivered) / dt)
    $('pub-rate').textContent = fmt(pr)
    $('del-rate').textContent = fmt(dr)
    push(state.series.pub, pr)
    push(state.series.del, dr)
  }
  push(state.series.conns, total)
  state.prevMetrics = { at: now, published, delivered }
  chart($('chart-pub'), state.series.pub)
  chart($('chart-del'), state.series.del)
  chart($('chart-conns'), state.series.conns)
}

async function refreshTopics () {
  const res = await fetch('/v1/topics', { headers: authHeaders(), cache: 'no-store' })
  if (res.status === 401 && state.auth) {
    logout('the key was refused: ' + await apiError(res))
    return
  }
  if (!res.ok) {
    $('topics-error').textContent = await apiError(res)
    return
  }
  $('topics-error').textContent = ''
  const { topics } = await res.json()
  const now = Date.now()
  const tbody = $('topics').tBodies[0]
  const rows = []
  topics.sort((a, b) => a.name.localeCompare(b.name))
  for (const t of topics) {
    const prev = state.prevTopics.get(t.name)
    let rate = prev ? prev.rate : null
    if (!prev || now - prev.at >= 1000) {
      if (prev && prev.epoch === t.epoch) rate = Math.max(0, (t.last - prev.last) / ((now - prev.at) / 1000))
      state.prevTopics.set(t.name, { last: t.last, epoch: t.epoch, at: now, rate })
    }
    const tr = el('tr')
    tr.dataset.topic = t.name
    const name = el('td')
    name.append(el('code', t.name))
    const tailBtn = el('button', 'tail', 'link')
    tailBtn.type = 'button'
    tailBtn.addEventListener('click', () => startTail(t.name))
    const act = el('td')
    act.append(tailBtn)
    tr.append(name, el('td', t.epoch, 'small'), el('td', fmt(t.last), 'num'), el('td', rate == null ? '…' : fmt(rate), 'num'),
      el('td', fmt(t.retained), 'num'), el('td', bytes(t.bytes), 'num'), el('td', fmt(t.subscribers), 'num'), act)
    rows.push(tr)
  }
  tbody.replaceChildren(...rows)
  $('topics-count').textContent = `(${topics.length})`
}

// refreshList fills a table from one of the list endpoints (GET
// /v1/groups, /v1/webhooks). A server without the feature (404, or 503 when
// its engine keeps no consumer state) gets a note instead of an error.
async function refreshList (path, key, what, row) {
  const res = await fetch(path, { headers: authHeaders(), cache: 'no-store' })
  const note = $(key + '-note')
  const tbody = $(key + '-table').tBodies[0]
  if (res.status === 404 || res.status === 503) {
    tbody.replaceChildren()
    $(key + '-count').textContent = ''
    note.className = 'small'
    note.textContent = res.status === 404
      ? `this server has no ${what} API`
      : `${what} need an engine that keeps consumer state: ` + await apiError(res)
    return
  }
  if (!res.ok) {
    note.className = 'error'
    note.textContent = await apiError(res)
    return
  }
  const list = (await res.json())[key] || []
  tbody.replaceChildren(...list.map(row))
  $(key + '-count').textContent = `(${list.length})`
  note.className = 'small'
  note.textContent = list.length ? '' : `no ${what} yet`
}

function groupRow (g) {
  const tr = el('tr')
  tr.dataset.group = g.name
  const name = el('td')
  name.append(el('code', g.name))
  const members = Object.entries(g.members || {}).map(([m, n]) => `${m} ${n}`).join(' · ')
  tr.append(name, el('td', (g.topics || []).join(', '), 'small'), el('td', fmt(g.pending), 'num lag'),
    el('td', fmt(g.in_flight), 'num'), el('td', members || '–', 'small'), el('td', fmt(g.redelivered), 'num'),
    el('td', fmt(g.dead_lettered), 'num'))
  return tr
}

function webhookRow (w) {
  const st = w.status || {}
  const tr = el('tr')
  tr.dataset.webhook = w.name
  const name = el('td')
  name.append(el('code', w.name))
  name.title = w.url
  const state = el('td', st.state || '–', 'state ' + (st.state || ''))
  if (st.disabled_reason) state.title = st.disabled_reason
  else if (st.waiting) state.title = st.waiting
  const a = st.last_attempt
  const last = a
    ? `${a.result === 'status' ? 'HTTP ' + a.status : a.result}${a.latency_ms != null ? ' · ' + a.latency_ms + ' ms' : ''}${a.next === 'retry' && a.retry_at ? ' · retry ' + new Date(a.retry_at).toLocaleTimeString() : ''}`
    : '–'
  tr.append(name, state, el('td', fmt(st.delivered), 'num'), el('td', fmt(st.failed), 'num'),
    el('td', fmt(st.retries_pending), 'num'), el('td', last, 'small'))
  return tr
}

async function tick () {
  const results = await Promise.allSettled([refreshMetrics(), refreshTopics(),
    refreshList('/v1/groups', 'groups', 'consumer groups', groupRow),
    refreshList('/v1/webhooks', 'webhooks', 'webhooks', webhookRow)])
  const failed = results.find((r) => r.status === 'rejected')
  if (failed) status('unreachable: ' + failed.reason.message, false)
  else status('live · ' + location.host, true)
}

function tailLine (ev) {
  const li = el('li')
  li.append(el('span', '#' + ev.offset, 'off'))
  if (ev.type) li.append(el('span', ev.type, 'type'))
  li.append(el('code', typeof ev.data === 'string' ? ev.data : JSON.stringify(ev.data)))
  return li
}

function startTail (topic) {
  stopTail()
  $('tail-topic').value = topic
  $('tail').replaceChildren()
  state.tailed = 0
  const h = connect(location.origin, {
    topics: [topic],
    transports: ['sse', 'poll'],
    from: 'latest',
    token: state.key || undefined
  })
  state.tail = h
  const show = () => {
    if (state.tail !== h) return
    $('tail-state').textContent = h.state === 'closed'
      ? `stopped${h.error ? ': ' + h.error.code + ': ' + h.error.message : ''}`
      : `${h.state}${h.transport ? ' over ' + h.transport : ''} · ${topic} · ${state.tailed} events`
  }
  h.on('state', show)
  h.on('transport', show)
  h.on('error', show)
  h.on('event', (ev) => {
    state.tailed++
    const list = $('tail')
    list.prepend(tailLine(ev))
    while (list.childElementCount > TAIL_MAX) list.lastElementChild.remove()
    show()
  })
  h.on('gap', (g) => {
    const li = el('li', `gap: ${g.reason}, resumed at #${g.resumed.offset}`, 'gap')
    $('tail').prepend(li)
  })
  show()
}

function stopTail () {
  if (state.tail) {
    const h = state.tail
    state.tail = null
    h.close()
    $('tail-state').textContent = 'not tailing'
  }
}

async function publish (e) {
  e.preventDefault()
  const topic = $('pub-topic').value.trim()
  const text = $('pub-text').checked
  const raw = $('pub-data').value
  const out = $('pub-result')
  if (!text) {
    try {
      JSON.parse(raw)
    } catch (err) {
      out.textContent = 'not JSON (' + err.message + '): tick "send as text" to send it as text'
      out.className = 'error'
      return
    }
  }
  const h = authHeaders({ 'Content-Type': text ? 'text/plain; charset=utf-8' : 'application/json' })
  const type = $('pub-type').value.trim()
  if (type) h['Herald-Event-Type'] = type
  const res = await fetch('/v1/topics/' + encodeURIComponent(topic) + '/events', { method: 'POST', headers: h, body: raw })
  if (!res.ok) {
    out.textContent = await apiError(res)
    out.className = 'error'
    return
  }
  const ack = await res.json()
  out.textContent = `stored at ${ack.topic} #${ack.offset}${ack.duplicate ? ' (duplicate)' : ''}`
  out.className = 'small'
  tick()
}

function logout (why) {
  stopTail()
  state.key = ''
  sessionStorage.removeItem(KEY)
  showLogin(why || '')
}

function showLogin (why) {
  $('main').hidden = true
  $('logout').hidden = true
  $('login').hidden = false
  $('login-error').textContent = why
  status('sign in', false)
}

let timer = null
function showMain () {
  $('login').hidden = true
  $('main').hidden = false
  $('logout').hidden = !state.auth
  tick()
  clearInterval(timer)
  timer = setInterval(tick, POLL_MS)
}

async function login (e) {
  e.preventDefault()
  const key = $('login-key').value.trim()
  const res = await fetch('/v1/topics', { headers: { Authorization: 'Bearer ' + key }, cache: 'no-store' })
  if (!res.ok) {
    $('login-error').textContent = res.status === 403
      ? 'this credential has no admin grant: ' + await apiError(res)
      : await apiError(res)
    return
  }
  state.key = key
  sessionStorage.setItem(KEY, key)
  $('login-key').value = ''
  showMain()
}

async function main () {
  $('login-form').addEventListener('submit', login)
  $('logout').addEventListener('click', () => logout())
  $('pub-form').addEventListener('submit', publish)
  $('tail-form').addEventListener('submit', (e) => {
    e.preventDefault()
    startTail($('tail-topic').value.trim())
  })
  $('tail-stop').addEventListener('click', stopTail)
  const res = await fetch('config.json', { cache: 'no-store' })
  state.auth = res.ok && (await res.json()).auth
  if (state.auth && !state.key) showLogin('')
  else showMain()
}

main()
