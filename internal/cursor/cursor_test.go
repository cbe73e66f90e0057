package cursor_test

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/heraldhq/herald/internal/cursor"
	"github.com/heraldhq/herald/internal/event"
)

func pos(epoch, offset uint64) event.Position {
	return event.Position{Epoch: event.Epoch(epoch), Offset: offset}
}

// build returns a cursor holding entries, set in the order given.
func build(t testing.TB, entries ...cursor.Entry) cursor.Cursor {
	t.Helper()
	var c cursor.Cursor
	for _, e := range entries {
		c.Set(e.Topic, e.Position)
	}
	return c
}

func manyEntries(n int) []cursor.Entry {
	out := make([]cursor.Entry, n)
	for i := range out {
		out[i] = cursor.Entry{Topic: fmt.Sprintf("ns%d.topic-%04d", i%7, i), Position: pos(uint64(i)*0x9e3779b97f4a7c15, uint64(i*i))}
	}
	return out
}

func sorted(entries []cursor.Entry) []cursor.Entry {
	out := slices.Clone(entries)
	slices.SortFunc(out, func(a, b cursor.Entry) int { return strings.Compare(a.Topic, b.Topic) })
	return out
}

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name    string
		entries []cursor.Entry
	}{
		{"empty", nil},
		{"one", []cursor.Entry{{Topic: "a", Position: pos(1, 0)}}},
		{"zero position", []cursor.Entry{{Topic: "chat.room-42", Position: pos(0, 0)}}},
		{"big epoch and offset", []cursor.Entry{{Topic: "a", Position: pos(math.MaxUint64, math.MaxUint64)}}},
		{"varint boundaries", []cursor.Entry{
			{Topic: "a", Position: pos(127, 128)},
			{Topic: "b", Position: pos(1<<14-1, 1<<14)},
			{Topic: "c", Position: pos(1<<63, 1<<63-1)},
		}},
		{"long name", []cursor.Entry{{Topic: strings.Repeat("x", event.MaxTopicLen), Position: pos(5, 6)}}},
		{"unsorted input", []cursor.Entry{
			{Topic: "zeta", Position: pos(1, 2)},
			{Topic: "alpha", Position: pos(3, 4)},
			{Topic: "Mid", Position: pos(5, 6)},
			{Topic: "alpha.b", Position: pos(7, 8)},
		}},
		{"many", manyEntries(cursor.MaxTopics / 2)},
		{"max topics", manyEntries(cursor.MaxTopics)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := build(t, tt.entries...)
			tok := c.String()
			if len(tok) > cursor.MaxEncoded {
				t.Fatalf("token is %d bytes, over MaxEncoded", len(tok))
			}
			if strings.ContainsAny(tok, "+/=") {
				t.Errorf("token %q is not URL-safe", tok)
			}
			got, err := cursor.Parse(tok)
			if err != nil {
				t.Fatalf("Parse(String()): %v", err)
			}
			if want := sorted(tt.entries); !slices.Equal(got.Entries(), want) && !(len(want) == 0 && got.Len() == 0) {
				t.Errorf("entries = %v, want %v", got.Entries(), want)
			}
			if got.Len() != len(tt.entries) {
				t.Errorf("Len() = %d, want %d", got.Len(), len(tt.entries))
			}
			for _, e := range tt.entries {
				p, ok := got.Get(e.Topic)
				if !ok || p != e.Position {
					t.Errorf("Get(%q) = %v, %v; want %v, true", e.Topic, p, ok, e.Position)
				}
			}
			if again := got.String(); again != tok {
				t.Errorf("re-encoded token %q, want %q", again, tok)
			}
		})
	}
}

func TestParseEmpty(t *testing.T) {
	for _, tok := range []string{"", (&cursor.Cursor{}).String()} {
		c, err := cursor.Parse(tok)
		if err != nil {
			t.Fatalf("Parse(%q): %v", tok, err)
		}
		if c.Len() != 0 {
			t.Errorf("Parse(%q).Len() = %d, want 0", tok, c.Len())
		}
	}
}

func TestCanonical(t *testing.T) {
	entries := manyEntries(40)
	base := build(t, entries...)
	want := base.String()
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 20; i++ {
		shuffled := slices.Clone(entries)
		r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		c := build(t, shuffled...)
		// Overwriting with the same positions must not change the token.
		for _, e := range shuffled[:10] {
			c.Set(e.Topic, e.Position)
		}
		if got := c.String(); got != want {
			t.Fatalf("shuffle %d: token %q, want %q", i, got, want)
		}
	}
}

