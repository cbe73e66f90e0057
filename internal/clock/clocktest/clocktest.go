// Package clocktest is a clock.Clock whose timers fire when a test says.
package clocktest

import (
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/clock"
)

// Start is the time a Fake starts at.
var Start = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// Fake is a clock.Clock whose timers fire when the test says: each timer
// the code under test sets is handed to the test (Next), so the test knows
// the code reached its wait, and for how long, without sleeping.
type Fake struct {
	mu     sync.Mutex
	now    time.Time
	timers chan *Timer
}

// New returns a Fake at Start.
func New() *Fake {
	return &Fake{now: Start, timers: make(chan *Timer, 64)}
}

// Now returns the fake time.
func (c *Fake) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// NewTimer returns a timer that fires when the test fires it.
func (c *Fake) NewTimer(d time.Duration) clock.Timer {
	t := &Timer{D: d, c: make(chan time.Time, 1)}
	c.timers <- t
	return t
}

// Next returns the next timer set, failing the test when none is set
// within wait; what says what the timer stands for, for that failure.
func (c *Fake) Next(t testing.TB, wait time.Duration, what string) *Timer {
	t.Helper()
	select {
	case tm := <-c.timers:
		return tm
	case <-time.After(wait):
		t.Fatalf("no %s began within %v", what, wait)
		return nil
	}
}

// Fire advances the clock by the timer's wait and fires it.
func (c *Fake) Fire(tm *Timer) {
	tm.c <- c.Advance(tm.D)
}

// Advance moves the clock forward by d and returns the new time.
func (c *Fake) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	return c.now
}

// Timer is a Fake's timer.
type Timer struct {
	D time.Duration // the wait it was set for
	c chan time.Time
}

// C is the channel the timer fires on.
func (t *Timer) C() <-chan time.Time { return t.c }

// Stop does nothing: a fake timer fires only when the test fires it.
func (t *Timer) Stop() bool { return true }
