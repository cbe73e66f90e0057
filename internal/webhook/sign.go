package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"hash"
	"strconv"
	"sync"

	"github.com/heraldhq/herald/internal/event"
)

// Every request carries three headers (Standard Webhooks, v1.0.0):
//
//	webhook-id         the event's identity, the same on every attempt and
//	                   replay of it: "TOPIC:EPOCH:OFFSET", so a receiver
//	                   deduplicates on it
//	webhook-timestamp  when the attempt was signed, in unix seconds
//	webhook-signature  "v1," + base64(HMAC-SHA256(key, id "." timestamp
//	                   "." body)) for each secret, separated by spaces
//
// The body is the event in herald's JSON form, as the REST pull API shows
// it (docs/api.md, "Events on the wire").
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// MessageID returns the webhook-id of ev: its topic, epoch and offset.
func MessageID(ev *event.Event) string {
	b := make([]byte, 0, len(ev.Topic)+40)
	b = append(b, ev.Topic...)
	b = append(b, ':')
	b = ev.Epoch.Append(b)
	b = append(b, ':')
	b = strconv.AppendUint(b, ev.Offset, 10)
	return string(b)
}

// signer signs with a subscription's secrets. Its HMAC states are pooled:
// one per secret per concurrent signature.
type signer struct {
	pools []sync.Pool
}

// newSigner returns a signer for secrets, which Validate has checked.
func newSigner(secrets []string) *signer {
	s := &signer{pools: make([]sync.Pool, len(secrets))}
	for i, sec := range secrets {
		key, _ := DecodeSecret(sec)
		s.pools[i].New = func() any { return hmac.New(sha256.New, key) }
	}
	return s
}

// sign returns the webhook-signature header's value for id, unix time ts
// and body.
func (s *signer) sign(id string, ts int64, body []byte) string {
	out := make([]byte, 0, len(s.pools)*48)
	var sum [sha256.Size]byte
	for i := range s.pools {
		m := s.pools[i].Get().(hash.Hash)
		m.Reset()
		m.Write([]byte(id))
		var tb [24]byte
		t := strconv.AppendInt(append(tb[:0], '.'), ts, 10)
		m.Write(append(t, '.'))
		m.Write(body)
		mac := m.Sum(sum[:0])
		s.pools[i].Put(m)
		if i > 0 {
			out = append(out, ' ')
		}
		out = append(out, "v1,"...)
		out = base64.StdEncoding.AppendEncode(out, mac)
	}
	return string(out)
}
