// The notifications page: herald.js with long polling only. The client's
// cursor is kept in localStorage: a reloaded page resumes after the last
// notification it received, so nothing is shown twice, and nothing
// published while the page was closed is missed.
const { herald } = await (await fetch('config.json')).json()
const { connect, localStorageCursor } = await import(herald + '/v1/client/herald.js')

const topic = 'notify.alice'
const $ = (id) => document.getElementById(id)
let unread = 0

const h = connect(herald, {
  topics: [topic],
  transports: ['poll'],
  from: 'earliest', // the first visit shows everything retained
  cursorStore: localStorageCursor('herald.example.' + topic)
})
h.on('state', (s) => { $('status').textContent = s === 'connected' ? 'connected: long polling' : s })
h.on('event', (ev) => {
  const n = ev.data
  const li = document.createElement('li')
  li.className = n.level || 'info'
  const title = document.createElement('b')
  title.textContent = n.title
  li.append(title, document.createTextNode(n.body || ''))
  $('list').prepend(li)
  $('badge').textContent = ++unread
})
// Persist the cursor when the page goes away (it is saved every 250 ms too).
addEventListener('pagehide', () => h.close())

$('read').addEventListener('click', () => { unread = 0; $('badge').textContent = '' })
$('test').addEventListener('click', () => h.publish(topic, {
  title: 'Test notification', body: 'sent from the page at ' + new Date().toLocaleTimeString(), level: 'warn'
}))
