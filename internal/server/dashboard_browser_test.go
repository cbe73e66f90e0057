//go:build linux

package server_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/heraldhq/herald/internal/auth"
	"github.com/heraldhq/herald/internal/browsertest"
	"github.com/heraldhq/herald/internal/config"
)

// TestDashboard loads /ui/ in headless chromium from a server with auth
// off: it must load with no console error under its Content-Security-Policy,
// list the topics with their offsets, a consumer group's lag and a webhook's
// state, show a topic's live tail within 1 s of
// a publish, update the table within 2.5 s, and publish through its form.
// The screenshot is saved under the test's temporary directory (and, with
// HERALD_UPDATE_SCREENSHOT=1, as docs/dashboard.png).
func TestDashboard(t *testing.T) {
	b := browsertest.Start(t)
	ts := startServer(t)
	ts.publishRange("chat.room-1", 1, 40)
	ts.publishRange("prices.BTC-USD", 1, 7)
	ts.publishRange("orders.eu", 1, 3)

	if r := ts.do("PUT", "/v1/groups/billing", []byte(`{"topics":["orders.eu"],"start":"earliest"}`)); r.status != http.StatusCreated {
		t.Fatalf("PUT /v1/groups/billing: %d %s", r.status, r.body)
	}
	if r := ts.do("PUT", "/v1/webhooks/shop", []byte(`{"url":"https://hooks.example/herald","topics":["orders.eu"],"enabled":false}`)); r.status != http.StatusCreated {
		t.Fatalf("PUT /v1/webhooks/shop: %d %s", r.status, r.body)
	}

	r := ts.get("/ui/")
	if r.status != http.StatusOK || !strings.Contains(r.header.Get("Content-Security-Policy"), "default-src 'self'") {
		t.Fatalf("GET /ui/: %d %v", r.status, r.header)
	}
	pg := b.Open(t, "dashboard", ts.base+"/ui/")
	pg.Until("the topics table", 10*time.Second, "document.querySelectorAll('#topics tbody tr').length === 3")

	// The group's lag (3 events not yet delivered) and the webhook's state.
	pg.Until("the group's lag", 5*time.Second,
		`document.querySelector('#groups-table tr[data-group="billing"] .lag')?.textContent === '3'`)
	pg.Until("the webhook's state", 5*time.Second,
		`document.querySelector('#webhooks-table tr[data-webhook="shop"] .state')?.textContent === 'paused'`)

	// The live tail, started from the topics table's link.
	pg.Do("tail chat.room-1", chromedp.Click(chromedp.CSS(`#topics tr[data-topic="chat.room-1"] button`)))
	pg.Until("the tail connected over sse", 10*time.Second, "document.getElementById('tail-state').textContent.includes('connected over sse')")
	start := time.Now()
	ts.publish("chat.room-1", "application/json", []byte(`{"text":"hello from the test"}`))
	pg.Until("the event in the live tail", time.Second, "document.getElementById('tail').textContent.includes('hello from the test')")
	t.Logf("live tail: the event showed %v after its publish", time.Since(start).Round(time.Millisecond))
	start = time.Now()
	pg.Until("the table's last offset", 2500*time.Millisecond,
		`document.querySelector('#topics tr[data-topic="chat.room-1"]').children[2].textContent === '41'`)
	t.Logf("topics table: the new offset showed %v after the publish", time.Since(start).Round(time.Millisecond))

	// The publish form.
	pg.Do("fill the publish form",
		chromedp.SetValue(chromedp.ID("pub-topic"), "chat.room-1"),
		chromedp.SetValue(chromedp.ID("pub-type"), "note"),
		chromedp.SetValue(chromedp.ID("pub-data"), `{"text":"from the form"}`),
		chromedp.Click(chromedp.CSS("#pub-form button")),
	)
	pg.Until("the form's answer", 5*time.Second, "document.getElementById('pub-result').textContent.includes('stored at chat.room-1 #42')")
	pg.Until("the form's event in the tail", 5*time.Second, "document.getElementById('tail').textContent.includes('from the form')")
	if info, _ := ts.info("chat.room-1"); info.Last != 42 {
		t.Errorf("chat.room-1 last offset %d after the form's publish, want 42", info.Last)
	}

	// Rates and charts fill in once two metric samples are in.
	pg.Until("the rates and charts", 10*time.Second, "document.querySelector('#chart-pub polyline') && document.getElementById('conns').textContent !== '–'")
	update := os.Getenv("HERALD_UPDATE_SCREENSHOT") == "1"
	if update {
		// For the README's picture: 40 s of traffic at a changing rate,
		// so that the charts have something to show.
		for i := 0; i < 200; i++ {
			ts.publishRange("chat.room-1", 1, 5+(i/10)%6*4)
			ts.publishRange("prices.BTC-USD", 1, 20+(i/8)%5*10)
			time.Sleep(200 * time.Millisecond) // paces the traffic; nothing waits on it
		}
		pg.Do("tail prices.BTC-USD", chromedp.Click(chromedp.CSS(`#topics tr[data-topic="prices.BTC-USD"] button`)))
		ts.publish("prices.BTC-USD", "application/json", []byte(`{"symbol":"BTC-USD","price":97012.4}`), "Herald-Event-Type", "tick")
		ts.publish("prices.BTC-USD", "application/json", []byte(`{"symbol":"BTC-USD","price":97020.15}`), "Herald-Event-Type", "tick")
		pg.Until("the ticks in the tail", 5*time.Second, "document.getElementById('tail').textContent.includes('97020.15')")
	}
	shot := pg.Screenshot("dashboard")
	if update {
		b, err := os.ReadFile(shot)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join("..", "..", "docs", "dashboard.png"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if errs := pg.Errors(); len(errs) > 0 {
		t.Errorf("console errors on the dashboard:\n%s", strings.Join(errs, "\n"))
	}
}

// TestDashboardAuth loads the dashboard of a server with auth on: it asks
// for a key, refuses one without the admin grant, and with an operator's
// key lists the topics and tails one over SSE (the key in a header, which
// EventSource could not send). No console errors.
func TestDashboardAuth(t *testing.T) {
	b := browsertest.Start(t)
	admin, _, err := auth.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	plain, _, err := auth.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, func(c *config.Config) {
		all := []string{">"}
		c.Auth.APIKeys = []config.APIKey{
			{Name: "operator", Hash: auth.HashKey(admin), Grants: config.Grants{Admin: true, Subscribe: all, History: all, Publish: all}},
			{Name: "service", Hash: auth.HashKey(plain), Grants: config.Grants{Publish: all}},
		}
	})
	ts.publish("ops.deploys", "application/json", []byte(`1`), "Authorization", "Bearer "+admin)

	pg := b.Open(t, "dashboard", ts.base+"/ui/")
	pg.Until("the sign-in box", 10*time.Second, "!document.getElementById('login').hidden && document.getElementById('main').hidden")
	pg.Do("sign in without admin",
		chromedp.SetValue(chromedp.ID("login-key"), plain),
		chromedp.Click(chromedp.CSS("#login-form button")))
	pg.Until("the refusal", 5*time.Second, "document.getElementById('login-error').textContent.includes('no admin grant')")
	pg.Do("sign in as the operator",
		chromedp.SetValue(chromedp.ID("login-key"), admin),
		chromedp.Click(chromedp.CSS("#login-form button")))
	pg.Until("the topics table", 10*time.Second, "document.querySelectorAll('#topics tbody tr').length === 1")
	pg.Do("tail ops.deploys", chromedp.Click(chromedp.CSS(`#topics tr[data-topic="ops.deploys"] button`)))
	pg.Until("the tail connected over sse", 10*time.Second, "document.getElementById('tail-state').textContent.includes('connected over sse')")
	ts.publish("ops.deploys", "application/json", []byte(`{"v":"1.2.3"}`), "Authorization", "Bearer "+admin)
	pg.Until("the event in the tail", 2*time.Second, `document.getElementById('tail').textContent.includes('1.2.3')`)
	if stored := browsertest.Eval[string](pg, 5*time.Second, "sessionStorage.getItem('herald.dashboard.key')"); stored != admin {
		t.Errorf("session storage holds %q, want the operator's key", stored)
	}
	// A failed sign-in is an answer the page shows, not a console error;
	// the browser logs the 403 of that fetch, which is all there may be.
	var errs []string
	for _, e := range pg.Errors() {
		if !strings.Contains(e, "403") {
			errs = append(errs, e)
		}
	}
	if len(errs) > 0 {
		t.Errorf("console errors on the dashboard:\n%s", strings.Join(errs, "\n"))
	}
}

// TestDashboardServed checks when /ui/ is served (config.UIServed) and
// that herald.js is served to any page.
func TestDashboardServed(t *testing.T) {
	off := startServer(t, func(c *config.Config) { c.UI.Enabled = false })
	if r := off.get("/ui/"); r.status != http.StatusNotFound || !strings.Contains(string(r.body), "ui.enabled") {
		t.Errorf("ui.enabled false: GET /ui/: %d %s", r.status, r.body)
	}
	on := startServer(t)
	for _, tt := range []struct{ path, ctype string }{
		{"/ui/", "text/html; charset=utf-8"},
		{"/ui/app.js", "text/javascript; charset=utf-8"},
		{"/ui/config.json", "application/json"},
		{"/v1/client/herald.js", "text/javascript; charset=utf-8"},
		{"/v1/client/herald.d.ts", "text/plain; charset=utf-8"},
	} {
		r := on.get(tt.path, "Origin", "https://elsewhere.example")
		if r.status != http.StatusOK || r.header.Get("Content-Type") != tt.ctype {
			t.Errorf("GET %s: %d %q", tt.path, r.status, r.header.Get("Content-Type"))
		}
	}
	if r := on.get("/v1/client/herald.js"); r.header.Get("Access-Control-Allow-Origin") != "*" || r.header.Get("ETag") == "" ||
		!strings.Contains(r.header.Get("Cache-Control"), "max-age") {
		t.Errorf("herald.js headers %v, want CORS for any origin, an ETag and a max-age", r.header)
	}
	if r := on.get("/ui"); r.status != http.StatusMovedPermanently || r.header.Get("Location") != "/ui/" {
		t.Errorf("GET /ui: %d %v", r.status, r.header)
	}
	for _, p := range []string{"/ui/nope.js", "/v1/client/nope.js", "/v1/client/test/fakes.mjs"} {
		if r := on.get(p); r.status != http.StatusNotFound || !strings.Contains(string(r.body), `"not_found"`) {
			t.Errorf("GET %s: %d %s", p, r.status, r.body)
		}
	}
	if r := on.get("/ui/config.json"); strings.TrimSpace(string(r.body)) != `{"auth":false}` {
		t.Errorf("config.json: %s", r.body)
	}
}
