package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// t0 is 2025-03-04T12:00:00Z.
const t0 = int64(1741089600000)

func rec(id string, atMs int64, agent, incident string) Record {
	return Record{
		ID: id, AtMs: atMs, Actor: Actor{Kind: ActorAPI, TokenName: "ci"}, Action: ActionPlaybook,
		Playbook: "quarantine-agent", DecisionID: incident, IncidentID: incident, AgentID: agent,
		Why: "manual run via API: suspicious", Result: ResultOK,
	}
}

func openFile(t *testing.T) *FileStore {
	t.Helper()
	s, err := OpenFileStore(filepath.Join(t.TempDir(), "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func ids(recs []Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.ID
	}
	return out
}

// stores runs fn against each Store implementation.
func stores(t *testing.T, fn func(t *testing.T, s Store)) {
	t.Run("file", func(t *testing.T) { fn(t, openFile(t)) })
	t.Run("mem", func(t *testing.T) { fn(t, &MemStore{}) })
}

func TestAppendQueryRoundTrip(t *testing.T) {
	stores(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		recs := []Record{
			rec("r3", t0+3000, "agent-1", "inc-a"),
			rec("r1", t0+1000, "agent-1", "inc-a"),
			rec("r2", t0+2000, "agent-2", "inc-b"),
			rec("r4", t0+4000, "agent-1", "inc-c"),
			rec("r0", t0, "agent-1", "inc-a"),
		}
		recs[1].DryRun, recs[1].Result, recs[1].Detail = true, ResultDryRun, "would revoke cred-9"
		recs[2].Actor = Actor{Kind: ActorSlack, Name: "alice", UserID: "U1"}
		recs[3].Action, recs[3].Playbook, recs[3].Detail = ActionAsk, "", "agent agent-2"
		if err := s.Append(ctx, recs[:2]...); err != nil {
			t.Fatal(err)
		}
		if err := s.Append(ctx, recs[2:]...); err != nil {
			t.Fatal(err)
		}
		q := func(f Filter, want ...string) {
			t.Helper()
			got, err := s.Query(ctx, f)
			if err != nil {
				t.Fatalf("Query(%+v): %v", f, err)
			}
			if !slices.Equal(ids(got), want) {
				t.Errorf("Query(%+v) = %v; want %v", f, ids(got), want)
			}
		}
		q(Filter{}, "r0", "r1", "r2", "r3", "r4")
		q(Filter{AgentID: "agent-1"}, "r0", "r1", "r3", "r4")
		q(Filter{AgentID: "agent-1", FromMs: t0 + 1000, ToMs: t0 + 4000}, "r1", "r3") // to is exclusive
		q(Filter{AgentID: "agent-1", FromMs: t0 + 1001}, "r3", "r4")
		q(Filter{IncidentID: "inc-a"}, "r0", "r1", "r3")
		q(Filter{AgentID: "agent-1", IncidentID: "inc-a", Limit: 2}, "r0", "r1")
		q(Filter{AgentID: "nobody"})
		q(Filter{Action: ActionAsk}, "r4")
		q(Filter{NotAction: ActionAsk}, "r0", "r1", "r2", "r3")

		got, err := s.Query(ctx, Filter{AgentID: "agent-1", FromMs: t0 + 1000, ToMs: t0 + 1001})
		if err != nil || len(got) != 1 || !reflect.DeepEqual(got[0], recs[1]) {
			t.Errorf("round trip: got %+v, %v; want %+v", got, err, recs[1])
		}
		if _, err := s.Query(ctx, Filter{FromMs: 2, ToMs: 1}); err == nil {
			t.Error("Query with to before from: no error")
		}
	})
}

func TestAppendRefusesInvalid(t *testing.T) {
	stores(t, func(t *testing.T, s Store) {
		bad := rec("", 0, "a", "i")
		bad.Actor.Kind, bad.Result, bad.Action = "root", "maybe", ""
		err := s.Append(context.Background(), rec("ok", t0, "a", "i"), bad)
		for _, want := range []string{"id: required", "at_ms", "actor.kind", "action", "result"} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("Append(invalid) = %v; want it to mention %q", err, want)
			}
		}
		if got, _ := s.Query(context.Background(), Filter{}); len(got) != 0 {
			t.Errorf("a batch with an invalid record stored %d records; want none", len(got))
		}
	})
}

