package respond

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

func TestIncidentsSurviveReopenTornLinesAndCompaction(t *testing.T) {
	path := filepath.Join(t.TempDir(), "incidents.json")
	s, err := openIncidents(path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	a1 := anomaly.Anomaly{ID: "a1", AgentID: "agent-1"}
	in, created, err := s.join(a1, now, time.Hour)
	if err != nil || !created {
		t.Fatalf("join: %v %v", created, err)
	}
	if _, created, _ := s.join(anomaly.Anomaly{ID: "a2", AgentID: "agent-1"}, now.Add(time.Minute), time.Hour); created {
		t.Error("a second anomaly within the window opened a new incident")
	}
	if _, err := s.update(in.ID, now, func(in *Incident) { in.Revoked = []string{"kong/c1"} }); err != nil {
		t.Fatal(err)
	}
	// Many changes to few incidents: the file is compacted along the way.
	for i := 0; i < 3*compactMinLines; i++ {
		if _, err := s.update(in.ID, now, func(in *Incident) { in.Snapshots = []string{"ev-" + strconv.Itoa(i)} }); err != nil {
			t.Fatal(err)
		}
	}
	if s.lines() > compactMinLines+1 {
		t.Errorf("file has %d lines for 1 incident: not compacted", s.lines())
	}
	s.Close()
	// A torn last line (a crash mid-write) is ignored.
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"id":"inc-torn","agent_id":"x"`)
	f.Close()
	r, err := loadIncidents(path, true)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := r.get(in.ID)
	if !ok || got.Count != 2 || len(got.Revoked) != 1 || got.Snapshots[0] != "ev-"+strconv.Itoa(3*compactMinLines-1) {
		t.Fatalf("reopened incident %+v", got)
	}
	if _, ok := r.get("inc-torn"); ok {
		t.Error("the torn line was read")
	}
	if l, ok := r.latest("agent-1"); !ok || l.ID != in.ID {
		t.Errorf("latest incident of agent-1: %+v", l)
	}
}

func TestIncidentsFirstFormatIsConverted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "incidents.json")
	now := time.Now().UnixMilli()
	arr := `[{"id":"inc-1","agent_id":"agent-1","opened_ms":` + strconv.FormatInt(now, 10) +
		`,"last_ms":` + strconv.FormatInt(now, 10) + `,"count":1,"anomalies":[{"id":"a1","agent_id":"agent-1"}]}]`
	if err := os.WriteFile(path, []byte(arr), 0o600); err != nil {
		t.Fatal(err)
	}
	if r, err := loadIncidents(path, true); err != nil {
		t.Fatal(err)
	} else if _, ok := r.get("inc-1"); !ok {
		t.Fatal("read-only load of the first format lost inc-1")
	}
	s, err := openIncidents(path)
	if err != nil {
		t.Fatal(err)
	}
	if in, ok := s.latest("agent-1"); !ok || in.ID != "inc-1" || in.Count != 1 {
		t.Fatalf("latest of agent-1 = %+v, %v; want inc-1", in, ok)
	}
	if _, err := s.update("inc-1", time.Now(), func(in *Incident) { in.Revoked = []string{"kong/c1"} }); err != nil {
		t.Fatal(err)
	}
	s.Close()
	r, err := loadIncidents(path, true)
	if err != nil {
		t.Fatal(err)
	}
	if in, ok := r.get("inc-1"); !ok || len(in.Revoked) != 1 {
		t.Fatalf("after conversion and update inc-1 = %+v, %v", in, ok)
	}
}
