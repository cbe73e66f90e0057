//go:build linux

// Command webhook-bench measures herald's outbound webhooks against a
// local receiver (docs/benchmarks.md, "Outbound webhooks (issue 18)"):
//
//   - throughput: E events are published to one topic, then S unordered
//     subscriptions (concurrency C each) are made from the earliest event;
//     it reports deliveries per second until the receiver has all S×E, and
//     the server's CPU time per delivery (utime+stime of --pid);
//   - latency: one ordered subscription, events published one by one at
//     --rate per second, each carrying its publish time; it reports the
//     receiver's publish→receipt latency quantiles.
//
// The server must allow 127.0.0.1 (outbound.allow_networks). The receiver
// answers 204 without verifying (the reference verifier is the tests').
//
//	go run ./tools/webhook-bench -server http://127.0.0.1:18090 -pid $PID -mode throughput -subs 100 -events 1000
//	go run ./tools/webhook-bench -server http://127.0.0.1:18090 -mode latency -rate 100 -duration 20s
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/internal/bench"
	"github.com/heraldhq/herald/internal/bench/histogram"
)

func main() {
	server := flag.String("server", "http://127.0.0.1:18090", "herald's URL")
	pid := flag.Int("pid", 0, "herald's process id, for its CPU time")
	mode := flag.String("mode", "throughput", "throughput or latency")
	subs := flag.Int("subs", 100, "throughput: unordered subscriptions")
	conc := flag.Int("concurrency", 10, "throughput: requests in flight per subscription")
	events := flag.Int("events", 1000, "throughput: events published (each goes to every subscription)")
	rate := flag.Int("rate", 100, "latency: events published per second")
	duration := flag.Duration("duration", 20*time.Second, "latency: how long to publish")
	flag.Parse()
	topic := fmt.Sprintf("bench.wh%d", time.Now().UnixNano())

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	var got atomic.Int64
	lat := histogram.New()
	recv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if *mode == "latency" {
			var ev struct {
				Data struct {
					T int64 `json:"t"`
				} `json:"data"`
			}
			if json.Unmarshal(body, &ev) == nil && ev.Data.T > 0 {
				lat.RecordInt(time.Now().UnixNano() - ev.Data.T)
			}
		}
		got.Add(1)
		w.WriteHeader(http.StatusNoContent)
	})}
	go recv.Serve(ln)
	url := "http://" + ln.Addr().String()
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}, Timeout: 30 * time.Second}
	do := func(method, path, body string) []byte {
		req, _ := http.NewRequest(method, *server+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		res, err := c.Do(req)
		if err != nil {
			log.Fatalf("%s %s: %v", method, path, err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode >= 300 {
			log.Fatalf("%s %s: %s %s", method, path, res.Status, b)
		}
		return b
	}
	cpu := func() time.Duration {
		if *pid == 0 {
			return 0
		}
		d, err := bench.ProcessCPU(*pid)
		if err != nil {
			log.Fatal(err)
		}
		return d
	}
	secret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

	switch *mode {
	case "throughput":
		for i := 0; i < *events; i += 500 {
			var b bytes.Buffer
			b.WriteString(`{"events":[`)
			for j := i; j < min(i+500, *events); j++ {
				if j > i {
					b.WriteByte(',')
				}
				fmt.Fprintf(&b, `{"topic":%q,"data":{"order":%d,"status":"paid","amount":1299}}`, topic, j)
			}
			b.WriteString(`]}`)
			do(http.MethodPost, "/v1/events", b.String())
		}
		want := int64(*subs) * int64(*events)
		cpu0, t0 := cpu(), time.Now()
		for s := range *subs {
			do(http.MethodPut, fmt.Sprintf("/v1/webhooks/bench%d", s), fmt.Sprintf(
				`{"url":"%s/%d","topics":[%q],"start":"earliest","ordered":false,"concurrency":%d,"secrets":[%q]}`, url, s, topic, *conc, secret))
		}
		for got.Load() < want {
			if time.Since(t0) > 10*time.Minute {
				log.Fatalf("only %d of %d deliveries", got.Load(), want)
			}
			time.Sleep(5 * time.Millisecond)
		}
		el, used := time.Since(t0), cpu()-cpu0
		fmt.Printf("deliveries %d in %.2fs: %.0f deliveries/s", want, el.Seconds(), float64(want)/el.Seconds())
		if *pid != 0 {
			fmt.Printf(", server cpu %.2fs (%.2f cores), %.1f µs/delivery", used.Seconds(), used.Seconds()/el.Seconds(), float64(used.Microseconds())/float64(want))
		}
		fmt.Println()
		for s := range *subs {
			do(http.MethodDelete, fmt.Sprintf("/v1/webhooks/bench%d", s), "")
		}
	case "latency":
		do(http.MethodPost, "/v1/topics/"+topic+"/events", `{"t":0}`) // the topic exists: the subscription starts at once
		do(http.MethodPut, "/v1/webhooks/benchlat", fmt.Sprintf(`{"url":"%s/lat","topics":[%q],"secrets":[%q]}`, url, topic, secret))
		time.Sleep(500 * time.Millisecond)
		tick := time.NewTicker(time.Second / time.Duration(*rate))
		n := 0
		end := time.Now().Add(*duration)
		cpu0 := cpu()
		for time.Now().Before(end) {
			<-tick.C
			do(http.MethodPost, "/v1/topics/"+topic+"/events", `{"t":`+strconv.FormatInt(time.Now().UnixNano(), 10)+`}`)
			n++
		}
		for lat.Count() < uint64(n) && time.Now().Before(end.Add(30*time.Second)) {
			time.Sleep(5 * time.Millisecond)
		}
		used := cpu() - cpu0
		ms := func(v uint64) float64 { return float64(v) / 1e6 }
		fmt.Printf("events %d at %d/s, received %d: publish→receiver p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms",
			n, *rate, lat.Count(), ms(lat.Quantile(0.5)), ms(lat.Quantile(0.9)), ms(lat.Quantile(0.99)), ms(lat.Max()))
		if *pid != 0 {
			fmt.Printf(", server cpu %.1f µs/event", float64(used.Microseconds())/float64(n))
		}
		fmt.Println()
		do(http.MethodDelete, "/v1/webhooks/benchlat", "")
	default:
		fmt.Fprintln(os.Stderr, "-mode: throughput or latency")
		os.Exit(2)
	}
}
