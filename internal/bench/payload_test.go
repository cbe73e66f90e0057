package bench

import (
	"encoding/json"
	"testing"
)

func TestPayload(t *testing.T) {
	for _, size := range []int{0, 10, 64, 128, 1000} {
		p := appendPayload(nil, 4711, 3, 42, 1764100200123456789, size)
		if size >= minPayloadBytes && len(p) != size {
			t.Errorf("size %d: payload is %d bytes: %s", size, len(p), p)
		}
		if !json.Valid(p) {
			t.Errorf("size %d: invalid JSON %s", size, p)
		}
		got, ok := parsePayload(p)
		want := fields{run: 4711, pub: 3, seq: 42, sent: 1764100200123456789}
		if !ok || got != want {
			t.Errorf("size %d: parsePayload(%s) = %+v, %v; want %+v", size, p, got, ok, want)
		}
	}
}

func TestParsePayload(t *testing.T) {
	tests := []struct {
		in   string
		want fields
		ok   bool
	}{
		{`{"run":1,"p":0,"seq":2,"t":3,"pad":""}`, fields{run: 1, seq: 2, sent: 3}, true},
		{`{"t": 3, "seq": 2, "p": 7, "run": 1}`, fields{run: 1, pub: 7, seq: 2, sent: 3}, true}, // re-encoded by someone else
		{`{"run":1,"p":0,"seq":2}`, fields{}, false},
		{`{"text":"hi"}`, fields{}, false},
		{`{"run":1,"p":0,"seq":"2","t":3}`, fields{}, false},
	}
	for _, tt := range tests {
		got, ok := parsePayload([]byte(tt.in))
		if ok != tt.ok || (ok && got != tt.want) {
			t.Errorf("parsePayload(%s) = %+v, %v; want %+v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestPayloadNoAllocs(t *testing.T) {
	buf := make([]byte, 0, 256)
	allocs := testing.AllocsPerRun(100, func() {
		buf = appendPayload(buf[:0], 1, 0, 2, 3, 128)
		if _, ok := parsePayload(buf); !ok {
			t.Fatal("bad payload")
		}
	})
	if allocs != 0 {
		t.Errorf("payload round trip allocates %v times, want 0", allocs)
	}
}
