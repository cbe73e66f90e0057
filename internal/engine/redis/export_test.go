package redis

// Channel returns the pub/sub channel of topic's events.
func (e *Engine) Channel(topic string) string { return e.key(topic, "c") }

// UsePlainPubSub makes e use SUBSCRIBE/PUBLISH as on Redis before 7. Call
// it before any Watch or Append.
func (e *Engine) UsePlainPubSub() { e.sharded, e.pubCmd = false, "PUBLISH" }

// TopicKeys returns every key of topic.
func (e *Engine) TopicKeys(topic string) []string {
	return []string{e.key(topic, "m"), e.key(topic, "s"), e.key(topic, "k"), e.key(topic, "kt")}
}

// MaxInFlight is how many publish calls a topic may have in flight.
const MaxInFlight = maxInFlight

// Queued returns how many appends to topic wait for a call in flight, and
// how many calls are in flight.
func (e *Engine) Queued(topic string) (waiting, inflight int) {
	e.qmu.Lock()
	defer e.qmu.Unlock()
	q, ok := e.queues[topic]
	if !ok {
		return 0, 0
	}
	return len(q.waiting), q.inflight
}

// PresenceKeys returns the keys of topic's presence.
func (e *Engine) PresenceKeys(topic string) []string { return e.presenceKeys(topic) }
