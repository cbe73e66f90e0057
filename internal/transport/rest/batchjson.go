package rest

import (
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// The batch body is parsed by hand: encoding/json spent most of a batch
// publish scanning each body twice through reflection (see
// docs/benchmarks.md). The grammar accepted is JSON (RFC 8259) with the
// shape of docs/api.md's batch; it is stricter than encoding/json in two
// ways: field names match exactly (not case-insensitively), and strings
// must be valid UTF-8. Payloads given as "data" are validated and kept as
// sub-slices of the body, which the caller must not reuse.

// maxDepth bounds the nesting of a "data" value.
const maxDepth = 512

// batchParser walks one batch body.
type batchParser struct {
	b []byte
	i int
}

// decodeBatch parses a batch body into its events.
func decodeBatch(body []byte) ([]batchEvent, error) {
	p := &batchParser{b: body}
	var events []batchEvent
	sawEvents := false
	err := p.object(func(key string) error {
		if key != "events" {
			return fmt.Errorf("unknown field %q (a batch is {\"events\":[…]})", key)
		}
		sawEvents = true
		return p.array(func(n int) error {
			if n == 0 {
				events = make([]batchEvent, 0, 64)
			}
			var be batchEvent
			if err := p.event(&be); err != nil {
				return fmt.Errorf("event %d: %w", n, err)
			}
			events = append(events, be)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	p.ws()
	if p.i != len(p.b) {
		return nil, p.errorf("unexpected data after the batch object")
	}
	if !sawEvents {
		return nil, nil
	}
	return events, nil
}

func (p *batchParser) errorf(format string, a ...any) error {
	return fmt.Errorf("at byte %d: %s", p.i, fmt.Sprintf(format, a...))
}

func (p *batchParser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// peek skips white space and returns the next byte, or 0 at the end.
func (p *batchParser) peek() byte {
	p.ws()
	if p.i < len(p.b) {
		return p.b[p.i]
	}
	return 0
}

func (p *batchParser) expect(c byte) error {
	if p.peek() != c {
		if p.i >= len(p.b) {
			return p.errorf("expected %q, found the end of the body", c)
		}
		return p.errorf("expected %q, found %q", c, p.b[p.i])
	}
	p.i++
	return nil
}

// object parses {"key": value, …}, calling field for each key with the
// parser positioned at the value.
func (p *batchParser) object(field func(key string) error) error {
	return p.fields(true, field)
}

// fields is object; with named false the keys are only validated, not
// built, and field gets "" (for payloads, whose keys nobody reads).
func (p *batchParser) fields(named bool, field func(key string) error) error {
	if err := p.expect('{'); err != nil {
		return err
	}
	if p.peek() == '}' {
		p.i++
		return nil
	}
	for {
		if p.peek() != '"' {
			return p.errorf("expected a field name")
		}
		var key string
		var err error
		if named {
			key, err = p.str()
		} else {
			_, err = p.skipStr()
		}
		if err != nil {
			return err
		}
		if err := p.expect(':'); err != nil {
			return err
		}
		p.ws()
		if err := field(key); err != nil {
			return err
		}
		switch p.peek() {
		case ',':
			p.i++
		case '}':
			p.i++
			return nil
		default:
			return p.errorf("expected ',' or '}' in an object")
		}
	}
}

// array parses [value, …], calling elem with each element's index.
func (p *batchParser) array(elem func(n int) error) error {
	if err := p.expect('['); err != nil {
		return err
	}
	if p.peek() == ']' {
		p.i++
		return nil
	}
	for n := 0; ; n++ {
		p.ws()
		if err := elem(n); err != nil {
			return err
		}
		switch p.peek() {
		case ',':
			p.i++
		case ']':
			p.i++
			return nil
		default:
			return p.errorf("expected ',' or ']' in an array")
		}
	}
}

// event parses one event object of a batch.
func (p *batchParser) event(be *batchEvent) error {
	return p.object(func(key string) error {
		var err error
		switch key {
		case "topic":
			be.Topic, err = p.strField(key)
		case "type":
			be.Type, err = p.strField(key)
		case "key":
			be.Key, err = p.strField(key)
		case "text":
			var s string
			if s, err = p.strField(key); err == nil {
				be.Text = &s
			}
		case "data_base64":
			var s string
			if s, err = p.strField(key); err == nil {
				be.DataBase64 = &s
			}
		case "data":
			start := p.i
			if err = p.value(0); err == nil {
				be.Data = p.b[start:p.i]
			}
		case "headers":
			be.Headers = make(map[string]string)
			err = p.object(func(name string) error {
				v, err := p.strField("headers." + name)
				be.Headers[name] = v
				return err
			})
		default:
			err = fmt.Errorf("unknown field %q; an event has topic, data, text, data_base64, type, key, headers", key)
		}
		return err
	})
}

// strField parses a string value, naming the field if it is not one.
func (p *batchParser) strField(name string) (string, error) {
	if p.peek() != '"' {
		return "", p.errorf("%s must be a string", name)
	}
	return p.str()
}

// str parses a JSON string at p.i (which is at its opening quote).
func (p *batchParser) str() (string, error) {
	p.i++ // the opening quote
	start := p.i
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			raw := p.b[start:p.i]
			p.i++
			if !utf8.Valid(raw) {
				return "", p.errorf("a string is not valid UTF-8")
			}
			return string(raw), nil
		case c == '\\':
			return p.strSlow(start)
		case c < 0x20:
			return "", p.errorf("control character in a string")
		}
		p.i++
	}
	return "", p.errorf("unterminated string")
}

// strSlow finishes a string that has escapes, from its first byte.
func (p *batchParser) strSlow(start int) (string, error) {
	out := append([]byte(nil), p.b[start:p.i]...)
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			p.i++
			if !utf8.Valid(out) {
				return "", p.errorf("a string is not valid UTF-8")
			}
			return string(out), nil
		case c < 0x20:
			return "", p.errorf("control character in a string")
		case c != '\\':
			out = append(out, c)
			p.i++
			continue
		}
		if p.i+1 >= len(p.b) {
			break
		}
		esc := p.b[p.i+1]
		p.i += 2
		switch esc {
		case '"', '\\', '/':
			out = append(out, esc)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := p.hex4()
			if !ok {
				return "", p.errorf("bad \\u escape")
			}
			if utf16.IsSurrogate(r) {
				r2 := rune(-1)
				if p.i+1 < len(p.b) && p.b[p.i] == '\\' && p.b[p.i+1] == 'u' {
					p.i += 2
					if r2, ok = p.hex4(); !ok {
						return "", p.errorf("bad \\u escape")
					}
				}
				if r = utf16.DecodeRune(r, r2); r == utf8.RuneError {
					return "", p.errorf("unpaired surrogate in a \\u escape")
				}
			}
			out = utf8.AppendRune(out, r)
		default:
			return "", p.errorf("bad escape \\%c", esc)
		}
	}
	return "", p.errorf("unterminated string")
}

func (p *batchParser) hex4() (rune, bool) {
	if p.i+4 > len(p.b) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(p.b[p.i:p.i+4]), 16, 32)
	if err != nil {
		return 0, false
	}
	p.i += 4
	return rune(v), true
}

// value validates any JSON value at p.i and moves past it.
func (p *batchParser) value(depth int) error {
	if depth > maxDepth {
		return p.errorf("data is nested deeper than %d", maxDepth)
	}
	switch c := p.peek(); {
	case c == '{':
		return p.fields(false, func(string) error { return p.value(depth + 1) })
	case c == '[':
		return p.array(func(int) error { return p.value(depth + 1) })
	case c == '"':
		_, err := p.skipStr()
		return err
	case c == '-' || ('0' <= c && c <= '9'):
		return p.number()
	case c == 't':
		return p.literal("true")
	case c == 'f':
		return p.literal("false")
	case c == 'n':
		return p.literal("null")
	case c == 0 && p.i >= len(p.b):
		return p.errorf("expected a value, found the end of the body")
	default:
		return p.errorf("expected a value, found %q", c)
	}
}

// skipStr validates a string without building it.
func (p *batchParser) skipStr() (int, error) {
	p.i++
	start := p.i
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			if !utf8.Valid(p.b[start:p.i]) {
				return 0, p.errorf("a string is not valid UTF-8")
			}
			p.i++
			return start, nil
		case c == '\\':
			if p.i+1 >= len(p.b) {
				return 0, p.errorf("unterminated string")
			}
			switch p.b[p.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				p.i += 2
			case 'u':
				p.i += 2
				if _, ok := p.hex4(); !ok {
					return 0, p.errorf("bad \\u escape")
				}
			default:
				return 0, p.errorf("bad escape in a string")
			}
			continue
		case c < 0x20:
			return 0, p.errorf("control character in a string")
		}
		p.i++
	}
	return 0, p.errorf("unterminated string")
}

func (p *batchParser) literal(word string) error {
	if len(p.b)-p.i < len(word) || string(p.b[p.i:p.i+len(word)]) != word {
		return p.errorf("invalid literal")
	}
	p.i += len(word)
	return nil
}

// number validates a JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (p *batchParser) number() error {
	digits := func() int {
		n := 0
		for p.i < len(p.b) && '0' <= p.b[p.i] && p.b[p.i] <= '9' {
			p.i++
			n++
		}
		return n
	}
	if p.b[p.i] == '-' {
		p.i++
	}
	switch {
	case p.i < len(p.b) && p.b[p.i] == '0':
		p.i++
	case digits() == 0:
		return p.errorf("invalid number")
	}
	if p.i < len(p.b) && p.b[p.i] == '.' {
		p.i++
		if digits() == 0 {
			return p.errorf("invalid number")
		}
	}
	if p.i < len(p.b) && (p.b[p.i] == 'e' || p.b[p.i] == 'E') {
		p.i++
		if p.i < len(p.b) && (p.b[p.i] == '+' || p.b[p.i] == '-') {
			p.i++
		}
		if digits() == 0 {
			return p.errorf("invalid number")
		}
	}
	return nil
}
