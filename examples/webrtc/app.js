// WebRTC signalling over herald. Each tab joins the room's topic over the
// WebSocket with presence; presence tells the tabs about each other. The
// tab with the greater client id calls: it creates the offer. Offer,
// answer and ICE candidates are events of the room's topic, addressed by
// client id ({from, to, kind, ...}); each tab ignores what is not for it.
const { herald } = await (await fetch('config.json')).json()
const { connect } = await import(herald + '/v1/client/herald.js')

const room = 'rtc.' + (new URLSearchParams(location.search).get('room') || 'room-1')
const $ = (id) => document.getElementById(id)
const state = window.rtc = { sent: {}, received: {}, messages: [], pc: null, peer: null }

const h = connect(herald, { topics: [room], transports: ['ws'], presence: { page: 'webrtc' } })

function log (text) {
  const li = document.createElement('li')
  li.textContent = text
  $('log').append(li)
}

function signal (kind, fields) {
  state.sent[kind] = (state.sent[kind] || 0) + 1
  log('→ ' + kind)
  return h.publish(room, { from: h.client, to: state.peer, kind, ...fields })
}

function show () {
  const pc = state.pc
  $('signaling').textContent = pc ? pc.signalingState : '–'
  $('ice').textContent = pc ? pc.iceConnectionState : '–'
}

function peerConnection () {
  const pc = state.pc = new RTCPeerConnection({ iceServers: [] }) // no STUN: the tabs are on one machine
  pc.onicecandidate = (e) => signal('ice', { candidate: e.candidate ? e.candidate.toJSON() : null })
  pc.onsignalingstatechange = show
  pc.oniceconnectionstatechange = show
  pc.ondatachannel = (e) => channel(e.channel)
  return pc
}

function channel (dc) {
  state.dc = dc
  const s = () => { $('channel').textContent = dc.readyState }
  dc.onopen = () => { s(); dc.send('hello from ' + h.client) }
  dc.onclose = s
  dc.onmessage = (e) => {
    state.messages.push(e.data)
    const li = document.createElement('li')
    li.textContent = e.data
    $('received').append(li)
  }
  s()
}

async function call (peer) {
  if (state.pc) return
  state.peer = peer
  $('peer').textContent = peer
  $('role').textContent = 'caller (makes the offer)'
  const pc = peerConnection()
  channel(pc.createDataChannel('chat'))
  await pc.setLocalDescription(await pc.createOffer())
  await signal('offer', { sdp: pc.localDescription.sdp })
  show()
}

// found is told of another tab in the room; the greater client id calls.
function found (client) {
  if (client === h.client || state.peer) return
  if (h.client > client) call(client)
  else { $('peer').textContent = client; $('role').textContent = 'callee (answers)' }
}

h.on('transport', async () => {
  $('me').textContent = h.client
  for (const m of (await h.presence(room)).members) found(m.client)
})
h.on('join', (j) => found(j.client))
h.on('leave', (l) => { if (l.client === state.peer) log('peer left') })

h.on('event', async (ev) => {
  const s = ev.data
  if (s.to !== h.client) return
  state.received[s.kind] = (state.received[s.kind] || 0) + 1
  log('← ' + s.kind)
  if (s.kind === 'offer') {
    state.peer = s.from
    $('peer').textContent = s.from
    const pc = peerConnection()
    await pc.setRemoteDescription({ type: 'offer', sdp: s.sdp })
    await pc.setLocalDescription(await pc.createAnswer())
    await signal('answer', { sdp: pc.localDescription.sdp })
  } else if (s.kind === 'answer') {
    await state.pc.setRemoteDescription({ type: 'answer', sdp: s.sdp })
  } else if (s.kind === 'ice' && s.candidate) {
    await state.pc.addIceCandidate(s.candidate)
  }
  show()
})

$('send').addEventListener('submit', (e) => {
  e.preventDefault()
  if (state.dc && state.dc.readyState === 'open') state.dc.send($('text').value)
  $('text').value = ''
})
