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

// Queued returns how many appends to topic wait for its call in flight,
// and whether a call is in flight.
func (e *Engine) Queued(topic string) (int, bool) {
	e.qmu.Lock()
	defer e.qmu.Unlock()
	q, ok := e.queues[topic]
	if !ok {
		return 0, false
	}
	return len(q.waiting), true
}