func TestSetGet(t *testing.T) {
	var c cursor.Cursor
	if _, ok := c.Get("a"); ok {
		t.Fatal("Get on empty cursor found a position")
	}
	c.Set("b", pos(1, 1))
	c.Set("a", pos(1, 2))
	c.Set("b", pos(2, 3)) // overwrite
	if got, want := c.Len(), 2; got != want {
		t.Fatalf("Len() = %d, want %d", got, want)
	}
	want := []cursor.Entry{{Topic: "a", Position: pos(1, 2)}, {Topic: "b", Position: pos(2, 3)}}
	if got := c.Entries(); !slices.Equal(got, want) {
		t.Errorf("Entries() = %v, want %v", got, want)
	}
	if _, ok := c.Get("c"); ok {
		t.Error("Get(c) found a position that was never set")
	}
}

func TestClone(t *testing.T) {
	c := build(t, cursor.Entry{Topic: "a", Position: pos(1, 1)}, cursor.Entry{Topic: "c", Position: pos(1, 1)})
	d := c.Clone()
	d.Set("a", pos(9, 9))
	d.Set("b", pos(9, 9))
	if p, _ := c.Get("a"); p != pos(1, 1) {
		t.Errorf("original changed by its clone: a = %v", p)
	}
	if c.Len() != 2 || d.Len() != 3 {
		t.Errorf("Len: original %d, clone %d; want 2, 3", c.Len(), d.Len())
	}
}

// raw builds a token from its decoded bytes.
func raw(parts ...any) string {
	var b []byte
	for _, p := range parts {
		switch v := p.(type) {
		case int:
			b = append(b, byte(v))
		case uint64:
			b = binary.AppendUvarint(b, v)
		case string:
			b = binary.AppendUvarint(b, uint64(len(v)))
			b = append(b, v...)
		case []byte:
			b = append(b, v...)
		default:
			panic(fmt.Sprintf("raw: %T", p))
		}
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func TestParseErrors(t *testing.T) {
	const v = 1 // the version byte
	tooMany := []any{v}
	for _, e := range manyEntries(cursor.MaxTopics + 1) {
		tooMany = append(tooMany, e.Topic, uint64(e.Epoch), e.Offset)
	}
	// manyEntries is not sorted; the sorted form is what a valid encoder makes.
	tooManySorted := []any{v}
	for _, e := range sorted(manyEntries(cursor.MaxTopics + 1)) {
		tooManySorted = append(tooManySorted, e.Topic, uint64(e.Epoch), e.Offset)
	}
	overflow := []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}
	tests := []struct {
		name    string
		token   string
		wantErr string
	}{
		{"bad base64 char", "!!!!", "not base64url"},
		{"standard base64", "AQ+/", "not base64url"},
		{"padding", raw(v, "a", uint64(1), uint64(2)) + "=", "not base64url"},
		{"lone char", "A", "not base64url"},
		{"space", "AQ AQ", "not base64url"},
		{"version 0", raw(0), "unknown version"},
		{"version 2", raw(2, "a", uint64(1), uint64(1)), "unknown version"},
		{"truncated name length", raw(v, []byte{0x80}), "truncated topic name"},
		{"name length overflow", raw(v, overflow), "truncated topic name"},
		{"name shorter than length", raw(v, []byte{5, 'a', 'b'}), "truncated topic name"},
		{"huge name length", raw(v, uint64(math.MaxUint64), []byte("abc")), "truncated topic name"},
		{"missing epoch", raw(v, "a"), "truncated epoch"},
		{"truncated epoch", raw(v, "a", []byte{0x80}), "truncated epoch"},
		{"epoch overflow", raw(v, "a", overflow, uint64(1)), "truncated epoch"},
		{"missing offset", raw(v, "a", uint64(1)), "truncated offset"},
		{"truncated offset", raw(v, "a", uint64(1), []byte{0xff, 0xff}), "truncated offset"},
		{"offset overflow", raw(v, "a", uint64(1), overflow), "truncated offset"},
		{"second entry truncated", raw(v, "a", uint64(1), uint64(1), "b", uint64(1)), "truncated offset"},
		{"empty topic", raw(v, "", uint64(1), uint64(1)), "invalid topic"},
		{"topic with slash", raw(v, "a/b", uint64(1), uint64(1)), "invalid topic"},
		{"topic with double dot", raw(v, "a..b", uint64(1), uint64(1)), "invalid topic"},
		{"topic too long", raw(v, strings.Repeat("a", 201), uint64(1), uint64(1)), "invalid topic"},
		{"unsorted", raw(v, "b", uint64(1), uint64(1), "a", uint64(1), uint64(1)), "out of order"},
		{"duplicate", raw(v, "a", uint64(1), uint64(1), "a", uint64(2), uint64(2)), "out of order or repeated"},
		{"too many topics", raw(tooManySorted...), fmt.Sprintf("more than %d topics", cursor.MaxTopics)},
		{"too many unsorted", raw(tooMany...), "out of order"},
		{"too long", strings.Repeat("A", cursor.MaxEncoded+1), "the limit is"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := cursor.Parse(tt.token)
			if err == nil {
				t.Fatalf("Parse = %v, want an error", c.Entries())
			}
			if !errors.Is(err, cursor.ErrMalformed) {
				t.Errorf("Parse error %v does not wrap ErrMalformed", err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Parse error %q, want it to contain %q", err, tt.wantErr)
			}
			if c.Len() != 0 {
				t.Errorf("failed Parse returned %d entries, want none", c.Len())
			}
		})
	}
}

func TestAppendEncoded(t *testing.T) {
	c := build(t, manyEntries(5)...)
	prefix := []byte("id: ")
	got := c.AppendEncoded(slices.Clone(prefix))
	if want := "id: " + c.String(); string(got) != want {
		t.Errorf("AppendEncoded = %q, want %q", got, want)
	}
}

func TestAppendEncodedNoAlloc(t *testing.T) {
	tests := []struct {
		name    string
		entries []cursor.Entry
	}{
		{"empty", nil},
		{"one", []cursor.Entry{{Topic: "chat.room-42", Position: pos(math.MaxUint64, 1<<40)}}},
		{"five", manyEntries(5)},
		{"long names", []cursor.Entry{
			{Topic: strings.Repeat("a", 200), Position: pos(math.MaxUint64, math.MaxUint64)},
			{Topic: strings.Repeat("b", 200), Position: pos(math.MaxUint64, math.MaxUint64)},
		}},
		{"max topics", manyEntries(cursor.MaxTopics)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := build(t, tt.entries...)
			// Room for the token and for the raw bytes it is built from.
			dst := make([]byte, 0, 64<<10)
			allocs := testing.AllocsPerRun(100, func() {
				dst = c.AppendEncoded(dst[:0])
			})
			if allocs != 0 {
				t.Errorf("AppendEncoded with room in dst: %v allocations, want 0", allocs)
			}
			if string(dst) != c.String() {
				t.Errorf("AppendEncoded = %q, want %q", dst, c.String())
			}
		})
	}
}

