package main

import "encoding"

// textValue is a flag value that reads and writes itself as text, such as
// client.Transport and client.From, which refuse unknown names.
type textValue interface {
	encoding.TextMarshaler
	encoding.TextUnmarshaler
}

// textFlag shows a textValue as a string flag in help (pflag's TextVar
// shows no type).
type textFlag struct{ v textValue }

func (f textFlag) Set(s string) error { return f.v.UnmarshalText([]byte(s)) }
func (f textFlag) Type() string       { return "string" }
func (f textFlag) String() string {
	b, _ := f.v.MarshalText()
	return string(b)
}
