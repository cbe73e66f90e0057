package source

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"mime"
	"path"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/heraldhq/herald/internal/event"
)

// Change detection: each mode turns a response body into marks — short
// strings kept in the source's state, one per thing that can change — and
// publishes what differs from the marks of the previous body:
//
//	whole        one mark: the body's hash
//	json-items   one per item, by id: its version, or its content's hash
//	prometheus   one per series: its value's bits
//
// The functions here are pure (a body and the previous marks in, changes
// out) so that they can be tested and fuzzed alone.

// errParse is wrapped by errors reading a body.
var errParse = errors.New("cannot read the response")

// hashOf returns a short hex hash of b: 16 bytes of SHA-256, plenty to
// tell versions of one thing apart.
func hashOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:16])
}

// encodingOf says how to publish a body that came with contentType: JSON
// when it is declared JSON (or declared nothing) and is valid JSON, text
// when it is valid UTF-8 and not declared binary, bytes otherwise.
func encodingOf(contentType string, body []byte) event.Encoding {
	mt, _, _ := mime.ParseMediaType(contentType)
	jsonType := mt == "application/json" || strings.HasSuffix(mt, "+json")
	if (jsonType || mt == "") && json.Valid(body) {
		return event.EncodingJSON
	}
	if (jsonType || mt == "" || strings.HasPrefix(mt, "text/") || strings.HasSuffix(mt, "+xml") || mt == "application/xml") && utf8.Valid(body) {
		return event.EncodingText
	}
	return event.EncodingBinary
}

// item is one element of a json-items array.
type item struct {
	id   string
	mark string // its version, or its content's hash
	data []byte // its canonical JSON
}

// maxMarkLen bounds a mark kept as it is; longer versions are hashed.
const maxMarkLen = 64

// readItems returns the items of body: the array at items, each element's
// id at id and version at version (nil: the content's hash). Elements
// without a usable id (a string or a number) are skipped and counted, and
// so are later elements repeating an id.
func readItems(body []byte, items, id, version Path) (out []item, skipped int, err error) {
	doc, err := decodeJSON(body)
	if err != nil {
		return nil, 0, err
	}
	v, ok := items.Lookup(doc)
	if !ok {
		return nil, 0, fmt.Errorf("%w: the body has nothing at %s", errParse, items)
	}
	arr, ok := v.([]any)
	if !ok {
		return nil, 0, fmt.Errorf("%w: %s is %s, not an array", errParse, items, kindOf(v))
	}
	seen := make(map[string]bool, len(arr))
	for _, el := range arr {
		idv, ok := id.Lookup(el)
		key, ok2 := scalarText(idv)
		if !ok || !ok2 || key == "" || seen[key] {
			skipped++
			continue
		}
		seen[key] = true
		data, err := canonicalJSON(el)
		if err != nil {
			return nil, 0, fmt.Errorf("%w: item %s: %v", errParse, key, err)
		}
		it := item{id: key, data: data}
		if vv, ok := version.Lookup(el); ok && version != nil {
			if s, ok := scalarText(vv); ok {
				it.mark = "v" + s
			}
		}
		if it.mark == "" {
			it.mark = "h" + hashOf(data)
		} else if len(it.mark) > maxMarkLen {
			it.mark = "v#" + hashOf([]byte(it.mark))
		}
		out = append(out, it)
	}
	return out, skipped, nil
}

// decodeJSON decodes one JSON document, numbers kept as written.
func decodeJSON(body []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	var doc any
	if err := d.Decode(&doc); err != nil {
		return nil, fmt.Errorf("%w: not JSON: %v", errParse, err)
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: not JSON: data after the document", errParse)
	}
	return doc, nil
}

// canonicalJSON encodes v compactly with object keys sorted, so that two
// items equal as JSON are equal as bytes.
func canonicalJSON(v any) ([]byte, error) { return marshal(v) }

// scalarText returns a string's or a number's text, or a bool's.
func scalarText(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case json.Number:
		return x.String(), true
	case bool:
		return strconv.FormatBool(x), true
	}
	return "", false
}

func kindOf(v any) string {
	switch v.(type) {
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	}
	return "null"
}

