package respapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/silence"
)

// Silences is the silence store the API manages (*silence.Store).
type Silences interface {
	Add(ctx context.Context, s silence.Silence) (silence.Silence, error)
	List(includeExpired bool) []silence.Silence
	Expire(ctx context.Context, id, by string, at time.Time) (silence.Silence, error)
}

const (
	silencesGet    = "GET /v1/silences"
	silencesPost   = "POST /v1/silences"
	silencesDelete = "DELETE /v1/silences/{id}"
)

// maxSilence bounds a silence added through the API; the store may bound
// it further (silence.Options.MaxDuration).
const maxSilence = 30 * 24 * time.Hour

// silenceBody is the body of POST /v1/silences.
type silenceBody struct {
	// Matchers in the text form of docs/silences.md: agent_id="a",kind=~"b.*".
	Matchers string `json:"matchers"`
	// Duration is how long from now, e.g. "2h".
	Duration string `json:"duration"`
	Comment  string `json:"comment"`
}

// SilencesResponse is the JSON answer to GET /v1/silences.
type SilencesResponse struct {
	Silences []silence.Silence `json:"silences"`
}

func (h *Handler) silenceAuth(w http.ResponseWriter, r *http.Request, rec *audit.Record) (*principal, bool) {
	tok, err := h.authenticate(r)
	if err != nil {
		h.unauthorized(w, r, *rec, err)
		return nil, false
	}
	rec.Actor.TokenName = tok.name
	if !tok.canSilence {
		h.refuse(w, r, *rec, http.StatusForbidden, "token "+tok.name+" may not manage silences")
		return nil, false
	}
	return tok, true
}

// readJSON reads the request's body (at most maxBody) and decodes it
// strictly into v; on failure it refuses the request with 400, audited as
// rec, and returns false.
func (h *Handler) readJSON(w http.ResponseWriter, r *http.Request, rec audit.Record, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.maxBody))
	if err != nil {
		h.refuse(w, r, rec, http.StatusBadRequest, "read body: "+err.Error())
		return false
	}
	if err := decodeStrict(body, v); err != nil {
		h.refuse(w, r, rec, http.StatusBadRequest, err.Error())
		return false
	}
	return true
}

// listSilences serves GET /v1/silences[?expired=1]. Reads are not audited
// (they change nothing); a refused one is.
func (h *Handler) listSilences(w http.ResponseWriter, r *http.Request) {
	rec := audit.Record{Actor: audit.Actor{Kind: audit.ActorAPI}, Action: "silence", Result: audit.ResultRefused}
	if _, ok := h.silenceAuth(w, r, &rec); !ok {
		return
	}
	ss := h.silences.List(r.URL.Query().Get("expired") == "1")
	if ss == nil {
		ss = []silence.Silence{}
	}
	writeJSON(w, http.StatusOK, SilencesResponse{Silences: ss})
}

// addSilence serves POST /v1/silences.
func (h *Handler) addSilence(w http.ResponseWriter, r *http.Request) {
	rec := audit.Record{Actor: audit.Actor{Kind: audit.ActorAPI}, Action: "silence", Result: audit.ResultRefused}
	tok, ok := h.silenceAuth(w, r, &rec)
	if !ok {
		return
	}
	var in silenceBody
	if !h.readJSON(w, r, rec, &in) {
		return
	}
	rec.Why = in.Comment
	ms, err := silence.ParseMatchers(in.Matchers)
	var d time.Duration
	if err == nil {
		d, err = time.ParseDuration(in.Duration)
		if err == nil && (d <= 0 || d > maxSilence) {
			err = fmt.Errorf("duration: must be in (0, %s], got %s", maxSilence, d)
		}
	}
	if err != nil {
		h.refuse(w, r, rec, http.StatusBadRequest, err.Error())
		return
	}
	now := h.now()
	s, err := h.silences.Add(r.Context(), silence.Silence{Matchers: ms, StartsAt: now, EndsAt: now.Add(d),
		CreatedBy: "api:" + tok.name, Comment: in.Comment, Reason: silence.ReasonManual})
	if errors.Is(err, silence.ErrInvalid) {
		h.refuse(w, r, rec, http.StatusBadRequest, err.Error())
		return
	}
	if err != nil {
		h.fail(w, r, rec, "add silence", err)
		return
	}
	rec.Result, rec.Detail = audit.ResultOK, fmt.Sprintf("added silence %s: %s until %s", s.ID, silence.FormatMatchers(s.Matchers), s.EndsAt.UTC().Format(time.RFC3339))
	h.record(r.Context(), rec)
	writeJSON(w, http.StatusOK, s)
}

// expireSilence serves DELETE /v1/silences/{id}.
func (h *Handler) expireSilence(w http.ResponseWriter, r *http.Request) {
	rec := audit.Record{Actor: audit.Actor{Kind: audit.ActorAPI}, Action: "silence", Result: audit.ResultRefused}
	tok, ok := h.silenceAuth(w, r, &rec)
	if !ok {
		return
	}
	id := r.PathValue("id")
	s, err := h.silences.Expire(r.Context(), id, "api:"+tok.name, h.now())
	if errors.Is(err, silence.ErrNotFound) {
		h.refuse(w, r, rec, http.StatusNotFound, fmt.Sprintf("no silence %.80q", id))
		return
	}
	if err != nil {
		h.fail(w, r, rec, "expire silence", err)
		return
	}
	rec.Result, rec.Detail = audit.ResultOK, "expired silence "+s.ID
	h.record(r.Context(), rec)
	writeJSON(w, http.StatusOK, s)
}
