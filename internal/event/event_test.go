package event_test

import (
	"bytes"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/heraldhq/herald/internal/event"
)

func TestEpochString(t *testing.T) {
	tests := []struct {
		epoch event.Epoch
		want  string
	}{
		{0, "0000000000000000"},
		{1, "0000000000000001"},
		{0xab, "00000000000000ab"},
		{0x9f3c2a1b0d4e5f60, "9f3c2a1b0d4e5f60"},
		{math.MaxUint64, "ffffffffffffffff"},
	}
	for _, tt := range tests {
		if got := tt.epoch.String(); got != tt.want {
			t.Errorf("Epoch(%#x).String() = %q, want %q", uint64(tt.epoch), got, tt.want)
		}
	}
}

func TestParseEpochRoundTrip(t *testing.T) {
	epochs := []event.Epoch{0, 1, 0xf, 0x10, 0x9f3c2a1b0d4e5f60, 1 << 63, math.MaxUint64 - 1, math.MaxUint64}
	for v := uint64(1); v != 0; v <<= 3 {
		epochs = append(epochs, event.Epoch(v), event.Epoch(v-1))
	}
	for _, e := range epochs {
		s := e.String()
		if len(s) != 16 {
			t.Errorf("Epoch(%#x).String() = %q, want 16 hex digits", uint64(e), s)
		}
		got, err := event.ParseEpoch(s)
		if err != nil {
			t.Errorf("ParseEpoch(%q): %v", s, err)
			continue
		}
		if got != e {
			t.Errorf("ParseEpoch(%q) = %#x, want %#x", s, uint64(got), uint64(e))
		}
	}
}

func TestParseEpochErrors(t *testing.T) {
	for _, s := range []string{
		"",
		"xyz",
		"0x10",
		"-1",
		"+1",
		"10000000000000000", // 17 digits: over 64 bits
		"9f3c2a1b 0d4e5f60",
		"9f3c_2a1b",
	} {
		if got, err := event.ParseEpoch(s); err == nil {
			t.Errorf("ParseEpoch(%q) = %#x, want an error", s, uint64(got))
		}
	}
}

func TestEncodingString(t *testing.T) {
	tests := []struct {
		enc  event.Encoding
		want string
	}{
		{event.EncodingJSON, "json"},
		{event.EncodingText, "text"},
		{event.EncodingBinary, "binary"},
		{event.Encoding(200), "binary"},
	}
	for _, tt := range tests {
		if got := tt.enc.String(); got != tt.want {
			t.Errorf("Encoding(%d).String() = %q, want %q", tt.enc, got, tt.want)
		}
	}
}

func TestRecordSize(t *testing.T) {
	tests := []struct {
		name string
		rec  event.Record
		want int
	}{
		{"empty", event.Record{}, 0},
		{"data", event.Record{Data: []byte("hello")}, 5},
		{"all", event.Record{Type: "msg", Data: []byte("hello"), Key: "k1", Headers: map[string]string{"ab": "cde", "f": ""}}, 3 + 5 + 2 + 2 + 3 + 1},
	}
	for _, tt := range tests {
		if got := tt.rec.Size(); got != tt.want {
			t.Errorf("%s: Size() = %d, want %d", tt.name, got, tt.want)
		}
	}
}

func TestEventPosition(t *testing.T) {
	ev := &event.Event{Topic: "a", Offset: 7, Epoch: 42}
	if got, want := ev.Position(), (event.Position{Epoch: 42, Offset: 7}); got != want {
		t.Errorf("Position() = %+v, want %+v", got, want)
	}
}

func TestFrameCachesEncoding(t *testing.T) {
	ev := &event.Event{Topic: "chat.room-42", Offset: 3, Record: event.Record{Data: []byte(`{"x":1}`)}}
	var calls [256]atomic.Int32
	encoder := func(k event.FrameKind) func(*event.Event) []byte {
		return func(e *event.Event) []byte {
			if e != ev {
				t.Errorf("encode got event %p, want %p", e, ev)
			}
			calls[k].Add(1)
			return []byte(kindName(k) + ":" + strconv.FormatUint(e.Offset, 10))
		}
	}
	kinds := []event.FrameKind{event.FrameSSE, event.FrameJSON, event.FrameGRPCSolo}
	first := make(map[event.FrameKind][]byte)
	for i := 0; i < 100; i++ {
		for _, k := range kinds {
			got := ev.Frame(k, encoder(k))
			want := kindName(k) + ":3"
			if string(got) != want {
				t.Fatalf("Frame(%v) = %q, want %q", k, got, want)
			}
			if f, ok := first[k]; !ok {
				first[k] = got
			} else if &f[0] != &got[0] {
				t.Fatalf("Frame(%v) call %d returned a different buffer than the first call", k, i)
			}
		}
	}
	for _, k := range kinds {
		if got := calls[k].Load(); got != 1 {
			t.Errorf("encode of kind %v called %d times, want 1", k, got)
		}
	}
}

func TestFrameConcurrent(t *testing.T) {
	const goroutines, calls = 16, 200
	for round := 0; round < 20; round++ {
		ev := &event.Event{Topic: "a", Offset: uint64(round)}
		var encodes atomic.Int32
		encode := func(e *event.Event) []byte {
			encodes.Add(1)
			return []byte("frame-" + strconv.FormatUint(e.Offset, 10))
		}
		start := make(chan struct{})
		results := make([][]byte, goroutines)
		var wg sync.WaitGroup
		for g := 0; g < goroutines; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				var last []byte
				for i := 0; i < calls; i++ {
					b := ev.Frame(event.FrameSSE, encode)
					if last != nil && &last[0] != &b[0] {
						t.Errorf("goroutine %d: Frame returned a new buffer after the first call", g)
						return
					}
					last = b
				}
				results[g] = last
			}()
		}
		close(start)
		wg.Wait()
		want := []byte("frame-" + strconv.Itoa(round))
		for g, got := range results {
			if !bytes.Equal(got, want) {
				t.Fatalf("goroutine %d got %q, want %q", g, got, want)
			}
			// Every caller, the losers of a race included, must share the
			// winner's bytes: they are what every subscriber writes.
			if &got[0] != &results[0][0] {
				t.Fatalf("goroutine %d got a different buffer than goroutine 0", g)
			}
		}
		if n := encodes.Load(); n < 1 || n > goroutines {
			t.Fatalf("encode called %d times, want 1..%d", n, goroutines)
		}
	}
}

func kindName(k event.FrameKind) string { return "kind" + strconv.Itoa(int(k)) }