// A record appended twice (a retried Append) is returned once.
func TestDuplicatesCollapse(t *testing.T) {
	stores(t, func(t *testing.T, s Store) {
		l := NewLogger(s, nil, func() time.Time { return time.UnixMilli(t0) })
		r := rec("", 0, "agent-1", "inc-a")
		for range 2 {
			if err := l.Append(context.Background(), r); err != nil {
				t.Fatal(err)
			}
		}
		got, err := l.Query(context.Background(), Filter{AgentID: "agent-1"})
		if err != nil || len(got) != 1 {
			t.Fatalf("Query = %d records, %v; want 1", len(got), err)
		}
		if got[0].ID != got[0].ContentID() || got[0].AtMs != t0 {
			t.Errorf("Logger did not complete the record: %+v", got[0])
		}
	})
}

// Hostile, over-long and invalid ids are capped on the way in, and a query
// for the full id still finds them.
func TestNormalize(t *testing.T) {
	stores(t, func(t *testing.T, s Store) {
		long := strings.Repeat("é", 400) + "\xff"
		r := rec("x", t0, long, "inc")
		r.Detail = strings.Repeat("d", 10000)
		if err := s.Append(context.Background(), r); err != nil {
			t.Fatal(err)
		}
		got, err := s.Query(context.Background(), Filter{AgentID: long})
		if err != nil || len(got) != 1 {
			t.Fatalf("Query(long agent) = %d records, %v; want 1", len(got), err)
		}
		if n := len(got[0].AgentID); n > capEntity || !strings.HasSuffix(got[0].AgentID, ellipsis) {
			t.Errorf("agent id: %d bytes %q…; want <= %d, ending in an ellipsis", n, got[0].AgentID[:20], capEntity)
		}
		if n := len(got[0].Detail); n > capDetail {
			t.Errorf("detail: %d bytes; want <= %d", n, capDetail)
		}
		if again := got[0].Normalize(); !reflect.DeepEqual(again, got[0]) {
			t.Error("Normalize is not idempotent")
		}
	})
}

