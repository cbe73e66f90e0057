package rest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/heraldhq/herald/internal/group"
	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/reason"
	"github.com/heraldhq/herald/internal/wire"
)

// The consumer group endpoints (docs/groups.md, docs/api.md). Managing
// groups needs the admin action; fetching and answering need the consume
// action on each of the group's topics (the group package checks it):
//
//	GET    /v1/groups                        every group, with its state
//	GET    /v1/groups/{group}                one group
//	PUT    /v1/groups/{group}                create a group (201), or 200 when it exists with these settings
//	DELETE /v1/groups/{group}                delete it (204)
//	POST   /v1/groups/{group}/fetch          {member, limit, wait} → {messages: [...]}
//	POST   /v1/groups/{group}/ack            {member, ids: [...]} → {results: [...]}
//	POST   /v1/groups/{group}/nak            {member, id, delay} → 204
//	POST   /v1/groups/{group}/in_progress    {member, id} → {deadline}
//	POST   /v1/groups/{group}/term           {member, id, reason} → 204

// maxGroupBody bounds the body of a group request: settings, or an ack of
// group.MaxAckIDs ids.
const maxGroupBody = 1 << 20

// registerGroups adds the group endpoints to mux.
func (h *Handler) registerGroups(mux *http.ServeMux) {
	mux.HandleFunc("/v1/groups", h.methods(map[string]http.HandlerFunc{http.MethodGet: h.listGroups}))
	mux.HandleFunc("/v1/groups/{group}", h.methods(map[string]http.HandlerFunc{
		http.MethodGet:    h.getGroup,
		http.MethodPut:    h.putGroup,
		http.MethodDelete: h.deleteGroup,
	}))
	mux.HandleFunc("/v1/groups/{group}/fetch", h.methods(map[string]http.HandlerFunc{http.MethodPost: h.fetchGroup}))
	mux.HandleFunc("/v1/groups/{group}/ack", h.methods(map[string]http.HandlerFunc{http.MethodPost: h.ackGroup}))
	mux.HandleFunc("/v1/groups/{group}/nak", h.methods(map[string]http.HandlerFunc{http.MethodPost: h.nakGroup}))
	mux.HandleFunc("/v1/groups/{group}/in_progress", h.methods(map[string]http.HandlerFunc{http.MethodPost: h.inProgressGroup}))
	mux.HandleFunc("/v1/groups/{group}/term", h.methods(map[string]http.HandlerFunc{http.MethodPost: h.termGroup}))
}

// groups returns the group manager, or writes why there is none and
// returns nil. admin asks for the admin action first.
func (h *Handler) groups(w http.ResponseWriter, r *http.Request, admin bool) *group.Manager {
	if admin {
		if err := h.hub.Allow(r.Context(), hub.ActionAdmin, ""); err != nil {
			wire.WriteError(w, err)
			return nil
		}
	}
	if h.opts.Groups == nil {
		wire.WriteErrorCode(w, reason.Unavailable, "consumer groups are not available: "+group.ErrUnsupported.Error())
		return nil
	}
	return h.opts.Groups
}

// readGroupBody decodes the JSON body of r into v, refusing unknown keys.
// An empty body decodes as {}.
func readGroupBody(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := readAll(http.MaxBytesReader(w, r.Body, maxGroupBody), r.ContentLength, maxGroupBody)
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return fmt.Errorf("%w: the body is over %d bytes", hub.ErrTooLarge, mbe.Limit)
	case err != nil:
		return badRequest("reading the body: %v", err)
	case len(body) == 0:
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("the body: %v", err)
	}
	if dec.More() {
		return badRequest("the body has more than one JSON value")
	}
	return nil
}

// jsonDuration reads a duration given as a Go duration string ("30s") or
// a number of seconds.
type jsonDuration struct {
	d   time.Duration
	set bool
}

func (d *jsonDuration) UnmarshalJSON(b []byte) error {
	var s string
	if len(b) > 0 && b[0] == '"' {
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
	} else {
		s = string(b)
		if f, err := strconv.ParseFloat(s, 64); err == nil {
			if f < 0 {
				return errors.New("a duration must not be negative")
			}
			d.d, d.set = time.Duration(f*float64(time.Second)), true
			return nil
		}
	}
	v, err := ParseWait(s)
	if err != nil {
		return fmt.Errorf("duration %q: %v", s, err)
	}
	d.d, d.set = v, true
	return nil
}

