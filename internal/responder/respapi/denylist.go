package respapi

import (
	"context"
	"net/http"
	"strings"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/revoke"
)

// Denylist is what GET /v1/denylist serves: the deny-list as text, one
// credential id per line, and its strong ETag. Safe for concurrent use.
type Denylist interface {
	DenylistText() (body []byte, etag string, err error)
}

// KillSwitch is the kill switch that /v1/kill-switch reads and sets
// (revoke.TableSwitch in the distributed mode).
type KillSwitch interface {
	State() revoke.SwitchState
	Set(ctx context.Context, st revoke.SwitchState) error
	// Engaged says whether any of the switches (the file too) is engaged.
	Engaged() bool
}

const (
	denylistGet   = "GET /v1/denylist"
	killSwitchGet = "GET /v1/kill-switch"
	killSwitchPut = "PUT /v1/kill-switch"
)

// serveDenylist serves GET /v1/denylist to tokens with can_read_denylist:
// a gateway polls it, and with the ETag of its copy in If-None-Match it
// gets 304 and no body while the list is unchanged. Reads are not audited
// (a gateway polls every few seconds); refusals are.
func (h *Handler) serveDenylist(w http.ResponseWriter, r *http.Request) {
	rec := audit.Record{Actor: audit.Actor{Kind: audit.ActorAPI}, Action: "denylist_read", Result: audit.ResultRefused}
	tok, err := h.authenticate(r)
	if err != nil {
		h.unauthorized(w, r, rec, err)
		return
	}
	rec.Actor.TokenName = tok.name
	if !tok.canReadDenylist {
		h.refuse(w, r, rec, http.StatusForbidden, "token "+tok.name+" may not read the deny-list")
		return
	}
	body, etag, err := h.denylist.DenylistText()
	if err != nil {
		h.fail(w, r, rec, "read deny-list", err)
		return
	}
	// no-cache, not the API's no-store: a cache may keep the list but
	// must ask again (with If-None-Match) before using it.
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("ETag", etag)
	if noneMatch(r.Header.Values("If-None-Match"), etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// noneMatch reports whether an If-None-Match header (its values, each a
// comma-separated list) matches etag: "*", or one of the tags under the
// weak comparison RFC 9110 asks for If-None-Match (a W/ prefix ignored).
func noneMatch(values []string, etag string) bool {
	for _, v := range values {
		for t := range strings.SplitSeq(v, ",") {
			t = strings.TrimSpace(t)
			if t == "*" || strings.TrimPrefix(t, "W/") == etag {
				return true
			}
		}
	}
	return false
}

// SwitchResponse is the answer of /v1/kill-switch: the table's record and
// whether any switch (that record or responder.kill_switch_file) is
// engaged on this instance (Effective).
type SwitchResponse struct {
	revoke.SwitchState
	Effective bool `json:"effective"`
}

// switchBody is the body of PUT /v1/kill-switch.
type switchBody struct {
	Engaged *bool  `json:"engaged"`
	Reason  string `json:"reason"`
}

func (h *Handler) switchAuth(w http.ResponseWriter, r *http.Request, rec *audit.Record) (*principal, bool) {
	tok, err := h.authenticate(r)
	if err != nil {
		h.unauthorized(w, r, *rec, err)
		return nil, false
	}
	rec.Actor.TokenName = tok.name
	if !tok.canKillSwitch {
		h.refuse(w, r, *rec, http.StatusForbidden, "token "+tok.name+" may not use the kill switch")
		return nil, false
	}
	return tok, true
}

func (h *Handler) getKillSwitch(w http.ResponseWriter, r *http.Request) {
	rec := audit.Record{Actor: audit.Actor{Kind: audit.ActorAPI}, Action: "kill_switch", Result: audit.ResultRefused}
	if _, ok := h.switchAuth(w, r, &rec); !ok {
		return
	}
	writeJSON(w, http.StatusOK, SwitchResponse{SwitchState: h.kill.State(), Effective: h.kill.Engaged()})
}

// putKillSwitch engages or disengages the kill switch of every instance;
// audited either way.
func (h *Handler) putKillSwitch(w http.ResponseWriter, r *http.Request) {
	rec := audit.Record{Actor: audit.Actor{Kind: audit.ActorAPI}, Action: "kill_switch", Result: audit.ResultRefused}
	tok, ok := h.switchAuth(w, r, &rec)
	if !ok {
		return
	}
	var in switchBody
	if !h.readJSON(w, r, rec, &in) {
		return
	}
	rec.Why = in.Reason
	if in.Engaged == nil {
		h.refuse(w, r, rec, http.StatusBadRequest, "engaged: required (true or false)")
		return
	}
	st := revoke.SwitchState{Engaged: *in.Engaged, By: "api:" + tok.name, Reason: in.Reason, At: h.now()}
	if err := h.kill.Set(r.Context(), st); err != nil {
		h.fail(w, r, rec, "set kill switch", err)
		return
	}
	rec.Result, rec.Detail = audit.ResultOK, "kill switch disengaged"
	if st.Engaged {
		rec.Detail = "kill switch engaged"
	}
	h.record(r.Context(), rec)
	writeJSON(w, http.StatusOK, SwitchResponse{SwitchState: h.kill.State(), Effective: h.kill.Engaged()})
}
