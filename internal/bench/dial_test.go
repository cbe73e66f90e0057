package bench

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestWithRetry(t *testing.T) {
	tests := []struct {
		name      string
		err       error
		wantCalls int
	}{
		{"success", nil, 1},
		{"refused connection is retried", errors.New("connection refused"), 3},
		{"503 is retried", &errResponse{status: 503}, 3},
		{"400 is final", &errResponse{status: 400}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			_, err := withRetry(context.Background(), 3, func(context.Context) (int, error) {
				calls++
				return 0, tt.err
			})
			if calls != tt.wantCalls || !errors.Is(err, tt.err) {
				t.Errorf("calls %d, err %v; want %d, %v", calls, err, tt.wantCalls, tt.err)
			}
		})
	}
}

func TestNewDialer(t *testing.T) {
	d, err := NewDialer("http://127.0.0.1:8080", 3, 2)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range d.locals {
		got = append(got, a.IP.String())
	}
	if want := "[127.0.0.3 127.0.0.4 127.0.0.5]"; fmt.Sprint(got) != want {
		t.Errorf("source addresses %v, want %s", got, want)
	}
	for _, bad := range []string{"https://127.0.0.1", "127.0.0.1:8080", "http://[::1]:8080 x"} {
		if _, err := NewDialer(bad, 0, 0); err == nil {
			t.Errorf("NewDialer(%q) accepted", bad)
		}
	}
	if _, err := NewDialer("http://example.com", 2, 0); err == nil {
		t.Error("source addresses accepted for a non-loopback server")
	}
}