// listGroups handles GET /v1/groups.
func (h *Handler) listGroups(w http.ResponseWriter, r *http.Request) {
	m := h.groups(w, r, true)
	if m == nil {
		return
	}
	list, err := m.List(r.Context())
	if err != nil {
		wire.WriteError(w, err)
		return
	}
	if list == nil {
		list = []group.Info{}
	}
	writeValue(w, http.StatusOK, struct {
		Groups []group.Info `json:"groups"`
	}{list})
}

// getGroup handles GET /v1/groups/{group}.
func (h *Handler) getGroup(w http.ResponseWriter, r *http.Request) {
	m := h.groups(w, r, true)
	if m == nil {
		return
	}
	in, err := m.Get(r.Context(), r.PathValue("group"))
	if err != nil {
		wire.WriteError(w, err)
		return
	}
	writeValue(w, http.StatusOK, in)
}

// putGroup handles PUT /v1/groups/{group}: 201 with the group when it was
// created, 200 when it exists with these settings, 409 with others.
func (h *Handler) putGroup(w http.ResponseWriter, r *http.Request) {
	m := h.groups(w, r, true)
	if m == nil {
		return
	}
	name := r.PathValue("group")
	body, err := readAll(http.MaxBytesReader(w, r.Body, maxGroupBody), r.ContentLength, maxGroupBody)
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		wire.WriteError(w, fmt.Errorf("%w: the body is over %d bytes", hub.ErrTooLarge, mbe.Limit))
		return
	case err != nil:
		wire.WriteError(w, badRequest("reading the body: %v", err))
		return
	}
	var cfg group.Config
	if err := cfg.UnmarshalJSON(body); err != nil {
		wire.WriteError(w, err)
		return
	}
	if cfg.Name != "" && cfg.Name != name {
		wire.WriteError(w, badRequest("the body names group %q, the path %q; leave name out or make them equal", cfg.Name, name))
		return
	}
	cfg.Name = name
	in, created, err := m.Put(r.Context(), cfg)
	if err != nil {
		wire.WriteError(w, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeValue(w, status, in)
}

// deleteGroup handles DELETE /v1/groups/{group}: 204.
func (h *Handler) deleteGroup(w http.ResponseWriter, r *http.Request) {
	m := h.groups(w, r, true)
	if m == nil {
		return
	}
	if err := m.Delete(r.Context(), r.PathValue("group")); err != nil {
		wire.WriteError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// fetchGroup handles POST /v1/groups/{group}/fetch.
func (h *Handler) fetchGroup(w http.ResponseWriter, r *http.Request) {
	m := h.groups(w, r, false)
	if m == nil {
		return
	}
	var req struct {
		Member string       `json:"member"`
		Limit  *int         `json:"limit"`
		Wait   jsonDuration `json:"wait"`
	}
	if err := readGroupBody(w, r, &req); err != nil {
		wire.WriteError(w, err)
		return
	}
	limit := group.DefaultFetch
	if req.Limit != nil {
		if *req.Limit < 1 || *req.Limit > group.MaxFetch {
			wire.WriteError(w, badRequest("limit %d: use a whole number from 1 to %d, or leave limit out for the default (%d)", *req.Limit, group.MaxFetch, group.DefaultFetch))
			return
		}
		limit = *req.Limit
	}
	if req.Wait.d > h.opts.MaxWait {
		wire.WriteError(w, badRequest("wait %v is over the maximum %v (pull.max_wait)", req.Wait.d, h.opts.MaxWait))
		return
	}
	msgs, err := m.Fetch(r.Context(), r.PathValue("group"), req.Member, limit, req.Wait.d)
	if err != nil {
		wire.WriteError(w, err)
		return
	}
	size := 32
	for _, msg := range msgs {
		size += len(msg.Event.Data) + 256
	}
	b := make([]byte, 0, size)
	b = append(b, `{"messages":[`...)
	for i, msg := range msgs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendMessage(b, &msg)
	}
	b = append(b, "]}\n"...)
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, b)
}

// appendMessage appends one delivery's JSON: its id, delivery count,
// deadline, and the event as pull writes it.
func appendMessage(b []byte, msg *group.Message) []byte {
	b = append(b, `{"id":`...)
	b = wire.AppendString(b, msg.ID)
	b = append(b, `,"delivery":`...)
	b = strconv.AppendInt(b, int64(msg.Delivery), 10)
	b = append(b, `,"deadline":"`...)
	b = msg.Deadline.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","event":`...)
	b = append(b, wire.EventJSON(msg.Event)...)
	return append(b, '}')
}

// answer is the body of nak, in_progress and term.
type answer struct {
	Member string       `json:"member"`
	ID     string       `json:"id"`
	Delay  jsonDuration `json:"delay"`
	Reason string       `json:"reason"`
}

// readAnswer reads an answer's body and checks it has an id.
func readAnswer(w http.ResponseWriter, r *http.Request) (answer, bool) {
	var a answer
	if err := readGroupBody(w, r, &a); err != nil {
		wire.WriteError(w, err)
		return a, false
	}
	if a.ID == "" {
		wire.WriteError(w, badRequest("give the delivery's id: {\"id\": \"…\"}"))
		return a, false
	}
	return a, true
}

// ackGroup handles POST /v1/groups/{group}/ack: 200 with one result per
// id, in order: {"id": …} when acked, with "error" when not.
func (h *Handler) ackGroup(w http.ResponseWriter, r *http.Request) {
	m := h.groups(w, r, false)
	if m == nil {
		return
	}
	var req struct {
		Member string   `json:"member"`
		IDs    []string `json:"ids"`
	}
	if err := readGroupBody(w, r, &req); err != nil {
		wire.WriteError(w, err)
		return
	}
	results, err := m.Ack(r.Context(), r.PathValue("group"), req.Member, req.IDs)
	if err != nil {
		wire.WriteError(w, err)
		return
	}
	b := make([]byte, 0, 32+len(req.IDs)*40)
	b = append(b, `{"acked":`...)
	acked := 0
	for _, err := range results {
		if err == nil {
			acked++
		}
	}
	b = strconv.AppendInt(b, int64(acked), 10)
	b = append(b, `,"results":[`...)
	for i, err := range results {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"id":`...)
		b = wire.AppendString(b, req.IDs[i])
		if err != nil {
			rs, msg := wire.Describe(err)
			b = append(b, `,"error":{"code":"`...)
			b = append(b, rs.Code...)
			b = append(b, `","message":`...)
			b = wire.AppendString(b, msg)
			b = append(b, '}')
		}
		b = append(b, '}')
	}
	b = append(b, "]}\n"...)
	writeJSON(w, http.StatusOK, b)
}

// nakGroup handles POST /v1/groups/{group}/nak: 204.
func (h *Handler) nakGroup(w http.ResponseWriter, r *http.Request) {
	m := h.groups(w, r, false)
	if m == nil {
		return
	}
	a, ok := readAnswer(w, r)
	if !ok {
		return
	}
	if err := m.Nak(r.Context(), r.PathValue("group"), a.Member, a.ID, a.Delay.d); err != nil {
		wire.WriteError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// inProgressGroup handles POST /v1/groups/{group}/in_progress: 200 with
// the new deadline.
func (h *Handler) inProgressGroup(w http.ResponseWriter, r *http.Request) {
	m := h.groups(w, r, false)
	if m == nil {
		return
	}
	a, ok := readAnswer(w, r)
	if !ok {
		return
	}
	deadline, err := m.InProgress(r.Context(), r.PathValue("group"), a.Member, a.ID)
	if err != nil {
		wire.WriteError(w, err)
		return
	}
	b := append([]byte(`{"deadline":"`), deadline.UTC().AppendFormat(nil, time.RFC3339Nano)...)
	writeJSON(w, http.StatusOK, append(b, "\"}\n"...))
}

// termGroup handles POST /v1/groups/{group}/term: 204.
func (h *Handler) termGroup(w http.ResponseWriter, r *http.Request) {
	m := h.groups(w, r, false)
	if m == nil {
		return
	}
	a, ok := readAnswer(w, r)
	if !ok {
		return
	}
	if err := m.Term(r.Context(), r.PathValue("group"), a.Member, a.ID, a.Reason); err != nil {
		wire.WriteError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// writeValue answers v as JSON with status.
func writeValue(w http.ResponseWriter, status int, v any) {
	b, err := marshalJSON(v)
	if err != nil {
		wire.WriteError(w, err)
		return
	}
	writeJSON(w, status, b)
}
