package chstore

import (
	"context"
	"fmt"
	"testing"
)

func TestIntegrationSeenBatch(t *testing.T) {
	st := newStore(t)
	s := NewSeen(st)
	ctx := context.Background()
	odd := []string{`it's`, `back\slash`, "new\nline", "ünïcode"}
	if err := s.InsertHandled(ctx, append([]string{"a-1", "a-2"}, odd...)); err != nil {
		t.Fatal(err)
	}
	ids := append([]string{"a-1", "a-2", "a-3"}, odd...)
	for i := 0; i < 1500; i++ { // more than one lookup chunk
		ids = append(ids, fmt.Sprintf("absent-%d", i))
	}
	got, err := s.HandledMany(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range append([]string{"a-1", "a-2"}, odd...) {
		if !got[id] {
			t.Errorf("%q marked handled but not found", id)
		}
	}
	if len(got) != 2+len(odd) {
		t.Errorf("found %d handled ids, want %d: %v", len(got), 2+len(odd), got)
	}
	// MarkHandled sees what InsertHandled wrote.
	if first, err := s.MarkHandled(ctx, "a-1"); err != nil || first {
		t.Errorf("MarkHandled after InsertHandled: first=%v err=%v", first, err)
	}
	if err := s.InsertHandled(ctx, []string{""}); err == nil {
		t.Error("an empty id was inserted")
	}
}
