package detstate

import (
	"slices"
	"strconv"
	"testing"
)

// capStates are five agents of topic t saved at increasing times over
// partitions 0 and 1, a peer and a partition row, and an agent of another
// topic.
func capStates() []State {
	var in []State
	for i := range 5 {
		in = append(in, State{Topic: "t", Partition: int32(i % 2), Kind: KindAgent, Key: "a" + strconv.Itoa(i), UpdatedMs: int64(100 + i), Blob: []byte{byte(i + 1)}})
	}
	return append(in,
		State{Topic: "t", Partition: 0, Kind: KindPeer, Key: "0/", UpdatedMs: 1, Blob: []byte("peer")},
		State{Topic: "t", Partition: 1, Kind: KindPartition, Key: "1", UpdatedMs: 1, Blob: []byte("src")},
		State{Topic: "u", Partition: 0, Kind: KindAgent, Key: "other", UpdatedMs: 1, Blob: []byte("o")},
	)
}

func TestFileStoreLoadPartitionsCapped(t *testing.T) {
	for _, tc := range []struct {
		name       string
		max        int
		wantLoaded []string // agent keys returned with their state
		wantRest   []string // agent keys passed to rest
	}{
		{"all", -1, []string{"a0", "a1", "a2", "a3", "a4"}, nil},
		{"none", 0, nil, []string{"a0", "a1", "a2", "a3", "a4"}},
		{"newest two", 2, []string{"a3", "a4"}, []string{"a0", "a1", "a2"}},
		{"more than stored", 9, []string{"a0", "a1", "a2", "a3", "a4"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t, t.TempDir())
			if err := s.SaveStates(t.Context(), capStates()); err != nil {
				t.Fatal(err)
			}
			var rest []string
			_, states, err := s.LoadPartitionsCapped(t.Context(), "g", "t", []int32{0, 1}, tc.max, func(k string) { rest = append(rest, k) })
			if err != nil {
				t.Fatal(err)
			}
			var loaded []string
			peers := 0
			for _, st := range states {
				if st.Kind == KindAgent {
					loaded = append(loaded, st.Key)
					if st.Blob[0] != st.Key[1]-'0'+1 {
						t.Errorf("agent %s came back with blob %v", st.Key, st.Blob)
					}
				} else {
					peers++
				}
			}
			slices.Sort(loaded)
			slices.Sort(rest)
			if !slices.Equal(loaded, tc.wantLoaded) || !slices.Equal(rest, tc.wantRest) || peers != 2 {
				t.Errorf("loaded %v, rest %v, %d other rows; want %v, %v, 2", loaded, rest, peers, tc.wantLoaded, tc.wantRest)
			}
		})
	}
}

func TestFileStoreExpireAgents(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	ctx := t.Context()
	if err := s.SaveStates(ctx, capStates()); err != nil {
		t.Fatal(err)
	}
	// Saved before 103: a0, a1, a2; a1 is "registered" (drop says no);
	// only partition 0 and 1 of topic t are asked for.
	var asked []string
	n, err := s.ExpireAgents(ctx, "t", []int32{0, 1}, 103, 500, func(k string) bool {
		asked = append(asked, k)
		return k != "a1"
	})
	if err != nil || n != 2 {
		t.Fatalf("ExpireAgents = %d, %v; want 2 removed", n, err)
	}
	if !slices.Equal(asked, []string{"a0", "a1", "a2"}) {
		t.Errorf("drop asked about %v; want the agents saved before the cutoff, in key order", asked)
	}
	check := func(s *FileStore, phase string) {
		t.Helper()
		for key, want := range map[string]bool{"a0": false, "a1": true, "a2": false, "a3": true, "a4": true} {
			if _, ok, err := s.LoadState(ctx, KindAgent, key); ok != want || err != nil {
				t.Errorf("%s: LoadState(%s) ok = %v, %v; want %v", phase, key, ok, err, want)
			}
		}
		if _, ok, _ := s.LoadState(ctx, KindAgent, "other"); !ok {
			t.Errorf("%s: the other topic's agent was removed", phase)
		}
		if _, ok, _ := s.LoadState(ctx, KindPeer, "0/"); !ok {
			t.Errorf("%s: the peer state was removed", phase)
		}
	}
	check(s, "open")
	s.Close()
	check(openTest(t, dir), "reopened")
	// Nothing left to remove: no rewrite, no error.
	if n, err := openTest(t, t.TempDir()).ExpireAgents(ctx, "t", []int32{0}, 1<<60, 0, func(string) bool { return true }); n != 0 || err != nil {
		t.Errorf("ExpireAgents on an empty store = %d, %v", n, err)
	}
}
