package auth

import (
	"strings"
	"testing"

	"github.com/heraldhq/herald/internal/event"
)

func TestPatternMatch(t *testing.T) {
	long := strings.Repeat("a.", 99) + "b" // 199 bytes, 100 segments
	tests := []struct {
		pattern string
		topic   string
		want    bool
	}{
		{"chat.room-1", "chat.room-1", true},
		{"chat.room-1", "chat.room-10", false},
		{"chat.room-1", "chat.room", false},
		{"chat.room-1", "chat.room-1.x", false},
		{"chat.a", "chat.a.x", false}, // an exact grant is not a prefix
		{"chat", "chat.a", false},
		{"chat.*", "chat.a", true},
		{"chat.*", "chat.a.b", false},
		{"chat.*", "chat", false},
		{"chat.*", "chatx.a", false}, // the namespace is a whole segment
		{"chat.*", "xchat.a", false},
		{"chat.*", "chat-a", false},
		{"chat.*.typing", "chat.a.typing", true},
		{"chat.*.typing", "chat.a.b.typing", false},
		{"chat.*.typing", "chat.a.typingx", false},
		{"*.alerts", "ops.alerts", true},
		{"*.alerts", "alerts", false},
		{"*.*", "a.b", true},
		{"*.*", "a.b.c", false},
		{"*", "chat", true},
		{"*", "chat.a", false},
		{"chat.>", "chat.a", true},
		{"chat.>", "chat.a.b.c", true},
		{"chat.>", "chat", false},
		{"chat.>", "chatx.a", false},
		{"chat.*.>", "chat.a.b", true},
		{"chat.*.>", "chat.a", false},
		{">", "chat", true},
		{">", "chat.a.b", true},
		{">", long, true},
		{"a.>", long, true},
		{"a.*", long, false},
		{strings.Repeat("a.", 99) + "*", long, true},
		{strings.Repeat("a.", 99) + "c", long, false},
		{"", "", false},
	}
	for _, tt := range tests {
		p, err := ParsePattern(tt.pattern)
		if tt.pattern == "" {
			if err == nil {
				t.Errorf("ParsePattern(\"\") succeeded")
			}
			continue
		}
		if err != nil {
			t.Fatalf("ParsePattern(%q): %v", tt.pattern, err)
		}
		if got := p.Match(tt.topic); got != tt.want {
			t.Errorf("%q.Match(%q) = %v, want %v", tt.pattern, tt.topic, got, tt.want)
		}
		if got := matchReference(tt.pattern, tt.topic); got != tt.want {
			t.Errorf("reference(%q, %q) = %v, want %v", tt.pattern, tt.topic, got, tt.want)
		}
	}
}

func TestParsePatternErrors(t *testing.T) {
	tests := []struct{ pattern, want string }{
		{"", "empty"},
		{".", "empty segment"},
		{"chat.", "empty segment"},
		{".chat", "empty segment"},
		{"chat..a", "empty segment"},
		{"chat.room-*", "whole segments"},
		{"chat.**", "whole segments"},
		{"chat*", "whole segments"},
		{"chat.>>", "whole segments"},
		{"chat.>.a", "last segment"},
		{">.a", "last segment"},
		{"chat.a b", "character"},
		{"chat/a", "character"},
		{"chat%2Ea", "character"},         // an encoded dot is not a separator, nor a name
		{"chat\u2024a", "character"},      // ONE DOT LEADER, a dot look-alike
		{"сhat.a", "character"},           // Cyrillic es
		{"chat.\uff0a", "character"},      // FULLWIDTH ASTERISK
		{strings.Repeat("a", 201), "201"}, // longer than any topic
	}
	for _, tt := range tests {
		_, err := ParsePattern(tt.pattern)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParsePattern(%q) = %v, want an error containing %q", tt.pattern, err, tt.want)
		}
	}
}

func TestPatternMatchDoesNotAllocate(t *testing.T) {
	for _, s := range []string{"chat.room-1", "chat.*", "chat.>", ">", "*.x.>"} {
		p, err := ParsePattern(s)
		if err != nil {
			t.Fatal(err)
		}
		if n := testing.AllocsPerRun(100, func() { p.Match("chat.room-1.x") }); n != 0 {
			t.Errorf("%q.Match allocates %v times", s, n)
		}
	}
}

// matchReference is the obvious, allocating matcher the fuzz target
// compares Match with.
func matchReference(pattern, topic string) bool {
	ps, ts := strings.Split(pattern, "."), strings.Split(topic, ".")
	for i, p := range ps {
		if p == ">" {
			return len(ts) > i
		}
		if i >= len(ts) || (p != "*" && p != ts[i]) {
			return false
		}
	}
	return len(ps) == len(ts)
}

// FuzzPattern checks that ParsePattern never panics, that what it accepts
// is made of valid segments, and that Match agrees with the reference on
// every valid topic. Seeds: testdata/fuzz/FuzzPattern and below.
func FuzzPattern(f *testing.F) {
	for _, s := range [][2]string{
		{"chat.*", "chat.a"}, {"chat.>", "chat.a.b"}, {"chat.a", "chat.a.x"}, {"chat.*", "chatx.a"},
		{">", "x"}, {"*", "x.y"}, {"a.*.>", "a.b"}, {"chat.room-*", "chat.room-1"}, {"chat.>.x", "chat.a.x"},
		{"chat%2E*", "chat%2Ea"}, {"chat\u2024*", "chat\u2024a"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, topic string) {
		p, err := ParsePattern(pattern)
		if err != nil {
			return
		}
		if p.String() != pattern {
			t.Fatalf("String() = %q, want %q", p.String(), pattern)
		}
		for _, seg := range strings.Split(pattern, ".") {
			if seg != "*" && seg != ">" && event.ValidateTopic(seg) != nil {
				t.Fatalf("accepted %q with segment %q", pattern, seg)
			}
		}
		if event.ValidateTopic(topic) != nil {
			return // the Gate refuses invalid names before matching
		}
		if got, want := p.Match(topic), matchReference(pattern, topic); got != want {
			t.Fatalf("%q.Match(%q) = %v, reference says %v", pattern, topic, got, want)
		}
	})
}
