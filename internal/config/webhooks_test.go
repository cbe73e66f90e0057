package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/config"
)

func TestLoadWebhooks(t *testing.T) {
	p := writeFile(t, `
webhooks:
  - name: shop
    url: https://shop.example/hooks
    topics: [orders, "billing.>"]
    secrets: [whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw]
    ordered: false
    concurrency: 20
    retry: [1s, 1m]
    retry_jitter: 0
    timeout: 5s
    disable_after: 24h
  - name: audit
    url: https://audit.example/in
    topics: ["audit.>"]
`)
	c, err := config.Load(p, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Webhooks) != 2 {
		t.Fatalf("webhooks %+v", c.Webhooks)
	}
	w := c.Webhooks[0]
	if *w.Ordered || w.Concurrency != 20 || len(w.Retry) != 2 || w.Retry[1] != time.Minute || *w.Jitter != 0 || w.Timeout != 5*time.Second || w.DisableAfter != 24*time.Hour {
		t.Errorf("shop %+v", w)
	}
	if a := c.Webhooks[1]; a.Ordered != nil || a.Enabled != nil || a.Retry != nil {
		t.Errorf("audit %+v", a)
	}
}

func TestWebhooksErrorsNameTheKey(t *testing.T) {
	for _, c := range []struct{ file, want string }{
		{"webhooks:\n  - url: http://x\n    topics: [t]\n", "config webhooks[0] ().name: every webhook needs a name"},
		{"webhooks:\n  - name: a\n    url: http://x\n    topics: [t]\n  - name: a\n    url: http://y\n    topics: [t]\n", "config webhooks[1] (a).name: \"a\" names two webhooks"},
		{"webhooks:\n  - name: a\n    url: http://x\n    topics: [t]\n    retry: [5]\n", "retry"},
	} {
		_, err := config.Load(writeFile(t, c.file), nil, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Load(%q) = %v, want an error with %q", c.file, err, c.want)
		}
	}
}
