package source

import (
	"reflect"
	"strings"
	"testing"
)

func TestParsePath(t *testing.T) {
	cases := []struct {
		in, want string // want: the canonical form, or "error: …" a part of the error
	}{
		{"", "$"},
		{"$", "$"},
		{"data", "$.data"},
		{"data.items", "$.data.items"},
		{"$.data.items", "$.data.items"},
		{"results[0].rows", "$.results[0].rows"},
		{"[2]", "$[2]"},
		{"$[007]", "$[7]"},
		{`$['odd.key']["x"]`, "$['odd.key'].x"},
		{`$['it\'s']`, `$['it\'s']`},
		{`$['']`, `$['']`},
		{`$['a\\b']`, `$['a\\b']`},
		{"$..items", "error: recursive descent"},
		{"$.items[*]", "error: wildcards"},
		{"$.*", "error: wildcards"},
		{"$.items[1:2]", "error: expected ']' after the index"},
		{"$.items[?(@.x)]", "error: expected an index"},
		{"$data", "error: expected '.' or '['"},
		{".data", "error: expected a field name"},
		{"data.", "error: expected a field name after '.'"},
		{"$['x", "error: unclosed quote"},
		{"$['x'", "error: expected ']' after the quoted name"},
		{`$['\x']`, "error: a backslash"},
		{"$[", "error: unclosed '['"},
		{"$[99999999999]", "error: too large"},
		{"a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t.u.v.w.x.y.z.a.b.c.d.e.f.g", "error: more than 32 steps"},
	}
	for _, c := range cases {
		p, err := ParsePath(c.in)
		if want, ok := strings.CutPrefix(c.want, "error: "); ok {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("ParsePath(%q) = %v, %v; want an error with %q", c.in, p, err, want)
			}
			continue
		}
		if err != nil || p.String() != c.want {
			t.Errorf("ParsePath(%q) = %s, %v; want %s", c.in, p, err, c.want)
		}
	}
}

func TestLookup(t *testing.T) {
	doc, err := decodeJSON([]byte(`{"a":{"b":[10,{"c":"x"}]},"n":null}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path string
		want string // kindOf the result, or "missing"
	}{
		{"$", "an object"}, {"a.b", "an array"}, {"a.b[0]", "a number"}, {"a.b[1].c", "a string"},
		{"n", "null"}, {"a.b[2]", "missing"}, {"a.x", "missing"}, {"a[0]", "missing"}, {"a.b.c", "missing"}, {"a.b[0].c", "missing"},
	} {
		p, err := ParsePath(c.path)
		if err != nil {
			t.Fatal(err)
		}
		v, ok := p.Lookup(doc)
		got := "missing"
		if ok {
			got = kindOf(v)
		}
		if got != c.want {
			t.Errorf("Lookup(%s) = %s, want %s", c.path, got, c.want)
		}
	}
}

// FuzzItemsPath fuzzes the json-items path: parsing any string, reading
// its canonical form back, and extracting items from any body with it
// never panics, and a path reads back equal.
func FuzzItemsPath(f *testing.F) {
	for _, s := range []struct{ path, body string }{
		{"", `[{"id":1},{"id":2}]`},
		{"$.data.items", `{"data":{"items":[{"id":"a"}]}}`},
		{"results[0].rows", `{"results":[{"rows":[{"id":1,"v":2}]}]}`},
		{`$['odd.key']`, `{"odd.key":[{"id":true}]}`},
		{"$..x", `[]`},
		{"[1]", `[[], [{"id":null}, {"id":{}}]]`},
		{`$['a\'b']["c"]`, `{"a'b":{"c":[1,2,3]}}`},
	} {
		f.Add(s.path, s.body)
	}
	f.Fuzz(func(t *testing.T, path, body string) {
		p, err := ParsePath(path)
		if err != nil {
			return
		}
		back, err := ParsePath(p.String())
		if err != nil {
			t.Fatalf("ParsePath(%q) = %s, which does not parse: %v", path, p, err)
		}
		if !reflect.DeepEqual(back, p) && !(len(back) == 0 && len(p) == 0) {
			t.Fatalf("ParsePath(%q) = %#v; its form %s reads back as %#v", path, p, p, back)
		}
		id, _ := ParsePath("id")
		items, skipped, err := readItems([]byte(body), p, id, nil)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, it := range items {
			if it.id == "" || seen[it.id] {
				t.Fatalf("items of %q at %s: empty or repeated id %q", body, p, it.id)
			}
			seen[it.id] = true
			again, err := decodeJSON(it.data)
			if err != nil {
				t.Fatalf("item %q: its data %s is not JSON: %v", it.id, it.data, err)
			}
			if canon, _ := canonicalJSON(again); string(canon) != string(it.data) {
				t.Fatalf("item %q: data %s is not canonical (%s)", it.id, it.data, canon)
			}
		}
		_ = skipped
	})
}
