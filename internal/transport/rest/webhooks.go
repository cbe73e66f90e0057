package rest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/reason"
	"github.com/heraldhq/herald/internal/webhook"
	"github.com/heraldhq/herald/internal/wire"
)

// The webhook endpoints (docs/webhooks.md), each for callers allowed the
// admin action; a PUT also needs the consume action on each of the
// subscription's topics, which it consumes on the caller's word:
//
//	GET    /v1/webhooks                every subscription, with its status
//	GET    /v1/webhooks/{name}         one subscription
//	PUT    /v1/webhooks/{name}         create it (201) or change it (200)
//	DELETE /v1/webhooks/{name}         delete it (204)
//	GET    /v1/webhooks/{name}/log     its last attempts, the newest first
//	POST   /v1/webhooks/{name}/test    send a test event now; the attempt
//	POST   /v1/webhooks/{name}/replay  send a range again {from, until, limit} (202)
//
// Secrets are shown as webhook.Redacted, except a generated one in the
// answer to the PUT that made it; a PUT that sends a secret as
// webhook.Redacted keeps the stored one at its place.

// maxWebhookBody bounds a PUT's or a replay's body.
const maxWebhookBody = 64 << 10

// registerWebhooks adds the webhook endpoints to mux.
func (h *Handler) registerWebhooks(mux *http.ServeMux) {
	mux.HandleFunc("/v1/webhooks", h.methods(map[string]http.HandlerFunc{http.MethodGet: h.listWebhooks}))
	mux.HandleFunc("/v1/webhooks/{name}", h.methods(map[string]http.HandlerFunc{
		http.MethodGet:    h.getWebhook,
		http.MethodPut:    h.putWebhook,
		http.MethodDelete: h.deleteWebhook,
	}))
	mux.HandleFunc("/v1/webhooks/{name}/log", h.methods(map[string]http.HandlerFunc{http.MethodGet: h.webhookLog}))
	mux.HandleFunc("/v1/webhooks/{name}/test", h.methods(map[string]http.HandlerFunc{http.MethodPost: h.testWebhook}))
	mux.HandleFunc("/v1/webhooks/{name}/replay", h.methods(map[string]http.HandlerFunc{http.MethodPost: h.replayWebhook}))
}

// webhooks returns the webhook manager once the caller may administer, or
// writes why not and returns nil.
func (h *Handler) webhooks(w http.ResponseWriter, r *http.Request) *webhook.Manager {
	if err := h.hub.Allow(r.Context(), hub.ActionAdmin, ""); err != nil {
		wire.WriteError(w, err)
		return nil
	}
	if h.opts.Webhooks == nil {
		wire.WriteErrorCode(w, reason.Unavailable, "webhooks are not available: "+webhook.ErrUnsupported.Error())
		return nil
	}
	return h.opts.Webhooks
}

// writeAnswer answers v as JSON with status.
func writeAnswer(w http.ResponseWriter, status int, v any) {
	b, err := marshalJSON(v)
	if err != nil {
		wire.WriteError(w, err)
		return
	}
	writeJSON(w, status, b)
}

// readWebhookBody reads a small JSON body, answering the error itself.
func readWebhookBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := readAll(http.MaxBytesReader(w, r.Body, maxWebhookBody), r.ContentLength, maxWebhookBody)
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		wire.WriteError(w, fmt.Errorf("%w: the body is over %d bytes", hub.ErrTooLarge, mbe.Limit))
		return nil, false
	case err != nil:
		wire.WriteError(w, badRequest("reading the body: %v", err))
		return nil, false
	}
	return body, true
}

// listWebhooks handles GET /v1/webhooks.
func (h *Handler) listWebhooks(w http.ResponseWriter, r *http.Request) {
	m := h.webhooks(w, r)
	if m == nil {
		return
	}
	list := m.List()
	if list == nil {
		list = []webhook.Info{}
	}
	writeAnswer(w, http.StatusOK, struct {
		Webhooks []webhook.Info `json:"webhooks"`
	}{list})
}

