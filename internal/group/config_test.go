package group

import (
	"slices"
	"testing"
	"time"
)

func TestConfigJSONRoundTrip(t *testing.T) {
	cfg := Config{
		Name: "g", Topics: []string{"a", "b.>"}, Start: "2026-12-04T13:00:00Z", AckWait: 90 * time.Second, MaxDeliveries: 3,
		DeadLetter: "dl", MaxInFlight: 10, MemberMaxInFlight: 2, Backoff: []time.Duration{time.Second, time.Minute}, OrderingKey: "header:k",
	}
	b, err := cfg.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	var got Config
	if err := got.UnmarshalJSON(b); err != nil {
		t.Fatalf("UnmarshalJSON(%s): %v", b, err)
	}
	if !got.same(&cfg) {
		t.Errorf("round trip of %s gave %+v, want %+v", b, got, cfg)
	}
	if err := got.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

func TestBackoffSchedule(t *testing.T) {
	cfg := Config{Backoff: []time.Duration{time.Second, 5 * time.Second}}
	var got []time.Duration
	for n := 0; n <= 4; n++ {
		got = append(got, cfg.backoff(n))
	}
	if want := []time.Duration{0, time.Second, 5 * time.Second, 5 * time.Second, 5 * time.Second}; !slices.Equal(got, want) {
		t.Errorf("backoff by delivery %v, want %v", got, want)
	}
}

func TestSpans(t *testing.T) {
	var s spans
	for _, sp := range []span{{5, 5}, {7, 8}, {10, 10}, {6, 6}, {1, 2}, {9, 9}} {
		s.add(sp.lo, sp.hi)
	}
	if want := (spans{{1, 2}, {5, 10}}); !slices.Equal(s, want) {
		t.Errorf("spans %v, want %v", s, want)
	}
	for off, want := range map[uint64]bool{1: true, 3: false, 4: false, 5: true, 10: true, 11: false} {
		if s.contains(off) != want {
			t.Errorf("contains(%d) = %v, want %v", off, !want, want)
		}
	}
	// An overlapping span merges too.
	s.add(2, 6)
	if want := (spans{{1, 10}}); !slices.Equal(s, want) {
		t.Errorf("after an overlap: %v, want %v", s, want)
	}
}

// FuzzConfigJSON feeds the settings parser (the API's PUT body) anything:
// it never panics, and settings it takes and Validate accepts encode and
// decode to the same settings.
func FuzzConfigJSON(f *testing.F) {
	for _, s := range []string{
		`{"topics":["a"]}`,
		`{"name":"g","topics":["a.*","b.>"],"start":"earliest","ack_wait":"1m","max_deliveries":3,"backoff":["1s","1h"],"ordering_key":"header:k"}`,
		`{"topics":["a"],"start":"2026-12-04T13:00:00Z","max_in_flight":1,"member_max_in_flight":1,"dead_letter":"x"}`,
		`{"topics":[],"ack_wait":"-1s"}`,
		`{"topics":["a"],"backoff":["x"]}`,
		`{"topics":["a"],"unknown":1}`,
		`[]`, `null`, `{"topics":["a"]} {}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		var cfg Config
		if err := cfg.UnmarshalJSON([]byte(body)); err != nil {
			return
		}
		if cfg.Name == "" {
			cfg.Name = "g"
		}
		cfg = cfg.WithDefaults()
		if cfg.Validate() != nil {
			return
		}
		b, err := cfg.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		var again Config
		if err := again.UnmarshalJSON(b); err != nil {
			t.Fatalf("%s does not decode: %v", b, err)
		}
		if again = again.WithDefaults(); !again.same(&cfg) {
			t.Fatalf("%s decodes to %+v, want %+v", b, again, cfg)
		}
	})
}
