package main

import (
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heraldhq/herald/examples/internal/demotest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestWebhookReceiver runs `webhook-receiver 10` as the README says: ten
// orders arrive verified, in order, none refused.
func TestWebhookReceiver(t *testing.T) {
	_, out := demotest.Start(t, example, "10")
	orders := func(lines []string) int {
		n := 0
		for _, l := range lines {
			if strings.HasPrefix(l, "order ") && strings.HasSuffix(l, "verified)") {
				n++
			}
		}
		return n
	}
	lines := out.Wait(t, "10 orders", 30*time.Second, func(lines []string) bool { return orders(lines) >= 10 })
	for _, l := range lines {
		if strings.HasPrefix(l, "refused") || strings.HasPrefix(l, "out of order") {
			t.Errorf("the receiver printed %q", l)
		}
	}
	for i, l := range lines {
		if strings.HasPrefix(l, "order 1:") && !strings.Contains(l, "(offset 1, verified)") {
			t.Errorf("line %d: %q", i, l)
		}
	}
}
