package source

import (
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/heraldhq/herald/internal/event"
)

func TestEncodingOf(t *testing.T) {
	for _, c := range []struct {
		ct, body string
		want     event.Encoding
	}{
		{"application/json", `{"a":1}`, event.EncodingJSON},
		{"application/problem+json; charset=utf-8", `[1]`, event.EncodingJSON},
		{"", `{"a":1}`, event.EncodingJSON},
		{"", `plain`, event.EncodingText},
		{"application/json", `{broken`, event.EncodingText},
		{"text/plain", `{"a":1}`, event.EncodingText},
		{"text/html", "<p>\xff</p>", event.EncodingBinary},
		{"application/xml", "<a/>", event.EncodingText},
		{"image/png", "\x89PNG", event.EncodingBinary},
		{"application/octet-stream", "text", event.EncodingBinary},
	} {
		if got := encodingOf(c.ct, []byte(c.body)); got != c.want {
			t.Errorf("encodingOf(%q, %q) = %v, want %v", c.ct, c.body, got, c.want)
		}
	}
}

func TestReadItems(t *testing.T) {
	items, _ := ParsePath("items")
	id, _ := ParsePath("meta.id")
	ver, _ := ParsePath("v")
	body := `{"items":[
		{"meta":{"id":7},"v":"2024-01-01","x":"<&>"},
		{"meta":{"id":"s"}},
		{"meta":{"id":1.50}},
		{"meta":{"id":true}},
		{"meta":{"id":{}}},
		{"meta":{"id":""}},
		{"meta":{}},
		{"meta":{"id":"s"},"dup":1},
		{"meta":{"id":"long"},"v":"` + strings.Repeat("v", 100) + `"}
	]}`
	got, skipped, err := readItems([]byte(body), items, id, ver)
	if err != nil {
		t.Fatal(err)
	}
	if skipped != 4 {
		t.Errorf("skipped %d, want 4 (object id, empty id, no id, repeated id)", skipped)
	}
	var ids, marks []string
	for _, it := range got {
		ids = append(ids, it.id)
		marks = append(marks, it.mark[:1])
	}
	if want := []string{"7", "s", "1.50", "true", "long"}; !slices.Equal(ids, want) {
		t.Errorf("ids %q, want %q", ids, want)
	}
	if got[0].mark != "v2024-01-01" || got[1].mark[0] != 'h' || !strings.HasPrefix(got[4].mark, "v#") {
		t.Errorf("marks %q: want a version, a hash, a hashed long version", marks)
	}
	if string(got[0].data) != `{"meta":{"id":7},"v":"2024-01-01","x":"<&>"}` {
		t.Errorf("data %s: want canonical JSON without HTML escapes", got[0].data)
	}
	for _, c := range []struct{ body, path, want string }{
		{`{"a":1}`, "items", "nothing at $.items"},
		{`{"items":{"x":1}}`, "items", "$.items is an object, not an array"},
		{`[1] [2]`, "", "data after the document"},
		{`{`, "", "not JSON"},
	} {
		p, _ := ParsePath(c.path)
		if _, _, err := readItems([]byte(c.body), p, id, nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("readItems(%s at %q) = %v, want an error with %q", c.body, c.path, err, c.want)
		}
	}
}

func TestReadSamples(t *testing.T) {
	ss, err := readSamples([]byte(promText+"# TYPE sm summary\nsm{quantile=\"0.5\"} 3\nsm_sum 9\nsm_count 3\nup 1 1700000000000\n"), metricFilter(nil))
	if err != nil {
		t.Fatal(err)
	}
	var series []string
	for k := range ss {
		series = append(series, k)
	}
	slices.Sort(series)
	want := []string{
		`lat_bucket{le="+Inf"}`, `lat_bucket{le="0.1"}`, `lat_count{}`, `lat_sum{}`,
		`req_total{code="200",path="/a"}`, `req_total{code="500",path="/a"}`,
		`sm_count{}`, `sm_sum{}`, `sm{quantile="0.5"}`, `temp{}`, `up{}`,
	}
	if !slices.Equal(series, want) {
		t.Errorf("series %q, want %q", series, want)
	}
	if s := ss[`up{}`]; s.ts != 1700000000000 || s.value != 1 {
		t.Errorf("up: %+v, want the exposition's timestamp", s)
	}
	if _, err := readSamples([]byte("not metrics {"), metricFilter(nil)); err == nil {
		t.Error("readSamples accepted a body that is not the text format")
	}
	keep := metricFilter([]string{"req_*", "up"})
	if ss, _ := readSamples([]byte(promText+"up 1\n"), keep); len(ss) != 3 {
		t.Errorf("filtered: %d series, want 3", len(ss))
	}
}