func TestFileStoreTornLine(t *testing.T) {
	ctx := context.Background()
	s := openFile(t)
	if err := s.Append(ctx, rec("r1", t0+1000, "agent-1", "inc")); err != nil {
		t.Fatal(err)
	}
	// A crash in the middle of the next write: part of a line, no newline.
	line, _ := MarshalLine(rec("torn", t0+2000, "agent-1", "inc"))
	f, err := os.OpenFile(s.Path(), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(line[:len(line)/2])
	f.Close()

	got, err := s.Query(ctx, Filter{})
	if err != nil || !slices.Equal(ids(got), []string{"r1"}) {
		t.Fatalf("Query with a torn last line = %v, %v; want [r1]", ids(got), err)
	}
	if err := s.Append(ctx, rec("r3", t0+3000, "agent-1", "inc")); err != nil {
		t.Fatal(err)
	}
	got, err = s.Query(ctx, Filter{})
	if err != nil || !slices.Equal(ids(got), []string{"r1", "r3"}) {
		t.Fatalf("Query after the next append = %v, %v; want [r1 r3]", ids(got), err)
	}
	data, _ := os.ReadFile(s.Path())
	if n := bytes.Count(data, []byte{'\n'}); n != 2 || bytes.Contains(data, []byte("torn")) {
		t.Errorf("file after recovery has %d lines and the torn part %v:\n%s", n, bytes.Contains(data, []byte("torn")), data)
	}

	// A file that is only a torn line.
	s2 := openFile(t)
	os.WriteFile(s2.Path(), line[:10], 0o600)
	if err := s2.Append(ctx, rec("r1", t0, "a", "i")); err != nil {
		t.Fatal(err)
	}
	if got, err := s2.Query(ctx, Filter{}); err != nil || !slices.Equal(ids(got), []string{"r1"}) {
		t.Fatalf("Query = %v, %v; want [r1]", ids(got), err)
	}
}

func TestFileStoreDamagedLine(t *testing.T) {
	s := openFile(t)
	if err := s.Append(context.Background(), rec("r1", t0, "a", "i")); err != nil {
		t.Fatal(err)
	}
	f, _ := os.OpenFile(s.Path(), os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString("{not json}\n")
	f.Close()
	_, err := s.Query(context.Background(), Filter{})
	if err == nil || !strings.Contains(err.Error(), "at byte ") || !strings.Contains(err.Error(), "move it out") {
		t.Errorf("Query of a damaged file = %v; want the offset and the fix", err)
	}
}

func TestFileStoreConcurrentAppends(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	// Two stores on one file stand for two processes (flock is per open
	// file, so they exclude each other as processes would).
	var ss [2]*FileStore
	for i := range ss {
		s, err := OpenFileStore(path)
		if err != nil {
			t.Fatal(err)
		}
		ss[i] = s
	}
	const writers, each = 8, 25
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				r := rec(fmt.Sprintf("w%d-%d", w, i), t0+int64(i), fmt.Sprintf("agent-%d", w%3), "inc")
				if err := ss[w%2].Append(ctx, r, r); err != nil { // two lines per write
					t.Error(err)
					return
				}
				if i%5 == 0 {
					if _, err := ss[(w+1)%2].Query(ctx, Filter{AgentID: "agent-0"}); err != nil {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	got, err := ss[0].Query(ctx, Filter{Limit: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != writers*each {
		t.Errorf("Query = %d records; want %d", len(got), writers*each)
	}
	data, _ := os.ReadFile(path)
	if n := bytes.Count(data, []byte{'\n'}); n != 2*writers*each {
		t.Errorf("file has %d lines; want %d", n, 2*writers*each)
	}
}

func TestLoggerLogs(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	l := NewLogger(&MemStore{}, log, func() time.Time { return time.UnixMilli(t0) })
	r := rec("", 0, "agent\x1b[31m-7", "inc-a")
	r.Result, r.Detail = ResultRefused, "token ci may not run quarantine-agent"
	if err := l.Append(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("log line %q: %v", buf.Bytes(), err)
	}
	for k, want := range map[string]any{
		"msg": "audit", "actor": "api:ci", "action": "playbook", "result": "refused", "agent_id": "agent\x1b[31m-7",
		"incident_id": "inc-a", "component": "audit", "at_ms": float64(t0),
	} {
		if line[k] != want {
			t.Errorf("log %s = %#v; want %#v", k, line[k], want)
		}
	}
	if bytes.Contains(buf.Bytes(), []byte("\x1b")) {
		t.Error("log line holds a raw ESC")
	}
}

// A store that fails still leaves the record in the log.
func TestLoggerStoreError(t *testing.T) {
	var buf bytes.Buffer
	l := NewLogger(failStore{}, slog.New(slog.NewJSONHandler(&buf, nil)), nil)
	err := l.Append(context.Background(), rec("", 0, "a", "i"))
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("Append = %v; want the store's error", err)
	}
	if !strings.Contains(buf.String(), `"msg":"audit"`) {
		t.Errorf("no audit log line: %q", buf.String())
	}
}

type failStore struct{}

func (failStore) Append(context.Context, ...Record) error { return errors.New("disk full") }
func (failStore) Query(context.Context, Filter) ([]Record, error) {
	return nil, errors.New("disk full")
}

func TestActorString(t *testing.T) {
	ok := func(a Actor, want string) {
		t.Helper()
		if got := a.String(); got != want {
			t.Errorf("%+v.String() = %q; want %q", a, got, want)
		}
	}
	ok(Actor{Kind: ActorAutomatic}, "automatic")
	ok(Actor{Kind: ActorAPI, TokenName: "ci"}, "api:ci")
	ok(Actor{Kind: ActorAPI}, "api:-")
	ok(Actor{Kind: ActorSlack, Name: "alice", UserID: "U1"}, "slack:alice (U1)")
	ok(Actor{Kind: ActorSlack, UserID: "U1"}, "slack:U1")
	ok(Actor{Kind: ActorCLI, Name: "root"}, "cli:root")
}
