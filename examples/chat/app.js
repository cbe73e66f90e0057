// The chat page: herald.js over the WebSocket. Every message is an event of
// the room's topic (so a page that opens later sees the history, and a
// reconnect resumes where it left off); presence tells who is in the room.
const { herald } = await (await fetch('config.json')).json()
const { connect } = await import(herald + '/v1/client/herald.js')

const q = new URLSearchParams(location.search)
const name = q.get('name') || 'guest-' + Math.random().toString(36).slice(2, 6)
const room = 'chat.' + (q.get('room') || 'lobby')
const $ = (id) => document.getElementById(id)
$('room').textContent = room + ' · you are ' + name

const h = connect(herald, { topics: [room], transports: ['ws'], presence: { name }, from: 'earliest' })
const members = new Map() // client id → name

function showMembers () {
  $('members').replaceChildren(...[...members].map(([client, who]) => {
    const li = document.createElement('li')
    li.textContent = who + (client === h.client ? ' (you)' : '')
    return li
  }))
}

h.on('transport', async () => {
  $('status').textContent = 'connected over ' + h.transport
  // The whole set once per connection; joins and leaves update it.
  const p = await h.presence(room)
  members.clear()
  for (const m of p.members) members.set(m.client, m.info?.name ?? m.client)
  showMembers()
})
h.on('join', (j) => { members.set(j.client, j.info?.name ?? j.client); showMembers() })
h.on('leave', (l) => { members.delete(l.client); showMembers() })
h.on('state', (s) => { if (s !== 'connected') $('status').textContent = s })

h.on('event', (ev) => {
  const li = document.createElement('li')
  const who = document.createElement('b')
  who.textContent = ev.data.name
  li.append(who, document.createTextNode(ev.data.text))
  $('messages').append(li)
  li.scrollIntoView()
})

$('send').addEventListener('submit', async (e) => {
  e.preventDefault()
  const text = $('text').value
  $('text').value = ''
  await h.publish(room, { name, text })
})
