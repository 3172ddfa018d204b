package chstore

import (
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/detector/detstate"
)

// TestIntegrationDetectorStateCapAndExpire: a capped load returns the most
// recently saved agents and names the others; removed agents vanish from
// every read at once, while their older versions are still unmerged, and
// leave the table for good after PurgeTombstones, without an older version
// coming back.
func TestIntegrationDetectorStateCapAndExpire(t *testing.T) {
	s := newMigratedStore(t)
	ctx := t.Context()
	stopMerges(t, s, "detector_state")
	var in []detstate.State
	for i := range 6 {
		in = append(in, detstate.State{Topic: "t", Partition: int32(i % 2), Kind: detstate.KindAgent, Key: "a" + strconv.Itoa(i), UpdatedMs: int64(100 + i), Blob: []byte{byte(i + 1)}})
	}
	in = append(in,
		detstate.State{Topic: "t", Partition: 0, Kind: detstate.KindPeer, Key: "0/", UpdatedMs: 1, Blob: []byte("peer")},
		detstate.State{Topic: "u", Partition: 0, Kind: detstate.KindAgent, Key: "other", UpdatedMs: 1, Blob: []byte("o")})
	if err := s.SaveStates(ctx, in); err != nil {
		t.Fatal(err)
	}
	// A newer version of a0 in its own part makes it the most recent.
	if err := s.SaveStates(ctx, []detstate.State{{Topic: "t", Partition: 0, Kind: detstate.KindAgent, Key: "a0", UpdatedMs: 200, Blob: []byte{9}}}); err != nil {
		t.Fatal(err)
	}

	load := func(max int) (loaded, rest []string, peers int) {
		t.Helper()
		_, states, err := s.LoadPartitionsCapped(ctx, "g", "t", []int32{0, 1}, max, func(k string) { rest = append(rest, k) })
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range states {
			if st.Kind == detstate.KindAgent {
				loaded = append(loaded, st.Key)
			} else {
				peers++
			}
		}
		slices.Sort(loaded)
		slices.Sort(rest)
		return loaded, rest, peers
	}
	if l, r, p := load(2); !slices.Equal(l, []string{"a0", "a5"}) || !slices.Equal(r, []string{"a1", "a2", "a3", "a4"}) || p != 1 {
		t.Errorf("capped at 2: loaded %v, rest %v, %d peers; want [a0 a5], [a1 a2 a3 a4], 1", l, r, p)
	}
	if l, r, _ := load(-1); len(l) != 6 || len(r) != 0 {
		t.Errorf("uncapped: loaded %v, rest %v; want all six", l, r)
	}

	// Saved before 103: a1, a2 (a0's newest version is 200). a2 stays
	// ("registered").
	n, err := s.ExpireAgents(ctx, "t", []int32{0, 1}, 103, 300, func(k string) bool { return k != "a2" })
	if err != nil || n != 1 {
		t.Fatalf("ExpireAgents = %d, %v; want 1 (a1)", n, err)
	}
	n, err = s.ExpireAgents(ctx, "t", []int32{0, 1}, 250, 300, func(k string) bool { return k == "a0" || k == "a3" })
	if err != nil || n != 2 {
		t.Fatalf("second ExpireAgents = %d, %v; want 2 (a0, a3)", n, err)
	}
	gone := []string{"a0", "a1", "a3"}
	check := func(phase string) {
		t.Helper()
		for _, k := range gone {
			if st, ok, err := s.LoadState(ctx, detstate.KindAgent, k); ok || err != nil {
				t.Errorf("%s: removed %s still loads: %+v, %v", phase, k, st, err)
			}
		}
		if l, r, _ := load(1); !slices.Equal(l, []string{"a5"}) || !slices.Equal(r, []string{"a2", "a4"}) {
			t.Errorf("%s: capped at 1: loaded %v, rest %v; want [a5], [a2 a4]", phase, l, r)
		}
		_, states, err := s.LoadPartitions(ctx, "g", "t", []int32{0, 1})
		if err != nil || len(states) != 4 {
			t.Errorf("%s: LoadPartitions = %d states, %v; want 4 (a2, a4, a5, peer)", phase, len(states), err)
		}
	}
	check("tombstoned, unmerged")

	mergeNow(t, s, "detector_state")
	if err := s.PurgeTombstones(ctx); err != nil {
		t.Fatal(err)
	}
	// The deletion is a mutation the server runs in the background.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var rows uint64
		if err := s.conn.QueryRow(ctx, "SELECT count() FROM detector_state WHERE `key` IN ('a0', 'a1', 'a3')").Scan(&rows); err != nil {
			t.Fatal(err)
		}
		if rows == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d rows of removed agents still in detector_state 2 minutes after the purge", rows)
		}
		time.Sleep(200 * time.Millisecond)
	}
	check("purged")
	if got := rowCount(t, s, "detector_state"); got != 5 {
		t.Errorf("%d rows left in detector_state; want 5 (a2, a4, a5, peer, other)", got)
	}
	// A removed agent that calls again is saved and loads as new.
	if err := s.SaveStates(ctx, []detstate.State{{Topic: "t", Partition: 1, Kind: detstate.KindAgent, Key: "a1", UpdatedMs: 400, Blob: []byte{7}}}); err != nil {
		t.Fatal(err)
	}
	if st, ok, err := s.LoadState(ctx, detstate.KindAgent, "a1"); !ok || err != nil || !slices.Equal(st.Blob, []byte{7}) {
		t.Errorf("returning a1: LoadState = %+v, %v, %v", st, ok, err)
	}
}
