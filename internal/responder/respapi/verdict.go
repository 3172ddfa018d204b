package respapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
)

// Verdicts takes a human's false-positive verdict on an anomaly of an
// incident: the responder's Engine (the same path as the Slack button).
type Verdicts interface {
	FalsePositive(ctx context.Context, incident, anomalyID string, actor audit.Actor) error
}

// ErrNotFound is what a Verdicts returns (wrapped) for an unknown incident
// or anomaly: the API answers 404.
var ErrNotFound = errors.New("not found")

// ErrQueued is what a Verdicts returns (wrapped) when it handed the
// verdict to the responder instance that owns the incident and that
// instance had not answered in time: the API answers 202, and the verdict
// is recorded when that instance runs it.
var ErrQueued = errors.New("queued for the responder instance that owns the incident")

const falsePositivePattern = "POST /v1/incidents/{incident}/false-positive"

// falsePositiveBody is the body of POST /v1/incidents/{incident}/false-positive.
type falsePositiveBody struct {
	AnomalyID string `json:"anomaly_id"`
}

// falsePositive serves POST /v1/incidents/{incident}/false-positive. It
// needs a token with can_silence, since the verdict silences the pattern.
// The Engine writes the verdict's audit record; a refused request is
// audited here.
func (h *Handler) falsePositive(w http.ResponseWriter, r *http.Request) {
	incident := r.PathValue("incident")
	rec := audit.Record{Actor: audit.Actor{Kind: audit.ActorAPI}, Action: "false_positive", IncidentID: incident, Result: audit.ResultRefused}
	tok, ok := h.silenceAuth(w, r, &rec)
	if !ok {
		return
	}
	var in falsePositiveBody
	if !h.readJSON(w, r, rec, &in) {
		return
	}
	if in.AnomalyID == "" || len(in.AnomalyID) > 256 || incident == "" || len(incident) > 256 {
		h.refuse(w, r, rec, http.StatusBadRequest, "incident and anomaly_id: required, at most 256 bytes")
		return
	}
	rec.AnomalyID = in.AnomalyID
	err := h.verdicts.FalsePositive(r.Context(), incident, in.AnomalyID, audit.Actor{Kind: audit.ActorAPI, TokenName: tok.name})
	switch {
	case errors.Is(err, ErrQueued):
		writeJSON(w, http.StatusAccepted, map[string]string{"incident": incident, "anomaly_id": in.AnomalyID, "result": "queued"})
		return
	case errors.Is(err, ErrNotFound):
		h.refuse(w, r, rec, http.StatusNotFound, err.Error())
		return
	case err != nil:
		h.log.Error("false positive failed", "incident", incident, "anomaly", in.AnomalyID, "token", tok.name, "err", err)
		h.fail(w, r, rec, "false positive", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"incident": incident, "anomaly_id": in.AnomalyID, "result": fmt.Sprint(audit.ResultOK)})
}
