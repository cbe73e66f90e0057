// Package web holds herald's browser side, embedded in the binary: the
// JavaScript client herald.js (client/, served at /v1/client/herald.js)
// and the dashboard (ui/, served at /ui/). Both are static files served as
// they are in the repository: no build step.
package web

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"
)

//go:embed client/herald.js client/herald.d.ts ui
var files embed.FS

// Client returns the bytes of herald.js.
func Client() []byte {
	b, err := files.ReadFile("client/herald.js")
	if err != nil {
		panic("web: herald.js is not embedded: " + err.Error())
	}
	return b
}

// file is one embedded file, ready to serve.
type file struct {
	body  []byte
	ctype string
	etag  string
}

// Static serves a fixed set of embedded files with a strong ETag (the
// SHA-256 of the content), conditional GETs and a Cache-Control header.
type Static struct {
	files   map[string]file // by the path served; static after NewStatic
	cache   string
	headers map[string]string
}

// NewStatic serves the embedded files below dir at prefix+name (dir
// "client", prefix "/v1/client/"; an index.html at prefix too), each with
// Cache-Control cache and the extra headers given.
func NewStatic(dir, prefix, cache string, headers map[string]string) *Static {
	s := &Static{files: map[string]file{}, cache: cache, headers: headers}
	err := fs.WalkDir(files, dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := files.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		ctype := mime.TypeByExtension(path.Ext(p))
		switch path.Ext(p) { // the system's MIME table may lack these or differ
		case ".js", ".mjs":
			ctype = "text/javascript; charset=utf-8"
		case ".ts":
			ctype = "text/plain; charset=utf-8"
		case ".html":
			ctype = "text/html; charset=utf-8"
		case ".css":
			ctype = "text/css; charset=utf-8"
		case ".svg":
			ctype = "image/svg+xml"
		}
		f := file{body: b, ctype: ctype, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
		name := strings.TrimPrefix(p, dir+"/")
		s.files[prefix+name] = f
		if name == "index.html" {
			s.files[prefix] = f
		}
		return nil
	})
	if err != nil {
		panic("web: embedded files: " + err.Error())
	}
	return s
}

// Has reports whether p is one of the files served.
func (s *Static) Has(p string) bool {
	_, ok := s.files[p]
	return ok
}

// ServeHTTP serves the file at the request's path (GET and HEAD); the
// caller routes only paths that Has.
func (s *Static) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f, ok := s.files[r.URL.Path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Length", strconv.Itoa(len(f.body)))
	h.Set("Content-Type", f.ctype)
	h.Set("Cache-Control", s.cache)
	h.Set("ETag", f.etag)
	h.Set("X-Content-Type-Options", "nosniff")
	for k, v := range s.headers {
		h.Set(k, v)
	}
	if match := r.Header.Get("If-None-Match"); match != "" && etagMatch(match, f.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Write(f.body)
}

// etagMatch reports whether an If-None-Match value names etag (or is *).
func etagMatch(header, etag string) bool {
	for _, v := range strings.Split(header, ",") {
		v = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), "W/"))
		if v == etag || v == "*" {
			return true
		}
	}
	return false
}
