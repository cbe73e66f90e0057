package event_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/heraldhq/herald/internal/event"
)

func TestValidateTopic(t *testing.T) {
	long := func(n int) string { return strings.Repeat("a", n) }
	dotted := func(n int) string { // "a.a.a..." of exactly n bytes (n odd)
		return strings.Repeat("a.", n/2) + "a"
	}
	tests := []struct {
		name    string
		topic   string
		wantErr string // substring of the error; "" means valid
	}{
		{"single letter", "a", ""},
		{"digit", "7", ""},
		{"two segments", "chat.room-42", ""},
		{"upper case", "prices.BTC-USD", ""},
		{"every special", "a_b-c:d@e=f", ""},
		{"specials only", "_-:@=", ""},
		{"many segments", "a.b.c.d.e.f", ""},
		{"200 bytes", long(200), ""},
		{"200 bytes dotted", dotted(199) + "b", ""},
		{"empty", "", "empty name"},
		{"201 bytes", long(201), "201 bytes, the limit is 200"},
		{"201 bytes dotted", dotted(201), "201 bytes"},
		{"huge", long(1 << 16), "65536 bytes"},
		{"only a dot", ".", "empty segment"},
		{"leading dot", ".a", "empty segment"},
		{"trailing dot", "a.", "ends with a dot"},
		{"double dot", "a..b", "empty segment"},
		{"space", "a b", "character ' ' at byte 1"},
		{"leading space", " a", "at byte 0"},
		{"tab", "a\tb", "character"},
		{"newline", "a\n", "character"},
		{"nul", "a\x00b", "character"},
		{"slash", "chat/room", "character '/'"},
		{"backslash", `a\b`, "character"},
		{"star", "chat.*", "character '*'"},
		{"gt", "chat.>", "character '>'"},
		{"hash", "a#b", "character"},
		{"plus", "a+b", "character"},
		{"comma", "a,b", "character"},
		{"percent", "a%20b", "character"},
		{"question", "a?b=c", "character"},
		{"unicode", "chat.rööm", "at byte 6"},
		{"emoji", "🎉", "at byte 0"},
		{"invalid utf8", "a\xffb", "at byte 1"},
		{"del", "a\x7f", "character"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := event.ValidateTopic(tt.topic)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("ValidateTopic(%q) = %v, want nil", short(tt.topic), err)
				}
				return
			}
			if err == nil {
				t.Fatalf("ValidateTopic(%q) = nil, want an error containing %q", short(tt.topic), tt.wantErr)
			}
			if !errors.Is(err, event.ErrBadTopic) {
				t.Errorf("ValidateTopic(%q) = %v, want it to wrap ErrBadTopic", short(tt.topic), err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ValidateTopic(%q) = %q, want it to contain %q", short(tt.topic), err, tt.wantErr)
			}
			if len(err.Error()) > 300 {
				t.Errorf("error is %d bytes long; long names must be shortened", len(err.Error()))
			}
		})
	}
}

func TestNamespace(t *testing.T) {
	tests := []struct {
		topic, want string
	}{
		{"a", "a"},
		{"chat.room-42", "chat"},
		{"prices.BTC-USD.spot", "prices"},
		{"x:y.z", "x:y"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := event.Namespace(tt.topic); got != tt.want {
			t.Errorf("Namespace(%q) = %q, want %q", tt.topic, got, tt.want)
		}
	}
}

// FuzzValidateTopic checks ValidateTopic against a second, naive
// implementation of the rule: it must never panic, must accept exactly the
// names made of allowed characters in non-empty dot-separated segments, and
// must wrap ErrBadTopic when it refuses.
func FuzzValidateTopic(f *testing.F) {
	for _, s := range []string{"", "a", "chat.room-42", "a..b", ".a", "a.", "a b", "rööm", strings.Repeat("x", 201)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := event.ValidateTopic(name)
		want := validTopic(name)
		if err != nil {
			if want {
				t.Fatalf("ValidateTopic(%q) = %v, want nil", name, err)
			}
			if !errors.Is(err, event.ErrBadTopic) {
				t.Fatalf("ValidateTopic(%q) = %v, want it to wrap ErrBadTopic", name, err)
			}
			return
		}
		if !want {
			t.Fatalf("ValidateTopic(%q) = nil, want an error", name)
		}
		for i := 0; i < len(name); i++ {
			if !allowedByte(name[i]) && name[i] != '.' {
				t.Fatalf("ValidateTopic accepted %q with byte %#x at %d", name, name[i], i)
			}
		}
		ns := event.Namespace(name)
		if !strings.HasPrefix(name, ns) || event.ValidateTopic(ns) != nil || strings.Contains(ns, ".") {
			t.Fatalf("Namespace(%q) = %q, want the first segment", name, ns)
		}
	})
}

// validTopic is the naming rule written as plainly as possible.
func validTopic(name string) bool {
	if len(name) < 1 || len(name) > event.MaxTopicLen {
		return false
	}
	for _, seg := range strings.Split(name, ".") {
		if seg == "" {
			return false
		}
		for i := 0; i < len(seg); i++ {
			if !allowedByte(seg[i]) {
				return false
			}
		}
	}
	return true
}

func allowedByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("_-:@=", c) >= 0
}

func short(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
