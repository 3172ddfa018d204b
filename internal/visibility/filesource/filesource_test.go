package filesource

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/detector/detstate"
	"github.com/agentwatch/agentwatch/internal/platform/embedstore"
	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/respond"
	"github.com/agentwatch/agentwatch/internal/visibility"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/event"
)

const hostile = "evil\x1b[31m<script>"

var day1 = time.Date(2026, 3, 15, 0, 0, 0, 0, time.UTC)

// WriteDemoDir writes a small data directory in the demo's layout.
func writeDemoDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	es, err := embedstore.Open(filepath.Join(dir, EventsDir))
	if err != nil {
		t.Fatal(err)
	}
	var evs []event.Event
	for i, a := range []string{"cs-1", "cs-1", hostile} {
		evs = append(evs, event.Event{EventID: "e" + string(rune('a'+i)), AgentID: a, Route: "/customers/{id}",
			EventTimeMs: day1.Add(time.Duration(i) * 25 * time.Hour).UnixMilli(), Status: 200, RequestID: "r" + string(rune('a'+i))})
	}
	if err := es.InsertEvents(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	es.Close()
	ds, err := detstate.OpenFileStore(filepath.Join(dir, DetectorDir))
	if err != nil {
		t.Fatal(err)
	}
	an := anomaly.Anomaly{V: anomaly.Version, ID: "an-1", AgentID: "cs-1", Kind: anomaly.Behaviour, WindowStartMs: day1.UnixMilli(),
		WindowEndMs: day1.UnixMilli() + 60_000, Severity: "high", Score: 6}
	if err := ds.InsertAnomalies(context.Background(), []anomaly.Anomaly{an}); err != nil {
		t.Fatal(err)
	}
	ds.Close()
	if err := os.MkdirAll(filepath.Join(dir, ResponderDir), 0o700); err != nil {
		t.Fatal(err)
	}
	fs, err := audit.OpenFileStore(filepath.Join(dir, ResponderDir, "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	at := day1.Add(time.Hour).UnixMilli()
	if err := fs.Append(context.Background(),
		audit.Record{ID: "1", AtMs: at, Actor: audit.Actor{Kind: audit.ActorAutomatic}, Action: "revoke", AgentID: "cs-1", Result: audit.ResultOK},
		audit.Record{ID: "2", AtMs: at + 1, Actor: audit.Actor{Kind: audit.ActorSlack, Name: "bob", UserID: "U1"}, Action: ActionFalsePositive,
			AgentID: "cs-1", AnomalyID: "an-1", Result: audit.ResultOK}); err != nil {
		t.Fatal(err)
	}
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(RegistryFile, "agents:\n  - id: cs-1\n    owner: cx\n")
	write(OpenAPIFile, "openapi: 3.0.3\ninfo: {title: t, version: '1'}\npaths:\n  /customers/{customerId}:\n    get:\n      tags: [sensitive]\n      responses: {'200': {description: OK}}\n")
	return dir
}

func TestLoad(t *testing.T) {
	dir := writeDemoDir(t)
	var progress bytes.Buffer
	src, st, err := Load(context.Background(), Options{DataDir: dir, Progress: &progress})
	if err != nil {
		t.Fatal(err)
	}
	if st.Events != 3 || st.Days != 3 || st.Anomalies != 1 || st.Records != 2 || st.Verdicts != 1 {
		t.Fatalf("stats %+v", st)
	}
	if !strings.Contains(progress.String(), "read events of 2026-03-15: 1") || !strings.Contains(progress.String(), "3 events over 3 days") {
		t.Errorf("progress %q", progress.String())
	}
	span := visibility.Span{From: day1, To: day1.Add(72 * time.Hour)}
	agents, err := src.Agents(context.Background(), span, "")
	if err != nil || len(agents) != 2 || agents[0].AgentID != "cs-1" || agents[0].Calls != 2 || agents[1].AgentID != hostile {
		t.Fatalf("agents %+v, %v", agents, err)
	}
	vs, _ := src.Verdicts(context.Background(), span)
	if len(vs) != 1 || vs[0].ID != "fp-an-1" || vs[0].Kind != anomaly.Behaviour || vs[0].Author != "slack:bob (U1)" || vs[0].WindowStartMs != day1.UnixMilli() {
		t.Errorf("verdicts %+v", vs)
	}
	acts, _ := src.Actions(context.Background(), span, "cs-1")
	if len(acts) != 2 {
		t.Errorf("actions %+v", acts)
	}
	// Since skips the older days.
	src, st, err = Load(context.Background(), Options{DataDir: dir, Since: day1.Add(30 * time.Hour)})
	if err != nil || st.Events != 1 || st.Days != 1 { // days with events since Since
		t.Fatalf("since: %+v, %v", st, err)
	}
	if evs, _ := src.Events(context.Background(), visibility.EventQuery{Span: span}); len(evs) != 1 || evs[0].AgentID != hostile {
		t.Errorf("since: events %+v", evs)
	}
}

func TestLoadEmptyDir(t *testing.T) {
	dir := t.TempDir()
	_, st, err := Load(context.Background(), Options{DataDir: dir})
	if err != nil || st != (Stats{}) {
		t.Fatalf("empty dir: %+v, %v", st, err)
	}
	if _, err := os.Stat(filepath.Join(dir, EventsDir)); !os.IsNotExist(err) {
		t.Error("Load created the events directory")
	}
}

func TestFleet(t *testing.T) {
	dir := writeDemoDir(t)
	reg, inv, err := Fleet(dir, "", "", "")
	if err != nil {
		t.Fatal(err)
	}
	if !reg.Enabled() || reg.Len() != 1 || !inv.Enabled() {
		t.Fatalf("registry %d enabled %v, inventory enabled %v", reg.Len(), reg.Enabled(), inv.Enabled())
	}
	if r, ok := inv.Lookup("/customers/{id}"); !ok || !r.Sensitive {
		t.Errorf("inventory lookup %+v, %v", r, ok)
	}
	// Configured files win over the data dir's.
	routes := filepath.Join(t.TempDir(), "routes.yaml")
	if err := os.WriteFile(routes, []byte("routes:\n  - template: /tickets\n    tags: [pii]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	reg, inv, err = Fleet(dir, "", routes, "")
	if err != nil || reg.Enabled() || inv.Len() != 1 {
		t.Fatalf("configured routes file: registry enabled %v, %d routes, %v", reg.Enabled(), inv.Len(), err)
	}
	if _, _, err := Fleet(dir, filepath.Join(dir, "missing.yaml"), "", ""); err == nil || !strings.Contains(err.Error(), "agent registry") {
		t.Errorf("missing registry: %v", err)
	}
	empty := t.TempDir()
	reg, inv, err = Fleet(empty, "", "", "")
	if err != nil || reg.Enabled() || inv.Enabled() {
		t.Errorf("nothing: %v %v %v", reg.Enabled(), inv.Enabled(), err)
	}
}

func TestLive(t *testing.T) {
	dir := writeDemoDir(t)
	now := day1.Add(72 * time.Hour)
	l := NewLive(Options{DataDir: dir}, time.Minute, func() time.Time { return now })
	span := visibility.Span{From: day1, To: day1.Add(96 * time.Hour)}
	count := func() int {
		t.Helper()
		evs, err := l.Events(context.Background(), visibility.EventQuery{Span: span})
		if err != nil {
			t.Fatal(err)
		}
		return len(evs)
	}
	if n := count(); n != 3 {
		t.Fatalf("%d events; want 3", n)
	}
	es, err := embedstore.Open(filepath.Join(dir, EventsDir))
	if err != nil {
		t.Fatal(err)
	}
	if err := es.InsertEvents(context.Background(), []event.Event{{EventID: "new", AgentID: "cs-1", Route: "/x", EventTimeMs: day1.Add(74 * time.Hour).UnixMilli()}}); err != nil {
		t.Fatal(err)
	}
	es.Close()
	if n := count(); n != 3 {
		t.Errorf("%d events within MaxAge; want the cached 3", n)
	}
	now = now.Add(2 * time.Minute)
	if n := count(); n != 4 {
		t.Errorf("%d events after MaxAge; want 4 (reloaded)", n)
	}
	// A different audit file.
	l = NewLive(Options{DataDir: dir, AuditFile: filepath.Join(t.TempDir(), "none.jsonl")}, 0, nil)
	if acts, err := l.Actions(context.Background(), span, ""); err != nil || len(acts) != 0 {
		t.Errorf("actions from a missing audit file: %v, %v", acts, err)
	}
}

func TestAuditFileIsTheResponders(t *testing.T) {
	if AuditFile != respond.AuditFile {
		t.Fatalf("AuditFile %q; the responder writes %q", AuditFile, respond.AuditFile)
	}
}
