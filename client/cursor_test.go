package client

import (
	"encoding/base64"
	"reflect"
	"testing"
	"time"
)

func TestCursorRoundTrip(t *testing.T) {
	tests := []struct {
		name    string
		entries []cursorEntry
	}{
		{"empty", nil},
		{"one", []cursorEntry{{topic: "chat.room-1", epoch: 0x9f3c2a1b0d4e5f60, offset: 7}}},
		{"several", []cursorEntry{{topic: "a", epoch: 1, offset: 0}, {topic: "b", epoch: 1 << 63, offset: 1 << 40}, {topic: "c.d", epoch: 2, offset: 300}}},
	}
	for _, tt := range tests {
		tok := encodeCursor(tt.entries)
		got, err := decodeCursor(tok)
		if err != nil {
			t.Fatalf("%s: decode %q: %v", tt.name, tok, err)
		}
		if len(got) != len(tt.entries) || len(got) > 0 && !reflect.DeepEqual(got, tt.entries) {
			t.Errorf("%s: got %+v, want %+v", tt.name, got, tt.entries)
		}
	}
}

func TestDecodeCursorErrors(t *testing.T) {
	b64 := base64.RawURLEncoding.EncodeToString
	tests := map[string]string{
		"not base64url":        "!!",
		"no version":           b64([]byte{}) + "=",
		"version 0":            b64([]byte{0}),
		"version 2":            b64([]byte{2, 1, 'a', 1, 1}),
		"name past the end":    b64([]byte{1, 5, 'a', 'b'}),
		"no epoch":             b64([]byte{1, 1, 'a'}),
		"no offset":            b64([]byte{1, 1, 'a', 1}),
		"topics out of order":  b64([]byte{1, 1, 'b', 1, 1, 1, 'a', 1, 1}),
		"topic listed twice":   b64([]byte{1, 1, 'a', 1, 1, 1, 'a', 1, 2}),
		"unterminated uvarint": b64([]byte{1, 1, 'a', 0x80}),
	}
	for name, tok := range tests {
		if got, err := decodeCursor(tok); err == nil {
			t.Errorf("%s: decodeCursor(%q) = %+v, want an error", name, tok, got)
		}
	}
	if got, err := decodeCursor(""); err != nil || got != nil {
		t.Errorf(`decodeCursor("") = %v, %v`, got, err)
	}
}

func TestAdvanced(t *testing.T) {
	a1 := cursorEntry{topic: "a", epoch: 1, offset: 1}
	a2 := cursorEntry{topic: "a", epoch: 1, offset: 2}
	b1 := cursorEntry{topic: "b", epoch: 5, offset: 1}
	b2 := cursorEntry{topic: "b", epoch: 6, offset: 0}
	tests := []struct {
		name       string
		prev, next []cursorEntry
		want       cursorEntry
		ok         bool
	}{
		{"one topic moved", []cursorEntry{a1, b1}, []cursorEntry{a2, b1}, a2, true},
		{"new epoch", []cursorEntry{a1, b1}, []cursorEntry{a1, b2}, b2, true},
		{"new topic", []cursorEntry{a1}, []cursorEntry{a1, b1}, b1, true},
		{"nothing moved", []cursorEntry{a1, b1}, []cursorEntry{a1, b1}, cursorEntry{}, false},
		{"two moved", []cursorEntry{a1, b1}, []cursorEntry{a2, b2}, b2, false},
	}
	for _, tt := range tests {
		got, ok := advanced(tt.prev, tt.next)
		if ok != tt.ok || ok && got != tt.want {
			t.Errorf("%s: got %+v, %v; want %+v, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
}

func TestEpochFormat(t *testing.T) {
	for _, e := range []uint64{0, 1, 0x9f3c2a1b0d4e5f60, 1<<64 - 1} {
		s := formatEpoch(e)
		if len(s) != 16 {
			t.Errorf("formatEpoch(%x) = %q, want 16 digits", e, s)
		}
		if got, err := parseEpoch(s); err != nil || got != e {
			t.Errorf("parseEpoch(%q) = %x, %v; want %x", s, got, err, e)
		}
	}
}

// TestPullCursors checks the per-message cursors of a poll answer: each one,
// given back to the server, continues right after its message.
func TestPullCursors(t *testing.T) {
	ep := formatEpoch(7)
	newEp := formatEpoch(8)
	enc := func(es ...cursorEntry) string { return encodeCursor(es) }
	ev := func(topic string, off uint64, epoch string) Message {
		return Message{Event: &Event{Topic: topic, Offset: off, Epoch: epoch}}
	}
	gap := func(topic string, req, res Position) Message {
		return Message{Gap: &Gap{Topic: topic, Reason: GapEpochChanged, Requested: req, Resumed: res}}
	}
	msgs := []Message{
		gap("b", Position{Epoch: ep, Offset: 9}, Position{Epoch: newEp, Offset: 0}),
		ev("a", 4, ep),
		ev("b", 1, newEp),
		ev("a", 5, ep),
	}
	final := enc(cursorEntry{"a", 7, 5}, cursorEntry{"b", 8, 1}, cursorEntry{"c", 7, 3})
	if !pullCursors(msgs, final) {
		t.Fatal("pullCursors failed")
	}
	want := []string{
		enc(cursorEntry{"a", 7, 3}, cursorEntry{"b", 8, 0}, cursorEntry{"c", 7, 3}),
		enc(cursorEntry{"a", 7, 4}, cursorEntry{"b", 8, 0}, cursorEntry{"c", 7, 3}),
		enc(cursorEntry{"a", 7, 4}, cursorEntry{"b", 8, 1}, cursorEntry{"c", 7, 3}),
		final,
	}
	for i, m := range msgs {
		if m.Cursor != want[i] {
			got, _ := decodeCursor(m.Cursor)
			w, _ := decodeCursor(want[i])
			t.Errorf("message %d: cursor %+v, want %+v", i, got, w)
		}
	}
	if pullCursors([]Message{ev("a", 1, "not hex")}, final) {
		t.Error("pullCursors accepted a bad epoch")
	}
	if pullCursors([]Message{ev("a", 1, ep)}, "AgE") {
		t.Error("pullCursors accepted an unreadable cursor")
	}
}

func TestBackoff(t *testing.T) {
	b := backoff{initial: 100 * time.Millisecond, max: time.Second}
	for n := range 10 {
		ceil := min(b.initial<<n, b.max)
		for range 100 {
			if d := b.delay(n); d < 0 || d >= ceil {
				t.Fatalf("delay(%d) = %v, want [0, %v)", n, d, ceil)
			}
		}
	}
	if d := (backoff{}).delay(3); d != 0 {
		t.Errorf("zero backoff delay = %v", d)
	}
}
