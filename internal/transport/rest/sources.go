package rest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/reason"
	"github.com/heraldhq/herald/internal/source"
	"github.com/heraldhq/herald/internal/wire"
)

// The source endpoints (docs/sources.md), each for callers allowed the
// admin action; a PUT also needs the publish action on the source's
// topic, which the source publishes to on the caller's word:
//
//	GET    /v1/sources           every source, with its status
//	GET    /v1/sources/{name}    one source
//	PUT    /v1/sources/{name}    create a source (201) or change it (200)
//	DELETE /v1/sources/{name}    delete it (204)
//
// Header values other than a few harmless ones (Accept, User-Agent, …) are
// secrets: answers show them as source.Redacted, and a PUT that sends a
// header's value as source.Redacted keeps the stored one.

// maxSourceBody bounds a PUT's body: the settings, with a POST body of up
// to source.MaxRequestBody and headers.
const maxSourceBody = 512 << 10

// registerSources adds the source endpoints to mux.
func (h *Handler) registerSources(mux *http.ServeMux) {
	mux.HandleFunc("/v1/sources", h.methods(map[string]http.HandlerFunc{http.MethodGet: h.listSources}))
	mux.HandleFunc("/v1/sources/{name}", h.methods(map[string]http.HandlerFunc{
		http.MethodGet:    h.getSource,
		http.MethodPut:    h.putSource,
		http.MethodDelete: h.deleteSource,
	}))
}

// sources returns the source manager once the caller may administer, or
// writes why not and returns nil.
func (h *Handler) sources(w http.ResponseWriter, r *http.Request) *source.Manager {
	if err := h.hub.Allow(r.Context(), hub.ActionAdmin, ""); err != nil {
		wire.WriteError(w, err)
		return nil
	}
	if h.opts.Sources == nil {
		wire.WriteErrorCode(w, reason.Unavailable, "sources are not available: "+source.ErrUnsupported.Error())
		return nil
	}
	return h.opts.Sources
}

// writeSourceError answers err, a missing source with not_found.
func writeSourceError(w http.ResponseWriter, err error) {
	if errors.Is(err, source.ErrNotFound) {
		wire.WriteErrorCode(w, reason.NotFound, err.Error())
		return
	}
	wire.WriteError(w, err)
}

// writeSource answers one source with status.
func writeSource(w http.ResponseWriter, status int, in source.Info) {
	b, err := marshalJSON(in)
	if err != nil {
		wire.WriteError(w, err)
		return
	}
	writeJSON(w, status, b)
}

// marshalJSON encodes v without escaping <, > and & (source.Redacted has
// two of them), with a final newline.
func marshalJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	err := enc.Encode(v)
	return b.Bytes(), err
}

// listSources handles GET /v1/sources.
func (h *Handler) listSources(w http.ResponseWriter, r *http.Request) {
	m := h.sources(w, r)
	if m == nil {
		return
	}
	list := m.List()
	if list == nil {
		list = []source.Info{}
	}
	b, err := marshalJSON(struct {
		Sources []source.Info `json:"sources"`
	}{list})
	if err != nil {
		wire.WriteError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, b)
}

// getSource handles GET /v1/sources/{name}.
func (h *Handler) getSource(w http.ResponseWriter, r *http.Request) {
	m := h.sources(w, r)
	if m == nil {
		return
	}
	in, err := m.Get(r.PathValue("name"))
	if err != nil {
		writeSourceError(w, err)
		return
	}
	writeSource(w, http.StatusOK, in)
}

// putSource handles PUT /v1/sources/{name}: 201 with the source when it
// was created, 200 when changed (or already so).
func (h *Handler) putSource(w http.ResponseWriter, r *http.Request) {
	m := h.sources(w, r)
	if m == nil {
		return
	}
	name := r.PathValue("name")
	body, err := readAll(http.MaxBytesReader(w, r.Body, maxSourceBody), r.ContentLength, maxSourceBody)
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		wire.WriteError(w, fmt.Errorf("%w: the body is over %d bytes", hub.ErrTooLarge, mbe.Limit))
		return
	case err != nil:
		wire.WriteError(w, badRequest("reading the body: %v", err))
		return
	}
	var cfg source.Config
	if err := cfg.UnmarshalJSON(body); err != nil {
		wire.WriteError(w, err)
		return
	}
	if cfg.Name != "" && cfg.Name != name {
		wire.WriteError(w, badRequest("the body names source %q, the path %q; leave name out or make them equal", cfg.Name, name))
		return
	}
	cfg.Name = name
	if event.ValidateTopic(cfg.Topic) == nil {
		if err := h.hub.Allow(r.Context(), hub.ActionPublish, cfg.Topic); err != nil {
			wire.WriteError(w, fmt.Errorf("a source publishes to its topic for you: %w", err))
			return
		}
	}
	in, created, err := m.Put(r.Context(), cfg)
	if err != nil {
		writeSourceError(w, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeSource(w, status, in)
}

// deleteSource handles DELETE /v1/sources/{name}: 204.
func (h *Handler) deleteSource(w http.ResponseWriter, r *http.Request) {
	m := h.sources(w, r)
	if m == nil {
		return
	}
	if err := m.Delete(r.Context(), r.PathValue("name")); err != nil {
		writeSourceError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