func TestAppendSample(t *testing.T) {
	for _, c := range []struct {
		s    sample
		want string
	}{
		{sample{name: "a", labels: map[string]string{"z": "1", "b": "\"q\"\n"}, value: 1.5}, `{"metric":"a","labels":{"b":"\"q\"\n","z":"1"},"value":1.5}`},
		{sample{name: "b", labels: map[string]string{}, value: math.Inf(1), ts: 5}, `{"metric":"b","labels":{},"value":"+Inf","timestamp":5}`},
		{sample{name: "c", value: math.Inf(-1)}, `{"metric":"c","labels":{},"value":"-Inf"}`},
		{sample{name: "d", value: 1e21}, `{"metric":"d","labels":{},"value":1e+21}`},
	} {
		got := string(appendSample(nil, c.s))
		if got != c.want {
			t.Errorf("appendSample(%+v) = %s, want %s", c.s, got, c.want)
		}
		if !json.Valid([]byte(got)) {
			t.Errorf("appendSample(%+v) = %s, not JSON", c.s, got)
		}
	}
}

// FuzzPrometheusChanges fuzzes the Prometheus change detector over two
// scrapes: against no state every sample is a change, against its own
// marks none is, and against the first scrape's marks the changes of the
// second are exactly its samples that are new or have another value. Every
// change encodes as JSON.
func FuzzPrometheusChanges(f *testing.F) {
	f.Add(promText, strings.Replace(promText, "} 10", "} 11", 1))
	f.Add("a 1\nb 2\n", "a 1\nc 3\n")
	f.Add("# TYPE x gauge\nx{l=\"v\"} NaN\n", "# TYPE x gauge\nx{l=\"v\"} NaN\n")
	f.Add("x 1 100\n", "x 1 200\n")
	f.Add("x{a=\"\\\"\"} +Inf\n", "x{a=\"\\\\\"} -Inf\n")
	f.Add("# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n", "")
	f.Fuzz(func(t *testing.T, first, second string) {
		a, err := readSamples([]byte(first), metricFilter(nil))
		if err != nil {
			return
		}
		none := func(string) (string, bool) { return "", false }
		if got := changedSamples(none, a); len(got) != len(a) {
			t.Fatalf("against no state: %d changes of %d samples", len(got), len(a))
		}
		marks := map[string]string{}
		for _, s := range a {
			marks[s.series] = valueMark(s.value)
		}
		prev := func(series string) (string, bool) { m, ok := marks[series]; return m, ok }
		if got := changedSamples(prev, a); len(got) != 0 {
			t.Fatalf("against its own marks: %d changes", len(got))
		}
		b, err := readSamples([]byte(second), metricFilter(nil))
		if err != nil {
			return
		}
		got := changedSamples(prev, b)
		want := 0
		for _, s := range b {
			if old, ok := a[s.series]; !ok || math.Float64bits(old.value) != math.Float64bits(s.value) {
				want++
			}
		}
		if len(got) != want {
			t.Fatalf("changes %d, want %d", len(got), want)
		}
		for i, s := range got {
			if i > 0 && got[i-1].series >= s.series {
				t.Fatalf("changes out of order: %q before %q", got[i-1].series, s.series)
			}
			if js := appendSample(nil, s); !json.Valid(js) {
				t.Fatalf("sample %+v encodes as %s, not JSON", s, js)
			}
		}
	})
}
