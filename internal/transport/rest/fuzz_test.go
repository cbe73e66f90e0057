package rest

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"testing"

	"github.com/heraldhq/herald/internal/cursor"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/wire"
)

// fuzzOpts are small limits, so that fuzzing reaches the size checks.
var fuzzOpts = Options{MaxEventBytes: 4096, MaxBodyBytes: 8192}

type ackJSON struct {
	Topic     string `json:"topic"`
	Offset    uint64 `json:"offset"`
	Epoch     string `json:"epoch"`
	Cursor    string `json:"cursor"`
	Duplicate bool   `json:"duplicate"`
}

type eventJSON struct {
	Topic    string            `json:"topic"`
	Offset   uint64            `json:"offset"`
	Epoch    string            `json:"epoch"`
	Time     string            `json:"time"`
	Type     string            `json:"type"`
	Encoding string            `json:"encoding"`
	Data     json.RawMessage   `json:"data"`
	Headers  map[string]string `json:"headers"`
}

// strictDecode decodes b into v, refusing unknown fields and trailing data.
func strictDecode(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return strconv.ErrSyntax
	}
	return nil
}

// checkErrorBody checks that a refusal is the API's error JSON.
func checkErrorBody(t *testing.T, code int, body []byte) {
	t.Helper()
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := strictDecode(body, &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
		t.Fatalf("status %d with a body that is not an API error: %q (%v)", code, body, err)
	}
}

// pullAt pulls the one event of topic at (epoch, offset).
func (f *fixture) pullAt(t *testing.T, topic, epoch string, offset uint64) eventJSON {
	t.Helper()
	ep, err := event.ParseEpoch(epoch)
	if err != nil {
		t.Fatalf("epoch %q: %v", epoch, err)
	}
	var c cursor.Cursor
	c.Set(topic, event.Position{Epoch: ep, Offset: offset - 1})
	rec := f.do(http.MethodGet, "/v1/events?limit=1&topic="+url.QueryEscape(topic)+"&cursor="+c.String(), nil)
	if rec.Code != http.StatusOK {
		t.Fatalf("pull %s@%d: %d %s", topic, offset, rec.Code, rec.Body)
	}
	var res struct {
		Events []eventJSON `json:"events"`
		Cursor string      `json:"cursor"`
	}
	if err := strictDecode(rec.Body.Bytes(), &res); err != nil {
		t.Fatalf("pull answer does not parse: %v: %q", err, rec.Body)
	}
	if len(res.Events) != 1 || res.Events[0].Offset != offset || res.Events[0].Topic != topic || res.Events[0].Epoch != epoch {
		t.Fatalf("pull %s@%d gave %+v", topic, offset, res.Events)
	}
	return res.Events[0]
}

// checkData checks that an event's data field holds payload.
func checkData(t *testing.T, ev eventJSON, payload []byte) {
	t.Helper()
	switch ev.Encoding {
	case "json":
		// The data field is the published JSON; a decoder drops the
		// whitespace around it.
		var got, want bytes.Buffer
		if json.Compact(&got, ev.Data) != nil || json.Compact(&want, payload) != nil || !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Fatalf("json data %q, published %q", ev.Data, payload)
		}
	case "text":
		var s string
		if err := json.Unmarshal(ev.Data, &s); err != nil || s != string(payload) {
			t.Fatalf("text data %q (%v), published %q", ev.Data, err, payload)
		}
	case "binary":
		var s string
		json.Unmarshal(ev.Data, &s)
		if raw, err := base64.StdEncoding.DecodeString(s); err != nil || !bytes.Equal(raw, payload) {
			t.Fatalf("binary data %q (%v), published %q", ev.Data, err, payload)
		}
	default:
		t.Fatalf("encoding %q", ev.Encoding)
	}
}

