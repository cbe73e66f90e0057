package redis

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/heraldhq/herald/internal/engine/redis/redistest"
	"github.com/heraldhq/herald/internal/event"
)

// The ceiling of Redis itself for herald's append pattern (docs/benchmarks.md,
// "Redis engine"): publishScript run alone, as fast as Redis answers, from
// conc goroutines sharing one auto-pipelining rueidis client, the way the
// goroutines of concurrent publish requests share a node's client. Each
// benchmark reports events/s and Redis's own CPU time per event (INFO cpu
// before and after).
//
// HERALD_BENCH_REDIS_URL points them at a running Redis (so that a script can
// choose its persistence and watch its CPU); otherwise they start their own,
// without persistence. Run them with scripts/bench-redis.sh or
//
//	go test -run '^$' -bench 'PublishScript|EngineAppend' -benchtime 100000x ./internal/engine/redis

// benchRedis returns the URL of the Redis the benchmarks use.
func benchRedis(b *testing.B) string {
	if u := os.Getenv("HERALD_BENCH_REDIS_URL"); u != "" {
		return u
	}
	return redistest.Start(b, redistest.Options{}).URL()
}

// redisCPU returns the CPU time Redis has used (INFO cpu: user + sys of the
// main process).
func redisCPU(b *testing.B, c rueidis.Client) time.Duration {
	s, err := c.Do(context.Background(), c.B().Info().Section("cpu").Build()).ToString()
	if err != nil {
		b.Fatalf("INFO cpu: %v", err)
	}
	var total float64
	for _, line := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_user" || k == "used_cpu_sys") {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				b.Fatalf("INFO cpu %s=%q: %v", k, v, err)
			}
			total += f
		}
	}
	return time.Duration(total * float64(time.Second))
}

// benchRecords are n records of the 128-byte JSON payload of the HTTP
// publish benchmarks.
func benchRecords(n int) []event.Record {
	data := fmt.Appendf(nil, `{"seq":1,"pad":"%0110d"}`, 0)
	recs := make([]event.Record, n)
	for i := range recs {
		recs[i] = event.Record{Data: data, Encoding: event.EncodingJSON}
	}
	return recs
}

// runConc runs op b.N times over conc goroutines and reports events/s and
// Redis's CPU time per event (batch events per op).
func runConc(b *testing.B, c rueidis.Client, conc, batch int, op func(ctx context.Context) error) {
	ctx := context.Background()
	if err := op(ctx); err != nil { // creates the topic; loads the script
		b.Fatal(err)
	}
	var next atomic.Int64
	var firstErr atomic.Value
	cpu0 := redisCPU(b, c)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				if err := op(ctx); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
			}
		})
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	if err, _ := firstErr.Load().(error); err != nil {
		b.Fatal(err)
	}
	events := float64(b.N * batch)
	b.ReportMetric(events/el.Seconds(), "events/s")
	b.ReportMetric(float64((redisCPU(b, c)-cpu0).Microseconds())/events, "redis-µs/event")
}

var benchConcs = []int{1, 4, 16, 64, 256}

// BenchmarkPublishScript runs publishScript alone, its arguments built once,
// as Engine.Append builds them for a topic with the default retention.
func BenchmarkPublishScript(b *testing.B) {
	url := benchRedis(b)
	for _, batch := range []int{1, 100} {
		for _, conc := range benchConcs {
			b.Run(fmt.Sprintf("batch=%d/conc=%d", batch, conc), func(b *testing.B) {
				e, err := New(context.Background(), Options{URL: url, Prefix: "bench" + strconv.FormatInt(time.Now().UnixNano(), 36)})
				if err != nil {
					b.Fatal(err)
				}
				defer e.Close()
				topic := "bench.script"
				ep, err := e.topicEpoch(context.Background(), "create", topic)
				if err != nil {
					b.Fatal(err)
				}
				ret := event.DefaultRetention()
				keys := []string{e.key(topic, "m"), e.key(topic, "s"), e.key(topic, "k"), e.key(topic, "kt")}
				args := []string{epochString(ep), "", itoa(event.DefaultDedupeWindow.Milliseconds()),
					strconv.Itoa(event.DefaultMaxKeysPerTopic), strconv.Itoa(ret.MaxEvents), itoa(ret.MaxBytes),
					itoa(ret.MaxAge.Milliseconds()), e.key(topic, "c"), e.pubCmd, strconv.Itoa(batch)}
				recs := benchRecords(batch)
				for i := range recs {
					args = append(args, "", strconv.Itoa(recs[i].Size()), string(encodeRecord(nil, &recs[i])))
				}
				runConc(b, e.client, conc, batch, func(ctx context.Context) error {
					a := append([]string(nil), args...)
					a[1] = itoa(time.Now().UnixMilli())
					return publishScript.Exec(ctx, e.client, keys, a).Error()
				})
			})
		}
	}
}

// BenchmarkEngineAppend is the same load through Engine.Append: the engine's
// own Go work added, no hub, no HTTP.
func BenchmarkEngineAppend(b *testing.B) {
	url := benchRedis(b)
	for _, batch := range []int{1, 100} {
		for _, conc := range benchConcs {
			b.Run(fmt.Sprintf("batch=%d/conc=%d", batch, conc), func(b *testing.B) {
				e, err := New(context.Background(), Options{URL: url, Prefix: "bench" + strconv.FormatInt(time.Now().UnixNano(), 36)})
				if err != nil {
					b.Fatal(err)
				}
				defer e.Close()
				recs := benchRecords(batch)
				runConc(b, e.client, conc, batch, func(ctx context.Context) error {
					_, err := e.Append(ctx, "bench.append", recs)
					return err
				})
			})
		}
	}
}
