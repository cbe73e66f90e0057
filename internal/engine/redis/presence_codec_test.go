package redis

import (
	"errors"
	"strings"
	"testing"

	"github.com/heraldhq/herald/internal/event"
)

func TestDecodePresence(t *testing.T) {
	m := event.Member{Client: "0123456789abcdef", Info: []byte(`{"a":"b:c"}`), Since: 1700000000000}
	for _, tt := range []struct {
		msg   string
		leave bool
		info  string
	}{
		{"~pj:" + m.Client + ":" + memberValue("node1", m), false, `{"a":"b:c"}`},
		{"~pl:" + m.Client + ":" + memberValue("node1", event.Member{Since: m.Since}), true, ""},
	} {
		node, pc, err := decodePresence("room", tt.msg)
		if err != nil {
			t.Fatalf("%q: %v", tt.msg, err)
		}
		if node != "node1" || pc.Topic != "room" || pc.Leave != tt.leave || pc.Member.Client != m.Client || pc.Member.Since != m.Since ||
			string(pc.Member.Info) != tt.info || (tt.info == "") != (pc.Member.Info == nil) {
			t.Errorf("%q: node %q, %+v", tt.msg, node, pc)
		}
	}
	for _, bad := range []string{"", "~p", "~px:c:n:1:", "~pj", "~pj:", "~pj::n:1:", "~pj:c", "~pj:c:n", "~pj:c:n:x:", "~pj:c:n:1"} {
		if _, _, err := decodePresence("room", bad); !errors.Is(err, errCorrupt) {
			t.Errorf("decodePresence(%q) = %v, want errCorrupt", bad, err)
		}
	}
	// No event message is taken for a presence one: events start with
	// their epoch's hex digits.
	if ev := "00000000000000ff1:2:\x01\x00"; strings.HasPrefix(ev, presencePrefix) {
		t.Error("an event message starts with the presence prefix")
	}
}

// FuzzDecodePresence checks that no presence message, however mangled,
// panics the decoder, and that what decodes encodes to the same.
func FuzzDecodePresence(f *testing.F) {
	f.Add("~pj:0123456789abcdef:node:1700000000000:{}")
	f.Add("~pl:c:n:1:")
	f.Fuzz(func(t *testing.T, msg string) {
		node, pc, err := decodePresence("t", msg)
		if err != nil {
			return
		}
		op := "~pj:"
		if pc.Leave {
			op = "~pl:"
		}
		again, pc2, err := decodePresence("t", op+pc.Member.Client+":"+memberValue(node, pc.Member))
		if err != nil || again != node || pc2.Member.Client != pc.Member.Client || pc2.Member.Since != pc.Member.Since || string(pc2.Member.Info) != string(pc.Member.Info) {
			t.Fatalf("re-encoding %q gave %q %+v, %v", msg, again, pc2, err)
		}
	})
}