// FuzzPublishBody publishes arbitrary bodies with arbitrary content types,
// event types and keys: the answer is never a 5xx, a refusal is the API's
// error JSON, and an accepted event reads back as JSON that holds exactly
// what was published.
func FuzzPublishBody(f *testing.F) {
	// More seeds are in testdata/fuzz/FuzzPublishBody.
	f.Add([]byte(`{"a":1}`), "application/json", "", "")
	f.Add([]byte("hello\r\nworld"), "text/plain; charset=utf-8", "note", "k1")
	f.Add([]byte("\xff\xfe\x00"), "", "", "")
	fx := newFixture(f, fuzzOpts)
	const topic = "fuzz.publish"
	f.Fuzz(func(t *testing.T, body []byte, ct, typ, key string) {
		hdr := []string{}
		if ct != "" {
			hdr = append(hdr, "Content-Type", ct)
		}
		if typ != "" {
			hdr = append(hdr, "Herald-Event-Type", typ)
		}
		if key != "" {
			hdr = append(hdr, "Idempotency-Key", key)
		}
		rec := fx.do(http.MethodPost, "/v1/topics/"+topic+"/events", body, hdr...)
		switch {
		case rec.Code >= 500:
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		case rec.Code == http.StatusCreated || rec.Code == http.StatusOK:
		case rec.Code == http.StatusRequestEntityTooLarge:
			if len(body) <= fuzzOpts.MaxEventBytes {
				t.Fatalf("413 for %d bytes", len(body))
			}
			checkErrorBody(t, rec.Code, rec.Body.Bytes())
			return
		default:
			checkErrorBody(t, rec.Code, rec.Body.Bytes())
			return
		}
		var ack ackJSON
		if err := strictDecode(rec.Body.Bytes(), &ack); err != nil {
			t.Fatalf("ack does not parse: %v: %q", err, rec.Body)
		}
		if ack.Topic != topic || ack.Offset == 0 || ack.Duplicate != (rec.Code == http.StatusOK) {
			t.Fatalf("ack %+v with status %d", ack, rec.Code)
		}
		if c, err := cursor.Parse(ack.Cursor); err != nil || c.Len() != 1 {
			t.Fatalf("ack cursor %q: %v", ack.Cursor, err)
		}
		if ack.Duplicate {
			// The original may be out of retained history by now.
			if key == "" {
				t.Fatalf("a duplicate without a key")
			}
			return
		}
		ev := fx.pullAt(t, topic, ack.Epoch, ack.Offset)
		if ev.Type != typ {
			t.Fatalf("type %q, published %q", ev.Type, typ)
		}
		checkData(t, ev, body)
	})
}

