package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestDurableCrash is issue 6's crash test: a child `herald serve
// --engine durable` takes concurrent publishes and is killed with SIGKILL
// at a random moment, several rounds over one data directory. After every
// restart each acknowledged publish must be there, at its acknowledged
// offset, with its payload, and no publish (acknowledged or not) may be
// stored twice.
func TestDurableCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a server process; skipped with -short")
	}
	bin := filepath.Join(t.TempDir(), "herald")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		t.Fatalf("go build: %v", err)
	}
	dir := t.TempDir()
	topics := []string{"crash.a", "crash.b", "crash.c"}

	acked := map[string]crashAck{} // payload id -> where it was acknowledged
	var mu sync.Mutex
	epoch := ""
	seq := 0

	for round := 0; round < 4; round++ {
		addr := freeAddr(t)
		srv := startChild(t, bin, dir, addr)
		base := "http://" + addr
		client := &http.Client{Timeout: 5 * time.Second}

		verify(t, client, base, topics, acked, &epoch)

		// Publish from 8 goroutines until the kill.
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					mu.Lock()
					seq++
					id := fmt.Sprintf("r%d-%d", round, seq)
					mu.Unlock()
					topic := topics[rand.IntN(len(topics))]
					body := fmt.Sprintf(`{"id":%q}`, id)
					res, err := client.Post(base+"/v1/topics/"+topic+"/events", "application/json", bytes.NewBufferString(body))
					if err != nil {
						continue // killed mid-request: not acknowledged
					}
					var a struct {
						Offset uint64 `json:"offset"`
						Epoch  string `json:"epoch"`
					}
					err = json.NewDecoder(res.Body).Decode(&a)
					res.Body.Close()
					if err != nil || res.StatusCode != http.StatusCreated {
						continue
					}
					mu.Lock()
					acked[id] = crashAck{topic: topic, offset: a.Offset, epoch: a.Epoch}
					mu.Unlock()
				}
			}()
		}
		time.Sleep(time.Duration(300+rand.IntN(700)) * time.Millisecond)
		srv.Process.Signal(syscall.SIGKILL)
		srv.Wait()
		close(stop)
		wg.Wait()
		client.CloseIdleConnections()
	}

	// The last restart checks everything once more.
	addr := freeAddr(t)
	srv := startChild(t, bin, dir, addr)
	client := &http.Client{Timeout: 5 * time.Second}
	verify(t, client, "http://"+addr, topics, acked, &epoch)
	srv.Process.Signal(syscall.SIGTERM)
	srv.Wait()
	if len(acked) < 100 {
		t.Errorf("only %d publishes were acknowledged over the rounds; the test did not exercise much", len(acked))
	}
	t.Logf("%d acknowledged publishes survived %d kills", len(acked), 4)
}

// crashAck is where a publish was acknowledged.
type crashAck struct {
	topic  string
	offset uint64
	epoch  string
}

// verify pulls every topic from the start and checks the acknowledged
// publishes against it.
func verify(t *testing.T, client *http.Client, base string, topics []string, acked map[string]crashAck, epoch *string) {
	t.Helper()
	type stored struct {
		topic  string
		offset uint64
	}
	seen := map[string]stored{}
	for _, topic := range topics {
		cursor := ""
		var want uint64 = 1
		for {
			res, err := client.Get(base + "/v1/events?topic=" + topic + "&limit=1000&cursor=" + cursor)
			if err != nil {
				t.Fatalf("pull %s: %v", topic, err)
			}
			var p struct {
				Events []struct {
					Offset uint64          `json:"offset"`
					Epoch  string          `json:"epoch"`
					Data   json.RawMessage `json:"data"`
				} `json:"events"`
				Cursor string            `json:"cursor"`
				Gaps   []json.RawMessage `json:"gaps"`
			}
			err = json.NewDecoder(res.Body).Decode(&p)
			res.Body.Close()
			if err != nil {
				t.Fatalf("pull %s: %v", topic, err)
			}
			if len(p.Gaps) > 0 {
				t.Fatalf("pull %s after a crash: gap %s", topic, p.Gaps[0])
			}
			for _, ev := range p.Events {
				if ev.Offset != want {
					t.Fatalf("%s: offset %d after %d: offsets are not dense after a crash", topic, ev.Offset, want-1)
				}
				want++
				if *epoch == "" {
					*epoch = ev.Epoch
				} else if ev.Epoch != *epoch {
					t.Fatalf("%s: epoch changed across a crash: %s, then %s", topic, *epoch, ev.Epoch)
				}
				var d struct{ ID string }
				if err := json.Unmarshal(ev.Data, &d); err != nil {
					t.Fatalf("%s offset %d: payload %s: %v", topic, ev.Offset, ev.Data, err)
				}
				if prev, dup := seen[d.ID]; dup {
					t.Fatalf("publish %s stored twice: %s:%d and %s:%d", d.ID, prev.topic, prev.offset, topic, ev.Offset)
				}
				seen[d.ID] = stored{topic, ev.Offset}
			}
			if len(p.Events) == 0 {
				break
			}
			cursor = p.Cursor
		}
	}
	for id, x := range acked {
		got, ok := seen[id]
		if !ok {
			t.Fatalf("acknowledged publish %s (%s:%d) is missing after a crash", id, x.topic, x.offset)
		}
		if got.topic != x.topic || got.offset != x.offset {
			t.Fatalf("acknowledged publish %s was at %s:%d, is now at %s:%d", id, x.topic, x.offset, got.topic, got.offset)
		}
		if x.epoch != *epoch {
			t.Fatalf("acknowledged publish %s had epoch %s, the store has %s", id, x.epoch, *epoch)
		}
	}
}

// startChild starts `herald serve --engine durable` and waits until it is
// ready.
func startChild(t *testing.T, bin, dir, addr string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, "serve", "--engine", "durable", "--data-dir", dir, "--addr", addr, "--grpc-addr", "127.0.0.1:0", "--log-level", "warn")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start herald: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if res, err := http.Get("http://" + addr + "/readyz"); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return cmd
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("herald on %s did not become ready", addr)
	return nil
}

// freeAddr returns a free loopback address.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