// sample is one Prometheus sample.
type sample struct {
	series string            // the name and the sorted labels: name{a="x",b="y"}
	name   string            // the metric name
	labels map[string]string // without the name
	value  float64
	ts     int64 // milliseconds, 0 when the exposition gave none
}

// maxSamples bounds the series one scrape may have.
const maxSamples = 100_000

// readSamples parses a Prometheus text exposition into its samples,
// histograms and summaries flattened into their series (_bucket, _sum,
// _count, quantiles), keeping the metrics keep accepts. Of two samples of
// one series the last is kept.
func readSamples(body []byte, keep func(name string) bool) (map[string]sample, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("%w: not the Prometheus text format: %v", errParse, err)
	}
	names := slices.Sorted(maps.Keys(fams))
	out := make(map[string]sample)
	for _, n := range names {
		if !keep(n) {
			continue
		}
		vec, err := expfmt.ExtractSamples(&expfmt.DecodeOptions{}, fams[n])
		if err != nil {
			return nil, fmt.Errorf("%w: metric %s: %v", errParse, n, err)
		}
		for _, s := range vec {
			sm := sample{labels: make(map[string]string, len(s.Metric)), value: float64(s.Value), ts: int64(s.Timestamp)}
			for k, v := range s.Metric {
				if k == model.MetricNameLabel {
					sm.name = string(v)
				} else {
					sm.labels[string(k)] = string(v)
				}
			}
			sm.series = seriesKey(sm.name, sm.labels)
			out[sm.series] = sm
			if len(out) > maxSamples {
				return nil, fmt.Errorf("%w: more than %d series", errParse, maxSamples)
			}
		}
	}
	return out, nil
}

// seriesKey names a series: its metric name and sorted labels.
func seriesKey(name string, labels map[string]string) string {
	var b strings.Builder
	b.WriteString(name)
	b.WriteByte('{')
	for i, k := range slices.Sorted(maps.Keys(labels)) {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(strconv.Quote(labels[k]))
	}
	b.WriteByte('}')
	return b.String()
}

// metricFilter returns whether a metric name matches one of globs (every
// name when there are none).
func metricFilter(globs []string) func(string) bool {
	return func(name string) bool {
		if len(globs) == 0 {
			return true
		}
		for _, g := range globs {
			if ok, _ := path.Match(g, name); ok {
				return true
			}
		}
		return false
	}
}

// valueMark is a sample value as its mark: its 8 bytes.
func valueMark(v float64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], math.Float64bits(v))
	return string(b[:])
}

// changedSamples returns the samples of cur whose series have no mark in
// prev or a mark for another value, in series order.
func changedSamples(prev func(series string) (string, bool), cur map[string]sample) []sample {
	var out []sample
	for _, s := range cur {
		if m, ok := prev(s.series); !ok || m != valueMark(s.value) {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b sample) int { return strings.Compare(a.series, b.series) })
	return out
}

// appendSample appends the JSON of one sample of a prometheus event,
// whose data is {"samples":[SAMPLE,…]}:
// {"metric":…,"labels":{…},"value":…,"timestamp":…}. Values that JSON has
// no number for are strings: "NaN", "+Inf", "-Inf". The timestamp is there
// when the exposition gave one.
func appendSample(b []byte, s sample) []byte {
	b = append(b, `{"metric":`...)
	b = appendJSONString(b, s.name)
	b = append(b, `,"labels":{`...)
	for j, k := range slices.Sorted(maps.Keys(s.labels)) {
		if j > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		b = append(b, ':')
		b = appendJSONString(b, s.labels[k])
	}
	b = append(b, `},"value":`...)
	switch v := s.value; {
	case math.IsNaN(v):
		b = append(b, `"NaN"`...)
	case math.IsInf(v, 1):
		b = append(b, `"+Inf"`...)
	case math.IsInf(v, -1):
		b = append(b, `"-Inf"`...)
	default:
		b = strconv.AppendFloat(b, v, 'g', -1, 64)
	}
	if s.ts != 0 {
		b = append(b, `,"timestamp":`...)
		b = strconv.AppendInt(b, s.ts, 10)
	}
	return append(b, '}')
}

// appendJSONString appends s as a JSON string.
func appendJSONString(b []byte, s string) []byte {
	q, _ := json.Marshal(s) // a string always encodes
	return append(b, q...)
}