// FuzzBatch posts arbitrary batch bodies: the answer is never a 5xx, a
// refused batch stores nothing in any topic, and an accepted one stores
// exactly its non-duplicate events, each readable as JSON.
func FuzzBatch(f *testing.F) {
	// More seeds are in testdata/fuzz/FuzzBatch.
	f.Add([]byte(`{"events":[{"topic":"a","data":{"n":1}},{"topic":"b","text":"t"},{"topic":"a","data_base64":"AAEC","key":"k"}]}`), "application/json")
	f.Add([]byte(`{"events":[{"topic":"a","data":1},{"topic":"a..b","data":1}]}`), "")
	f.Add([]byte(`{"events":[{"topic":"a","data":1}]}`), "application/x-www-form-urlencoded") // refused: a CORS simple request
	fx := newFixture(f, fuzzOpts)
	stored := func(t *testing.T) uint64 {
		infos, err := fx.hub.Topics(hub.Internal(t.Context()))
		if err != nil {
			t.Fatal(err)
		}
		var n uint64
		for _, ti := range infos {
			n += ti.Last
		}
		return n
	}
	f.Fuzz(func(t *testing.T, body []byte, ct string) {
		before := stored(t)
		if ct == "" {
			ct = "application/json" // the seeds' default; no type at all is refused (TestBatchMediaType)
		}
		hdr := []string{"Content-Type", ct}
		rec := fx.do(http.MethodPost, "/v1/events", body, hdr...)
		if mt, _, err := mime.ParseMediaType(ct); rec.Code == http.StatusOK && (err != nil || mt != "application/json") {
			t.Fatalf("accepted a batch of Content-Type %q", ct)
		}
		if rec.Code >= 500 {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		if rec.Code != http.StatusOK {
			checkErrorBody(t, rec.Code, rec.Body.Bytes())
			if after := stored(t); after != before {
				t.Fatalf("a refused batch (%d) stored %d events", rec.Code, after-before)
			}
			return
		}
		var res struct {
			Results []ackJSON `json:"results"`
		}
		if err := strictDecode(rec.Body.Bytes(), &res); err != nil || len(res.Results) == 0 {
			t.Fatalf("answer does not parse: %v: %q", err, rec.Body)
		}
		// encoding/json is the reference reading of an accepted body.
		var ref struct {
			Events []struct {
				Topic      string            `json:"topic"`
				Data       json.RawMessage   `json:"data"`
				Text       *string           `json:"text"`
				DataBase64 *string           `json:"data_base64"`
				Type       string            `json:"type"`
				Key        string            `json:"key"`
				Headers    map[string]string `json:"headers"`
			} `json:"events"`
		}
		if err := strictDecode(body, &ref); err != nil {
			t.Fatalf("accepted a batch encoding/json refuses (%v): %q", err, body)
		}
		if len(ref.Events) != len(res.Results) {
			t.Fatalf("%d results for %d events", len(res.Results), len(ref.Events))
		}
		fresh := uint64(0)
		for i, r := range res.Results {
			want := ref.Events[i]
			if r.Offset == 0 || r.Topic != want.Topic {
				t.Fatalf("result %d = %+v for topic %q", i, r, want.Topic)
			}
			if r.Duplicate {
				continue
			}
			fresh++
			ev := fx.pullAt(t, r.Topic, r.Epoch, r.Offset)
			if ev.Type != want.Type || len(ev.Headers) != len(want.Headers) {
				t.Fatalf("event %d: type %q headers %v; sent %q %v", i, ev.Type, ev.Headers, want.Type, want.Headers)
			}
			for k, v := range want.Headers {
				if ev.Headers[k] != v {
					t.Fatalf("event %d: header %q = %q, sent %q", i, k, ev.Headers[k], v)
				}
			}
			switch {
			case want.Data != nil:
				if ev.Encoding != "json" {
					t.Fatalf("event %d: encoding %s for data", i, ev.Encoding)
				}
				checkData(t, ev, want.Data)
			case want.Text != nil:
				var s string
				if err := json.Unmarshal(ev.Data, &s); ev.Encoding != "text" || err != nil || s != *want.Text {
					t.Fatalf("event %d: %s %s for text %q", i, ev.Encoding, ev.Data, *want.Text)
				}
			case want.DataBase64 != nil:
				raw, err := wire.DecodeBase64(*want.DataBase64)
				if ev.Encoding != "binary" || err != nil {
					t.Fatalf("event %d: %s for data_base64 %q (%v)", i, ev.Encoding, *want.DataBase64, err)
				}
				checkData(t, ev, raw)
			}
		}
		if after := stored(t); after != before+fresh {
			t.Fatalf("stored %d events for %d fresh results", after-before, fresh)
		}
	})
}

// FuzzGzipBody publishes bodies with Content-Encoding: gzip, either
// compressed from the input or the input's bytes as they are: the answer
// is never a 5xx, what is stored is always the decompressed payload (never
// the coded bytes), and a payload over the event limit is too_large however
// small it compresses.
func FuzzGzipBody(f *testing.F) {
	f.Add([]byte(`{"a":1}`), true)
	f.Add(make([]byte, 5000), true) // inflates past the limit
	f.Add([]byte("\x1f\x8b\x08\x00"), false)
	f.Add([]byte("not gzip"), false)
	fx := newFixture(f, fuzzOpts)
	const topic = "fuzz.gzip"
	f.Fuzz(func(t *testing.T, in []byte, compress bool) {
		body := in
		if compress {
			var b bytes.Buffer
			zw := gzip.NewWriter(&b)
			zw.Write(in)
			zw.Close()
			body = b.Bytes()
		}
		rec := fx.do(http.MethodPost, "/v1/topics/"+topic+"/events", body,
			"Content-Type", "application/octet-stream", "Content-Encoding", "gzip")
		if rec.Code >= 500 {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		var want []byte // the payload, when the body is valid gzip
		if zr, err := gzip.NewReader(bytes.NewReader(body)); err == nil {
			if b, err := io.ReadAll(io.LimitReader(zr, 1<<20)); err == nil {
				want = b
			}
		}
		if rec.Code != http.StatusCreated {
			checkErrorBody(t, rec.Code, rec.Body.Bytes())
			if want != nil && len(want) <= fuzzOpts.MaxEventBytes && len(body) <= fuzzOpts.MaxEventBytes {
				t.Fatalf("valid gzip of %d bytes refused: %s", len(want), rec.Body)
			}
			return
		}
		if want == nil || len(want) > fuzzOpts.MaxEventBytes {
			t.Fatalf("stored a body that is not valid gzip, or too large decoded (%d bytes)", len(want))
		}
		var ack ackJSON
		if err := strictDecode(rec.Body.Bytes(), &ack); err != nil {
			t.Fatalf("ack does not parse: %v: %q", err, rec.Body)
		}
		checkData(t, fx.pullAt(t, topic, ack.Epoch, ack.Offset), want)
	})
}
