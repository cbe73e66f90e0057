// The live metrics page: herald.js over Server-Sent Events only. It starts
// from the earliest retained sample (the topic keeps the last 120, one
// minute), so the chart is full at once, then follows live samples.
const { herald } = await (await fetch('config.json')).json()
const { connect } = await import(herald + '/v1/client/herald.js')

const $ = (id) => document.getElementById(id)
const samples = []
window.samples = samples // for the example's test

const h = connect(herald, { topics: ['metrics.host-1'], transports: ['sse'], from: 'earliest' })
h.on('state', (s) => { $('status').textContent = s === 'connected' ? 'live over ' + h.transport : s })
h.on('gap', () => { samples.length = 0 }) // history lost (a restart): start the chart again
h.on('event', (ev) => {
  const s = ev.data
  samples.push(s)
  if (samples.length > 120) samples.shift()
  $('load').textContent = s.load.toFixed(1) + ' %'
  $('goroutines').textContent = s.goroutines
  $('heap').textContent = s.heap_mib.toFixed(2) + ' MiB'
  $('gcs').textContent = s.gcs
  $('count').textContent = ev.offset
  const x0 = 120 - samples.length
  $('line').setAttribute('points', samples.map((p, i) => `${x0 + i},${100 - p.load}`).join(' '))
})
