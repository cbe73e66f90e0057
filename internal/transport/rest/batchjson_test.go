package rest

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/heraldhq/herald/internal/wire"
)

func TestDecodeBatch(t *testing.T) {
	str := func(s string) *string { return &s }
	tests := []struct {
		name    string
		body    string
		want    []batchEvent
		wantErr string
	}{
		{"one", `{"events":[{"topic":"a","data":{"x":[1,2.5e3,-0,true,null,"s\u00e9"]}}]}`,
			[]batchEvent{{Topic: "a", EventFields: wire.EventFields{Data: json.RawMessage(`{"x":[1,2.5e3,-0,true,null,"s\u00e9"]}`)}}}, ""},
		{"all fields", " {\n\"events\" : [ {\"topic\":\"a\",\"text\":\"l1\\nl2 \\ud83d\\ude00\",\"type\":\"t\",\"key\":\"k\",\"headers\":{\"h\":\"v\"}} , {\"topic\":\"b\",\"data_base64\":\"AAE=\"} ] } ",
			[]batchEvent{{Topic: "a", EventFields: wire.EventFields{Text: str("l1\nl2 😀"), Type: "t", Key: "k", Headers: map[string]string{"h": "v"}}}, {Topic: "b", EventFields: wire.EventFields{DataBase64: str("AAE=")}}}, ""},
		{"empty list", `{"events":[]}`, nil, ""},
		{"no events key", `{}`, nil, ""},
		{"unknown top field", `{"evnts":[]}`, nil, `unknown field "evnts"`},
		{"unknown event field", `{"events":[{"topic":"a","dat":1}]}`, nil, `event 0: unknown field "dat"`},
		{"trailing data", `{"events":[]} x`, nil, "after the batch object"},
		{"bad number", `{"events":[{"topic":"a","data":01}]}`, nil, "expected ',' or '}'"},
		{"bad literal", `{"events":[{"topic":"a","data":tru}]}`, nil, "invalid literal"},
		{"topic not string", `{"events":[{"topic":1}]}`, nil, "topic must be a string"},
		{"unterminated", `{"events":[{"topic":"a`, nil, "unterminated string"},
		{"control char", "{\"events\":[{\"topic\":\"a\x01\"}]}", nil, "control character"},
		{"bad utf8", "{\"events\":[{\"topic\":\"a\xff\"}]}", nil, "not valid UTF-8"},
		{"lone surrogate", `{"events":[{"topic":"a","text":"\ud800"}]}`, nil, "unpaired surrogate"},
		{"too deep", `{"events":[{"topic":"a","data":` + strings.Repeat("[", 600) + strings.Repeat("]", 600) + `}]}`, nil, "nested deeper"},
		{"empty", ``, nil, "found the end of the body"},
		{"array top", `[]`, nil, `expected '{'`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeBatch([]byte(tt.body))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// FuzzDecodeBatch checks the hand-written batch parser against
// encoding/json: whatever it accepts, encoding/json accepts with the same
// values (it is allowed to be stricter, never looser), and it never panics.
func FuzzDecodeBatch(f *testing.F) {
	for _, s := range []string{
		`{"events":[{"topic":"a","data":{"x":1}}]}`,
		`{"events":[{"topic":"a","text":"t\n\u00e9","type":"x","key":"k","headers":{"a":"b"}},{"topic":"b","data_base64":"AA=="}]}`,
		`{"events":[{"topic":"a","data":[1,-2.5e-3,true,false,null,"s",{"k":[]}]}]}`,
		`{"events":[]}`, `{}`, `{"events":[{"topic":"a","data":"\ud83d\ude00"}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := decodeBatch(body)
		if err != nil {
			return
		}
		var want batchRequest
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&want); err != nil {
			t.Fatalf("decodeBatch accepted what encoding/json refuses (%v): %q", err, body)
		}
		if len(got) != len(want.Events) {
			t.Fatalf("%d events, encoding/json found %d", len(got), len(want.Events))
		}
		for i := range got {
			g, w := got[i], want.Events[i]
			if g.Topic != w.Topic || g.Type != w.Type || g.Key != w.Key || !reflect.DeepEqual(g.Text, w.Text) ||
				!reflect.DeepEqual(g.DataBase64, w.DataBase64) || !bytes.Equal(g.Data, w.Data) ||
				len(g.Headers) != len(w.Headers) {
				t.Fatalf("event %d: got %+v, encoding/json %+v", i, g, w)
			}
		}
	})
}
