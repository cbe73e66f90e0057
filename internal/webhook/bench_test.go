package webhook

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkDeliveries: the whole path of one delivery — group fetch,
// signing, the request to a local receiver, the ack — over 10 unordered
// subscriptions on the memory engine. b.N events (at most its default
// retention, 10,000) each go to all ten: -benchtime 5000x.
func BenchmarkDeliveries(b *testing.B) {
	var got atomic.Int64
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer recv.Close()
	t := &testing.T{}
	f := newFixture(t, nil)
	defer func() {
		f.m.Close()
		f.groups.Close()
		f.hub.Close()
		f.eng.Close()
	}()
	const subs = 10
	f.publish(t, "bench", 1)
	for i := range subs {
		f.put(t, Config{Name: string(rune('a' + i)), URL: recv.URL, Topics: []string{"bench"}, Concurrency: 10, Enabled: true, Start: "earliest"})
	}
	for got.Load() < subs {
		time.Sleep(time.Millisecond)
	}
	b.ResetTimer()
	f.publish(t, "bench", b.N)
	deadline := time.Now().Add(5 * time.Minute)
	for got.Load() < int64(subs*(b.N+1)) {
		if time.Now().After(deadline) {
			b.Fatalf("%d deliveries of %d (over the memory engine's retention?)", got.Load(), subs*(b.N+1))
		}
		time.Sleep(100 * time.Microsecond)
	}
	b.ReportMetric(float64(subs*b.N)/b.Elapsed().Seconds(), "deliveries/s")
}
