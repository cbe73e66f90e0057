package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"go.uber.org/goleak"

	"github.com/heraldhq/herald/examples/internal/demotest"
	"github.com/heraldhq/herald/internal/browsertest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestNotifications runs the example as its README says: the welcome and
// notifications published over HTTP (as the README's curl does) reach the
// page by long polling; after a reload only new ones appear.
func TestNotifications(t *testing.T) {
	b := browsertest.Start(t)
	n, _ := demotest.Start(t, example)
	publish := func(title string) {
		t.Helper()
		res, err := http.Post(n.HTTP+"/v1/topics/notify.alice/events", "application/json",
			strings.NewReader(`{"title":"`+title+`","body":"from the test","level":"info"}`))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusCreated {
			t.Fatalf("publish %s: %s", title, res.Status)
		}
	}
	titles := `[...document.querySelectorAll('#list b')].map((b) => b.textContent).join('|')`
	p := b.Open(t, "notifications", n.Page)
	p.Until("the welcome, by long polling", 10*time.Second, `document.getElementById('status').textContent === 'connected: long polling' && `+titles+` === 'Welcome'`)
	publish("Build finished")
	p.Until("the published notification", 5*time.Second, titles+` === 'Build finished|Welcome' && document.getElementById('badge').textContent === '2'`)
	p.Do("send a test notification", chromedp.Click(chromedp.ID("test")))
	p.Until("the page's own notification", 5*time.Second, titles+`.startsWith('Test notification|Build finished')`)
	p.Screenshot("notifications")
	p.Do("reload", chromedp.Reload())
	publish("After the reload")
	p.Until("only the new one after the reload", 10*time.Second, titles+` === 'After the reload'`)
	if errs := p.Errors(); len(errs) > 0 {
		t.Errorf("console errors: %v", errs)
	}
}
