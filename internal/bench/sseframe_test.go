package bench

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// frame is a comparable copy of a Frame.
type frame struct {
	id, event, data string
	hasID, hasData  bool
}

func readAllFrames(t *testing.T, r io.Reader, bufSize int) ([]frame, error) {
	t.Helper()
	fr := NewFrameReader(bufio.NewReaderSize(r, bufSize))
	var out []frame
	for {
		f, err := fr.Next()
		if err != nil {
			return out, err
		}
		out = append(out, frame{string(f.ID), string(f.Event), string(f.Data), f.HasID, f.HasData})
	}
}

func TestFrameReader(t *testing.T) {
	long := strings.Repeat("y", 5000)
	tests := []struct {
		name string
		in   string
		want []frame
	}{
		{
			name: "herald stream start",
			in:   "retry: 2000\n\nid: AQxj\n\n",
			want: []frame{{id: "AQxj", hasID: true}},
		},
		{
			name: "event with id, type and data",
			in:   "id: c1\nevent: message\ndata: {\"seq\":1}\n\n",
			want: []frame{{id: "c1", event: "message", data: `{"seq":1}`, hasID: true, hasData: true}},
		},
		{
			name: "multi-line data joins with LF",
			in:   "data: a\ndata: b\ndata:\ndata: c\n\n",
			want: []frame{{data: "a\nb\n\nc", hasData: true}},
		},
		{
			name: "CRLF line endings",
			in:   "id: x\r\ndata: hello\r\n\r\n",
			want: []frame{{id: "x", data: "hello", hasID: true, hasData: true}},
		},
		{
			name: "no space after colon, only one space dropped",
			in:   "data:tight\n\ndata:  two\n\n",
			want: []frame{{data: "tight", hasData: true}, {data: " two", hasData: true}},
		},
		{
			name: "comments and retry alone are skipped",
			in:   ": hb\n\nretry: 10\n\n: another\ndata: x\n\n",
			want: []frame{{data: "x", hasData: true}},
		},
		{
			name: "field without colon has empty value",
			in:   "data\n\n",
			want: []frame{{hasData: true}},
		},
		{
			name: "unknown fields ignored",
			in:   "foo: bar\ndata: x\n\n",
			want: []frame{{data: "x", hasData: true}},
		},
		{
			name: "id with NUL ignored",
			in:   "id: a\x00b\ndata: x\n\n",
			want: []frame{{data: "x", hasData: true}},
		},
		{
			name: "gap and error events",
			in:   "event: gap\nid: g\ndata: {\"topic\":\"a\"}\n\nevent: error\ndata: {\"code\":\"slow_consumer\"}\n\n",
			want: []frame{
				{id: "g", event: "gap", data: `{"topic":"a"}`, hasID: true, hasData: true},
				{event: "error", data: `{"code":"slow_consumer"}`, hasData: true},
			},
		},
		{
			name: "line longer than the buffer",
			in:   "data: " + long + "\n\n",
			want: []frame{{data: long, hasData: true}},
		},
		{
			name: "unterminated frame at EOF is dropped",
			in:   "data: one\n\ndata: two\n",
			want: []frame{{data: "one", hasData: true}},
		},
	}
	readers := []struct {
		name string
		wrap func(io.Reader) io.Reader
	}{
		{"whole", func(r io.Reader) io.Reader { return r }},
		{"one byte", iotest.OneByteReader},
		{"half", iotest.HalfReader},
		{"data err", iotest.DataErrReader},
	}
	for _, tt := range tests {
		for _, rd := range readers {
			t.Run(tt.name+"/"+rd.name, func(t *testing.T) {
				got, err := readAllFrames(t, rd.wrap(strings.NewReader(tt.in)), 64)
				if !errors.Is(err, io.EOF) {
					t.Fatalf("ended with %v, want io.EOF", err)
				}
				if len(got) != len(tt.want) {
					t.Fatalf("got %d frames %+v, want %d %+v", len(got), got, len(tt.want), tt.want)
				}
				for i := range got {
					if got[i] != tt.want[i] {
						t.Errorf("frame %d = %+v, want %+v", i, got[i], tt.want[i])
					}
				}
			})
		}
	}
}

func TestFrameReaderLineTooLong(t *testing.T) {
	in := io.MultiReader(strings.NewReader("data: "), strings.NewReader(strings.Repeat("z", maxLineBytes+10)), strings.NewReader("\n\n"))
	_, err := readAllFrames(t, in, 4096)
	if !errors.Is(err, errLineTooLong) {
		t.Fatalf("got %v, want errLineTooLong", err)
	}
}

func TestFrameReaderNoAllocs(t *testing.T) {
	one := "id: AQxjAAAAAAAAAAE\ndata: {\"run\":1,\"seq\":2,\"t\":3,\"pad\":\"xxxxxxxxxxxxxxxxxxxxxxx\"}\n\n: hb\n\n"
	src := &repeatReader{chunk: []byte(one)}
	fr := NewFrameReader(bufio.NewReaderSize(src, 4096))
	for range 10 { // let the buffers grow
		if _, err := fr.Next(); err != nil {
			t.Fatal(err)
		}
	}
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := fr.Next(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Next allocates %v times per frame, want 0", allocs)
	}
}

// repeatReader returns chunk over and over.
type repeatReader struct {
	chunk []byte
	off   int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.chunk[r.off:])
		n += c
		r.off = (r.off + c) % len(r.chunk)
	}
	return n, nil
}

func BenchmarkFrameReader(b *testing.B) {
	one := "id: AQxjAAAAAAAAAAE\ndata: " + string(appendPayload(nil, 1, 0, 2, 3, 128)) + "\n\n"
	fr := NewFrameReader(bufio.NewReaderSize(&repeatReader{chunk: []byte(one)}, 4096))
	b.SetBytes(int64(len(one)))
	b.ReportAllocs()
	for b.Loop() {
		f, err := fr.Next()
		if err != nil {
			b.Fatal(err)
		}
		if _, ok := parsePayload(f.Data); !ok {
			b.Fatal("bad payload")
		}
	}
}

func FuzzFrameReader(f *testing.F) {
	f.Add("retry: 2000\n\nid: AQxj\n\n")
	f.Add("id: c1\r\nevent: message\r\ndata: a\r\ndata: b\r\n\r\n")
	f.Add(": hb\n\ndata\n\n")
	f.Fuzz(func(t *testing.T, in string) {
		fr := NewFrameReader(bufio.NewReaderSize(strings.NewReader(in), 16))
		for range len(in) + 1 {
			if _, err := fr.Next(); err != nil {
				return
			}
		}
		t.Fatal("more frames than input bytes")
	})
}