func encode(c cursor.Cursor) string { return c.String() }

func TestAppendSingle(t *testing.T) {
	tests := []cursor.Entry{
		{Topic: "a", Position: pos(0, 0)},
		{Topic: "chat.room-42", Position: pos(0x9f3c2a1b0d4e5f60, 7)},
		{Topic: strings.Repeat("x", event.MaxTopicLen), Position: pos(math.MaxUint64, math.MaxUint64)},
	}
	for _, e := range tests {
		c := build(t, e)
		want := "id: " + c.String()
		if got := string(cursor.AppendSingle([]byte("id: "), e.Topic, e.Position)); got != want {
			t.Errorf("AppendSingle(%q) = %q, want %q", e.Topic, got, want)
		}
		dst := make([]byte, 0, 1024)
		if allocs := testing.AllocsPerRun(100, func() { dst = cursor.AppendSingle(dst[:0], e.Topic, e.Position) }); allocs != 0 {
			t.Errorf("AppendSingle with room in dst: %v allocations, want 0", allocs)
		}
	}
}

// FuzzParse checks that Parse never panics, that its errors wrap
// ErrMalformed, and that whatever it accepts re-encodes to a canonical token
// holding the same entries.
func FuzzParse(f *testing.F) {
	for _, tok := range []string{
		"", "AQ", "!!!!", "A",
		raw(1, "a", uint64(1), uint64(2)),
		raw(1, "a", uint64(1), uint64(1), "b", uint64(2), uint64(2)),
		raw(1, "b", uint64(1), uint64(1), "a", uint64(2), uint64(2)),
		raw(1, "a", []byte{0x80}),
		raw(2),
		encode(build(f, manyEntries(20)...)),
	} {
		f.Add(tok)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := cursor.Parse(tok)
		if err != nil {
			if !errors.Is(err, cursor.ErrMalformed) {
				t.Fatalf("Parse(%q) error %v does not wrap ErrMalformed", tok, err)
			}
			return
		}
		if c.Len() > cursor.MaxTopics {
			t.Fatalf("Parse(%q) accepted %d topics", tok, c.Len())
		}
		for _, e := range c.Entries() {
			if err := event.ValidateTopic(e.Topic); err != nil {
				t.Fatalf("Parse(%q) accepted topic %q: %v", tok, e.Topic, err)
			}
		}
		tok2 := c.String()
		c2, err := cursor.Parse(tok2)
		if err != nil {
			t.Fatalf("Parse(%q) ok, but its re-encoding %q fails: %v", tok, tok2, err)
		}
		if !slices.Equal(c.Entries(), c2.Entries()) {
			t.Fatalf("entries changed by re-encoding: %v, then %v", c.Entries(), c2.Entries())
		}
		if tok3 := c2.String(); tok3 != tok2 {
			t.Fatalf("encoding not canonical: %q, then %q", tok2, tok3)
		}
	})
}
