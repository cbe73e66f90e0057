package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// receiver is a webhook endpoint as a service would write it: it verifies
// each request per Standard Webhooks (this is the whole of it; a library
// such as github.com/standard-webhooks/standard-webhooks/libraries/go does
// the same), answers 2xx only for what it has taken, and deduplicates on
// webhook-id, since a delivery may come twice (at least once).
type receiver struct {
	key   []byte
	out   io.Writer
	limit int
	done  chan struct{} // closed when limit orders have come

	mu   sync.Mutex
	seen map[string]bool // webhook-ids taken
	last uint64          // the offset of the last order taken
	n    int
}

func newReceiver(secret string, out io.Writer, limit int) *receiver {
	key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	return &receiver{key: key, out: out, limit: limit, done: make(chan struct{}), seen: make(map[string]bool)}
}

// ServeHTTP takes one delivery.
func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	if err != nil {
		http.Error(w, "cannot read the body", http.StatusBadRequest)
		return
	}
	id := req.Header.Get("webhook-id")
	if err := r.verify(id, req.Header.Get("webhook-timestamp"), req.Header.Get("webhook-signature"), body); err != nil {
		fmt.Fprintf(r.out, "refused %s: %v\n", id, err)
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	var ev struct {
		Topic  string `json:"topic"`
		Offset uint64 `json:"offset"`
		Data   struct {
			Order  int    `json:"order"`
			Item   string `json:"item"`
			Amount int    `json:"amount"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &ev); err != nil {
		http.Error(w, "not an event", http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen[id] {
		fmt.Fprintf(r.out, "duplicate %s ignored\n", id)
		w.WriteHeader(http.StatusNoContent) // taken before: say so again
		return
	}
	if ev.Offset != r.last+1 {
		fmt.Fprintf(r.out, "out of order: offset %d after %d\n", ev.Offset, r.last)
	}
	r.seen[id], r.last = true, ev.Offset
	r.n++
	fmt.Fprintf(r.out, "order %d: %s, %d cents (offset %d, verified)\n", ev.Data.Order, ev.Data.Item, ev.Data.Amount, ev.Offset)
	w.WriteHeader(http.StatusNoContent)
	if r.n == r.limit {
		close(r.done)
	}
}

// verify checks a request's signature headers against body: the
// timestamp within 5 minutes, and one of the space-separated "v1,…"
// signatures the HMAC-SHA256 of "id.timestamp.body".
func (r *receiver) verify(id, ts, sigs string, body []byte) error {
	sec, err := strconv.ParseInt(ts, 10, 64)
	if id == "" || err != nil {
		return fmt.Errorf("missing webhook-id or webhook-timestamp")
	}
	if d := time.Since(time.Unix(sec, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return fmt.Errorf("timestamp %s is too far from now", ts)
	}
	m := hmac.New(sha256.New, r.key)
	fmt.Fprintf(m, "%s.%s.", id, ts)
	m.Write(body)
	want := m.Sum(nil)
	for _, s := range strings.Fields(sigs) {
		v, b64, ok := strings.Cut(s, ",")
		if !ok || v != "v1" {
			continue
		}
		if got, err := base64.StdEncoding.DecodeString(b64); err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return fmt.Errorf("no valid signature")
}