// getWebhook handles GET /v1/webhooks/{name}.
func (h *Handler) getWebhook(w http.ResponseWriter, r *http.Request) {
	m := h.webhooks(w, r)
	if m == nil {
		return
	}
	in, err := m.Get(r.PathValue("name"))
	if err != nil {
		wire.WriteError(w, err)
		return
	}
	writeAnswer(w, http.StatusOK, in)
}

// putWebhook handles PUT /v1/webhooks/{name}: 201 with the subscription
// when it was created, 200 when changed (or already so).
func (h *Handler) putWebhook(w http.ResponseWriter, r *http.Request) {
	m := h.webhooks(w, r)
	if m == nil {
		return
	}
	name := r.PathValue("name")
	body, ok := readWebhookBody(w, r)
	if !ok {
		return
	}
	var cfg webhook.Config
	if err := cfg.UnmarshalJSON(body); err != nil {
		wire.WriteError(w, err)
		return
	}
	if cfg.Name != "" && cfg.Name != name {
		wire.WriteError(w, badRequest("the body names webhook %q, the path %q; leave name out or make them equal", cfg.Name, name))
		return
	}
	cfg.Name = name
	for _, t := range cfg.Topics {
		if err := h.hub.Allow(r.Context(), hub.ActionConsume, t); err != nil {
			wire.WriteError(w, fmt.Errorf("a webhook consumes its topics for you: %w", err))
			return
		}
	}
	in, created, err := m.Put(r.Context(), cfg)
	if err != nil {
		wire.WriteError(w, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeAnswer(w, status, in)
}

// deleteWebhook handles DELETE /v1/webhooks/{name}: 204.
func (h *Handler) deleteWebhook(w http.ResponseWriter, r *http.Request) {
	m := h.webhooks(w, r)
	if m == nil {
		return
	}
	if err := m.Delete(r.Context(), r.PathValue("name")); err != nil {
		wire.WriteError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// webhookLog handles GET /v1/webhooks/{name}/log.
func (h *Handler) webhookLog(w http.ResponseWriter, r *http.Request) {
	m := h.webhooks(w, r)
	if m == nil {
		return
	}
	log, err := m.Log(r.PathValue("name"))
	if err != nil {
		wire.WriteError(w, err)
		return
	}
	writeAnswer(w, http.StatusOK, struct {
		Attempts []webhook.Attempt `json:"attempts"`
	}{log})
}

// testWebhook handles POST /v1/webhooks/{name}/test: 200 with the
// attempt, whatever its result.
func (h *Handler) testWebhook(w http.ResponseWriter, r *http.Request) {
	m := h.webhooks(w, r)
	if m == nil {
		return
	}
	a, err := m.Test(r.Context(), r.PathValue("name"))
	if err != nil {
		wire.WriteError(w, err)
		return
	}
	writeAnswer(w, http.StatusOK, a)
}

// replayWebhook handles POST /v1/webhooks/{name}/replay: 202 with the
// replay's start; its progress is in the subscription's status.
func (h *Handler) replayWebhook(w http.ResponseWriter, r *http.Request) {
	m := h.webhooks(w, r)
	if m == nil {
		return
	}
	body, ok := readWebhookBody(w, r)
	if !ok {
		return
	}
	var req struct {
		From  string `json:"from"`
		Until string `json:"until"`
		Limit int    `json:"limit"`
	}
	d := json.NewDecoder(bytes.NewReader(body))
	d.DisallowUnknownFields()
	if err := d.Decode(&req); err != nil {
		wire.WriteError(w, badRequest("a replay is {\"from\": cursor, time or \"earliest\", \"until\": time, \"limit\": n}: %v", err))
		return
	}
	rr := webhook.ReplayRequest{From: req.From, Limit: req.Limit}
	if req.Until != "" {
		t, err := time.Parse(time.RFC3339Nano, req.Until)
		if err != nil {
			wire.WriteError(w, badRequest("until: %q is not an RFC 3339 time", req.Until))
			return
		}
		rr.Until = t
	}
	rp, err := m.Replay(r.Context(), r.PathValue("name"), rr)
	if err != nil {
		wire.WriteError(w, err)
		return
	}
	writeAnswer(w, http.StatusAccepted, rp)
}
