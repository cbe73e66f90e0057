package source

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// A Path names a value inside a JSON document, in the subset of JSONPath
// that names one value: an optional "$", then fields and array indexes.
//
//	""  or "$"          the document itself
//	data.items          the field items of the field data
//	$.data.items        the same
//	results[0].rows     the field rows of the first element of results
//	$['odd.key']["x"]   fields whose names need quoting
//
// Wildcards, slices, filters and recursive descent are not supported: a
// source names one array, and an item one id.
type Path []step

// step is one field name or one array index.
type step struct {
	name  string
	index int // used when isIndex
	isIdx bool
}

// maxPathSteps bounds a path's length.
const maxPathSteps = 32

var errPath = errors.New("bad path")

// ParsePath reads a path. Its errors say where the path is wrong.
func ParsePath(s string) (Path, error) {
	bad := func(i int, format string, a ...any) (Path, error) {
		return nil, fmt.Errorf("%w %q at byte %d: %s", errPath, s, i, fmt.Sprintf(format, a...))
	}
	var p Path
	i := 0
	if strings.HasPrefix(s, "$") {
		i = 1
	} else if s != "" && s[0] != '[' {
		// a bare first field: "data.items"
		j := fieldEnd(s, 0)
		if j == 0 {
			return bad(0, "expected a field name")
		}
		p = append(p, step{name: s[:j]})
		i = j
	}
	for i < len(s) {
		if len(p) >= maxPathSteps {
			return bad(i, "more than %d steps", maxPathSteps)
		}
		switch s[i] {
		case '.':
			if i+1 < len(s) && (s[i+1] == '.' || s[i+1] == '*') {
				return bad(i, "wildcards and recursive descent are not supported; name one array")
			}
			j := fieldEnd(s, i+1)
			if j == i+1 {
				return bad(i+1, "expected a field name after '.'")
			}
			p = append(p, step{name: s[i+1 : j]})
			i = j
		case '[':
			if i+1 >= len(s) {
				return bad(i, "unclosed '['")
			}
			switch c := s[i+1]; {
			case c == '\'' || c == '"':
				name, n, err := quoted(s[i+1:])
				if err != nil {
					return bad(i+1, "%v", err)
				}
				j := i + 1 + n
				if j >= len(s) || s[j] != ']' {
					return bad(j, "expected ']' after the quoted name")
				}
				p = append(p, step{name: name})
				i = j + 1
			case '0' <= c && c <= '9':
				j := i + 1
				for j < len(s) && '0' <= s[j] && s[j] <= '9' {
					j++
				}
				if j >= len(s) || s[j] != ']' {
					return bad(j, "expected ']' after the index")
				}
				n, err := strconv.Atoi(s[i+1 : j])
				if err != nil || n > 1<<20 {
					return bad(i+1, "index %s is too large", s[i+1:j])
				}
				p = append(p, step{index: n, isIdx: true})
				i = j + 1
			default:
				return bad(i+1, "expected an index or a quoted name in brackets (wildcards, slices and filters are not supported)")
			}
		default:
			return bad(i, "expected '.' or '['")
		}
	}
	return p, nil
}

// fieldEnd returns the end of a bare field name starting at i: up to the
// next '.' or '['.
func fieldEnd(s string, i int) int {
	for i < len(s) && s[i] != '.' && s[i] != '[' && s[i] != ']' && s[i] != '\'' && s[i] != '"' && s[i] != '*' && s[i] != '$' {
		i++
	}
	return i
}

// bare reports whether a field name is written without quotes in a
// path's canonical form: letters, digits, '_' and '-'.
func bare(name string) bool {
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return name != ""
}

// quoted reads a quoted name at the start of s (quote ' or "), with
// backslash escaping the quote and itself, and returns it and the bytes
// it took.
func quoted(s string) (string, int, error) {
	q := s[0]
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			if i+1 >= len(s) || (s[i+1] != q && s[i+1] != '\\') {
				return "", 0, fmt.Errorf(`a backslash in a quoted name escapes only the quote or a backslash`)
			}
			b.WriteByte(s[i+1])
			i++
		case q:
			return b.String(), i + 1, nil
		default:
			b.WriteByte(c)
		}
	}
	return "", 0, fmt.Errorf("unclosed quote")
}

// String returns the path in its canonical form, which ParsePath reads
// back to an equal path.
func (p Path) String() string {
	var b strings.Builder
	b.WriteByte('$')
	for _, st := range p {
		switch {
		case st.isIdx:
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(st.index))
			b.WriteByte(']')
		case bare(st.name):
			b.WriteByte('.')
			b.WriteString(st.name)
		default:
			b.WriteString("['")
			b.WriteString(strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(st.name))
			b.WriteString("']")
		}
	}
	return b.String()
}

// Lookup returns the value p names in v, a document decoded by
// encoding/json (maps, slices, strings, json.Number, bools, nil), and
// false when a step finds nothing: a missing field, an index past the
// end, a step into a value of another kind.
func (p Path) Lookup(v any) (any, bool) {
	for _, st := range p {
		switch x := v.(type) {
		case map[string]any:
			if st.isIdx {
				return nil, false
			}
			var ok bool
			if v, ok = x[st.name]; !ok {
				return nil, false
			}
		case []any:
			if !st.isIdx || st.index >= len(x) {
				return nil, false
			}
			v = x[st.index]
		default:
			return nil, false
		}
	}
	return v, true
}
