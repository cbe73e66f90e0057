package main

import (
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heraldhq/herald/examples/internal/demotest"
	"github.com/heraldhq/herald/internal/browsertest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestWebRTC runs the example as its README says and opens two tabs: the
// offer/answer exchange must complete over herald (both stable, with local
// and remote descriptions), and ICE signals must cross both ways.
func TestWebRTC(t *testing.T) {
	b := browsertest.Start(t)
	n, _ := demotest.Start(t, example)
	a := b.Open(t, "tab A", n.Page)
	a.Until("tab A connected", 10*time.Second, `window.rtc && document.getElementById('me').textContent.length === 16`)
	c := b.Open(t, "tab B", n.Page)
	done := `(() => { const s = window.rtc; return s && s.pc && s.pc.signalingState === 'stable' &&
		s.pc.localDescription && s.pc.remoteDescription && (s.received.ice || 0) >= 1 && (s.sent.ice || 0) >= 1 })()`
	for _, p := range []*browsertest.Page{a, c} {
		p.Until("the offer/answer exchange and ICE signals", 15*time.Second, done)
	}
	type side struct {
		Sent     map[string]int `json:"sent"`
		Received map[string]int `json:"received"`
		ICE      string         `json:"ice"`
		Messages []string       `json:"messages"`
	}
	read := `({sent: rtc.sent, received: rtc.received, ice: rtc.pc.iceConnectionState, messages: rtc.messages})`
	sa, sc := browsertest.Eval[side](a, 5*time.Second, read), browsertest.Eval[side](c, 5*time.Second, read)
	offers := sa.Sent["offer"] + sc.Sent["offer"]
	answers := sa.Sent["answer"] + sc.Sent["answer"]
	if offers != 1 || answers != 1 || sa.Received["offer"]+sc.Received["offer"] != 1 || sa.Received["answer"]+sc.Received["answer"] != 1 {
		t.Errorf("signals: A %+v, B %+v; want exactly one offer and one answer, each received", sa, sc)
	}
	t.Logf("tab A: %+v; tab B: %+v", sa, sc)
	a.Screenshot("webrtc-a")
	for _, p := range []*browsertest.Page{a, c} {
		if errs := p.Errors(); len(errs) > 0 {
			t.Errorf("console errors: %v", errs)
		}
	}
}
