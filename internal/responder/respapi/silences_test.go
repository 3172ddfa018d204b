package respapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/silence"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

func TestSilencesAddListExpire(t *testing.T) {
	st, err := silence.Open(filepath.Join(t.TempDir(), "silences.jsonl"), silence.Options{Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	fx := newFixture(t, func(o *Options) {
		o.Silences = st
		o.Tokens[1].CanSilence = true // oncall
	})
	// The ci token may run playbooks but not silence.
	wantCode(t, fx.do(t, http.MethodPost, "/v1/silences", "Bearer "+secretCI, `{"matchers":"agent_id=a1","duration":"1h"}`), http.StatusForbidden)
	wantCode(t, fx.do(t, http.MethodGet, "/v1/silences", "", ""), http.StatusUnauthorized)
	for _, bad := range []string{
		`{"matchers":"agent_id=a1","duration":"-1h"}`,
		`{"matchers":"agent_id=a1","duration":"2000h"}`,
		`{"matchers":"nolabel=a1","duration":"1h"}`,
		`{"matchers":"agent_id!=a1","duration":"1h"}`, // would mute everything else
		`{"matchers":"agent_id=a1","duration":"1h","extra":1}`,
	} {
		wantCode(t, fx.do(t, http.MethodPost, "/v1/silences", "Bearer "+secretOncall, bad), http.StatusBadRequest)
	}
	r := fx.do(t, http.MethodPost, "/v1/silences", "Bearer "+secretOncall, `{"matchers":"agent_id=a1,kind=~\"beh.*\"","duration":"2h","comment":"maintenance"}`)
	wantCode(t, r, http.StatusOK)
	var s silence.Silence
	if err := json.Unmarshal(r.body, &s); err != nil {
		t.Fatal(err)
	}
	if s.CreatedBy != "api:oncall" || !s.EndsAt.Equal(t0.Add(2*time.Hour)) {
		t.Errorf("silence %+v", s)
	}
	if rec := fx.lastAudit(t); rec.Action != "silence" || rec.Result != audit.ResultOK || rec.Actor.TokenName != "oncall" {
		t.Errorf("audit %+v", rec)
	}
	if got := st.Mutes(anomaly.Anomaly{AgentID: "a1", Kind: anomaly.Behaviour}, t0.Add(time.Minute)); len(got) != 1 {
		t.Errorf("the new silence mutes %d silences' worth, want 1", len(got))
	}
	r = fx.do(t, http.MethodGet, "/v1/silences", "Bearer "+secretOncall, "")
	wantCode(t, r, http.StatusOK)
	var list SilencesResponse
	if err := json.Unmarshal(r.body, &list); err != nil || len(list.Silences) != 1 {
		t.Fatalf("list: %v %s", err, r.body)
	}
	wantCode(t, fx.do(t, http.MethodDelete, "/v1/silences/nope", "Bearer "+secretOncall, ""), http.StatusNotFound)
	wantCode(t, fx.do(t, http.MethodDelete, "/v1/silences/"+s.ID, "Bearer "+secretOncall, ""), http.StatusOK)
	if got := st.Mutes(anomaly.Anomaly{AgentID: "a1", Kind: anomaly.Behaviour}, t0.Add(time.Minute)); len(got) != 0 {
		t.Errorf("an expired silence still mutes")
	}
}

type fakeVerdicts struct {
	got []string
}

func (f *fakeVerdicts) FalsePositive(_ context.Context, incident, anomalyID string, actor audit.Actor) error {
	switch incident {
	case "inc-1":
	case "inc-elsewhere":
		return fmt.Errorf("false positive on %s: %w", incident, ErrQueued)
	default:
		return fmt.Errorf("no incident %q: %w", incident, ErrNotFound)
	}
	f.got = append(f.got, incident+"/"+anomalyID+"/"+actor.String())
	return nil
}

func TestFalsePositiveThroughTheAPI(t *testing.T) {
	fv := &fakeVerdicts{}
	fx := newFixture(t, func(o *Options) {
		o.Verdicts = fv
		o.Tokens[1].CanSilence = true // oncall
	})
	wantCode(t, fx.do(t, http.MethodPost, "/v1/incidents/inc-1/false-positive", "Bearer "+secretCI, `{"anomaly_id":"a1"}`), http.StatusForbidden)
	wantCode(t, fx.do(t, http.MethodPost, "/v1/incidents/inc-1/false-positive", "", `{"anomaly_id":"a1"}`), http.StatusUnauthorized)
	wantCode(t, fx.do(t, http.MethodPost, "/v1/incidents/inc-1/false-positive", "Bearer "+secretOncall, `{}`), http.StatusBadRequest)
	wantCode(t, fx.do(t, http.MethodPost, "/v1/incidents/nope/false-positive", "Bearer "+secretOncall, `{"anomaly_id":"a1"}`), http.StatusNotFound)
	wantCode(t, fx.do(t, http.MethodPost, "/v1/incidents/inc-1/false-positive", "Bearer "+secretOncall, `{"anomaly_id":"a1"}`), http.StatusOK)
	if len(fv.got) != 1 || fv.got[0] != "inc-1/a1/api:oncall" {
		t.Errorf("verdicts taken: %v", fv.got)
	}
	// Handed to the instance that owns the incident, not answered yet.
	r := fx.do(t, http.MethodPost, "/v1/incidents/inc-elsewhere/false-positive", "Bearer "+secretOncall, `{"anomaly_id":"a1"}`)
	wantCode(t, r, http.StatusAccepted)
	if !strings.Contains(string(r.body), `"result":"queued"`) {
		t.Errorf("queued answer: %s", string(r.body))
	}
}
