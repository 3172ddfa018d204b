package embedstore

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/pkg/event"
)

func evs(n int, day time.Time) []event.Event {
	out := make([]event.Event, n)
	for i := range out {
		out[i] = event.Event{
			EventID: event.ID("raw", 0, int64(i)), EventTimeMs: day.Add(time.Duration(i) * time.Second).UnixMilli(),
			AgentID: fmt.Sprintf("agent-%d", i%3), Method: "GET", Path: "/a", Route: "/a", Status: 200, Format: "canonical",
			QueryParams: []string{}, Topic: "raw", Offset: int64(i),
		}
	}
	return out
}

func TestRetriedInsertLeavesNoDuplicateAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	day := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	batch := evs(50, day)
	ctx := context.Background()
	for range 3 {
		if err := s.InsertEvents(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.Count(); got != 50 {
		t.Fatalf("count %d, want 50", got)
	}
	_ = s.Close()
	s2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.InsertEvents(ctx, batch); err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := s2.Events("", day, day.Add(24*time.Hour), func(*event.Event) bool { n++; return true }); err != nil {
		t.Fatal(err)
	}
	if n != 50 {
		t.Fatalf("scanned %d events after restart and re-insert, want 50", n)
	}
	var agent0 int
	_ = s2.Events("agent-0", day, day.Add(24*time.Hour), func(e *event.Event) bool {
		if e.AgentID != "agent-0" {
			t.Fatalf("filter returned %s", e.AgentID)
		}
		agent0++
		return true
	})
	if agent0 != 17 {
		t.Fatalf("agent-0 has %d events, want 17", agent0)
	}
}

func TestDropDaysBefore(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	d1 := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	d2 := d1.Add(48 * time.Hour)
	_ = s.InsertEvents(ctx, evs(5, d1))
	more := evs(5, d2)
	for i := range more {
		more[i].EventID = event.ID("raw", 1, int64(i))
	}
	_ = s.InsertEvents(ctx, more)
	dropped, err := s.DropDaysBefore(d1.Add(24 * time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(dropped) != 1 || dropped[0] != "20261101" {
		t.Fatalf("dropped %v, want [20261101]", dropped)
	}
	days, _ := s.Days()
	if len(days) != 1 || days[0] != "20261103" {
		t.Fatalf("days left %v", days)
	}
}

// TestRead reads beside a writer: no ids loaded, nothing created, a last
// line without its newline (an append in progress) skipped.
func TestRead(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "events")
	if err := Read(dir, time.Unix(0, 0), time.Now(), func(string, *event.Event) bool { t.Fatal("event in a missing dir"); return true }); err != nil {
		t.Fatalf("missing dir: %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatal("Read created the directory")
	}
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	day := time.Date(2026, 3, 15, 0, 0, 0, 0, time.UTC)
	var evs []event.Event
	for i := range 4 {
		evs = append(evs, event.Event{EventID: fmt.Sprint("e", i), AgentID: "a", EventTimeMs: day.Add(time.Duration(i) * 20 * time.Hour).UnixMilli()})
	}
	if err := s.InsertEvents(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// A torn append at the end of the first day.
	f, err := os.OpenFile(filepath.Join(dir, "events-20260315.jsonl"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"event_id":"torn","agent`)
	f.Close()
	var got []string
	err = Read(dir, day.Add(time.Hour), day.Add(50*time.Hour), func(d string, e *event.Event) bool {
		got = append(got, d+":"+e.EventID)
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"20260315:e1", "20260316:e2"}; !slices.Equal(got, want) {
		t.Fatalf("Read = %q; want %q", got, want)
	}
	got = nil
	if err := Read(dir, day, day.Add(96*time.Hour), func(d string, e *event.Event) bool { got = append(got, e.EventID); return len(got) < 2 }); err != nil || len(got) != 2 {
		t.Fatalf("stop after 2: %q, %v", got, err)
	}
}
