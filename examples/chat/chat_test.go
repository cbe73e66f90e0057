package main

import (
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"go.uber.org/goleak"

	"github.com/heraldhq/herald/examples/internal/demotest"
	"github.com/heraldhq/herald/internal/browsertest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestChat runs the example as its README says and opens two pages, ann
// and bob: each lists both in the room, each receives the other's
// messages, and bob leaving removes him from ann's list.
func TestChat(t *testing.T) {
	b := browsertest.Start(t)
	n, _ := demotest.Start(t, example)
	ann := b.Open(t, "ann", n.Page+"?name=ann")
	bob := b.Open(t, "bob", n.Page+"?name=bob")
	for _, p := range []*browsertest.Page{ann, bob} {
		p.Until("both in the room", 10*time.Second,
			`(() => { const m = document.getElementById('members').textContent; return m.includes('ann') && m.includes('bob') })()`)
	}
	ann.Do("ann says hello", chromedp.SetValue(chromedp.ID("text"), "hello bob"), chromedp.Click(chromedp.CSS("#send button")))
	bob.Until("ann's message at bob's", 5*time.Second, `document.getElementById('messages').textContent.includes('annhello bob')`)
	bob.Do("bob answers", chromedp.SetValue(chromedp.ID("text"), "hi ann"), chromedp.Click(chromedp.CSS("#send button")))
	for _, p := range []*browsertest.Page{ann, bob} {
		p.Until("both messages, in order", 5*time.Second,
			`[...document.querySelectorAll('#messages li')].map((li) => li.textContent).join('|') === 'annhello bob|bobhi ann'`)
		p.Until("over the WebSocket", time.Second, `document.getElementById('status').textContent === 'connected over ws'`)
	}
	bob.Screenshot("chat-bob")
	bob.Close() // bob closes his tab
	ann.Until("bob gone from ann's list", 10*time.Second, `!document.getElementById('members').textContent.includes('bob')`)
	if errs := ann.Errors(); len(errs) > 0 {
		t.Errorf("console errors: %v", errs)
	}
}
