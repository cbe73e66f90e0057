package durable

// SweepNow runs one round of the sweeper (trims by age, expiry of
// idempotency keys) on every topic and returns when it is done, so tests
// need not wait for the background sweeper.
func SweepNow(e *Engine) { e.sweepOnce() }
