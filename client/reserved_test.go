package client_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/heraldhq/herald/internal/hub"
)

// TestReservedTypesDocumented checks that the reserved event types listed
// in WithType's doc comment are the server's (hub.ReservedTypes), so that
// the client's documentation cannot drift from what the server refuses.
func TestReservedTypesDocumented(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "publish.go", nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	var doc string
	for _, d := range f.Decls {
		if fn, ok := d.(*ast.FuncDecl); ok && fn.Name.Name == "WithType" {
			doc = fn.Doc.Text()
		}
	}
	var line string
	for l := range strings.Lines(doc) {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(l), "reserved:"); ok {
			line = rest
		}
	}
	var got []string
	for _, m := range regexp.MustCompile(`"([^"]*)"`).FindAllStringSubmatch(line, -1) {
		got = append(got, m[1])
	}
	want := slices.Clone(hub.ReservedTypes)
	slices.Sort(got)
	slices.Sort(want)
	if len(got) == 0 || !slices.Equal(got, want) {
		t.Errorf("WithType documents the reserved types %q; the server reserves %q", got, want)
	}
}
