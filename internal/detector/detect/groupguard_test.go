package detect

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/agentwatch/agentwatch/internal/detector/detstate"
	"github.com/agentwatch/agentwatch/internal/platform/bus"
)

func cp(group, topic string, part int32, updated int64) detstate.Checkpoint {
	return detstate.Checkpoint{Group: group, Topic: topic, Partition: part, ClosedThroughMs: 60_000 * updated, ResumeOffset: 10 * updated, LastOffset: 10*updated + 3, UpdatedMs: updated}
}

func TestCheckGroup(t *testing.T) {
	const now = 1000
	for _, tc := range []struct {
		name     string
		cps      []detstate.Checkpoint
		takeOver string
		refuse   string // the group named in the refusal
		took     []detstate.Checkpoint
	}{
		{name: "empty store"},
		{name: "only this group", cps: []detstate.Checkpoint{cp("live", "events", 0, 5), cp("live", "events", 1, 6)}},
		{name: "another group, this one never wrote", cps: []detstate.Checkpoint{cp("other", "events", 0, 5)}, refuse: "other"},
		{name: "another group wrote after this one", cps: []detstate.Checkpoint{cp("live", "events", 0, 5), cp("other", "events", 0, 7)}, refuse: "other"},
		{name: "another group on another topic of the same store", cps: []detstate.Checkpoint{cp("other", "events2", 0, 5)}, refuse: "other"},
		{name: "an older group this one took over", cps: []detstate.Checkpoint{cp("old", "events", 0, 5), cp("live", "events", 0, 9)}},
		{name: "take over", takeOver: "old",
			cps:  []detstate.Checkpoint{cp("old", "events", 0, 5), cp("old", "events", 1, 6), cp("old", "other-topic", 0, 6)},
			took: []detstate.Checkpoint{{Group: "live", Topic: "events", Partition: 0, ClosedThroughMs: 300_000, ResumeOffset: 50, LastOffset: 53, UpdatedMs: now}, {Group: "live", Topic: "events", Partition: 1, ClosedThroughMs: 360_000, ResumeOffset: 60, LastOffset: 63, UpdatedMs: now}}},
		{name: "take over a group that still writes after this one did", takeOver: "old",
			cps: []detstate.Checkpoint{cp("live", "events", 0, 5), cp("old", "events", 0, 7)}, refuse: "old"},
		{name: "take over, but a third group is there too", takeOver: "old",
			cps: []detstate.Checkpoint{cp("old", "events", 0, 5), cp("third", "events", 0, 4)}, refuse: "third"},
		{name: "the newest of two other groups is named", cps: []detstate.Checkpoint{cp("b", "events", 0, 5), cp("a", "events", 0, 8)}, refuse: "a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			took, err := CheckGroup(tc.cps, "live", "events", tc.takeOver, now)
			var oge *OtherGroupError
			switch {
			case tc.refuse == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.refuse != "" && !errors.As(err, &oge):
				t.Fatalf("err %v, want a refusal naming %q", err, tc.refuse)
			case tc.refuse != "":
				msg := err.Error()
				if oge.Other != tc.refuse || !strings.Contains(msg, `"`+tc.refuse+`"`) || !strings.Contains(msg, `"live"`) ||
					!strings.Contains(msg, "clickhouse.database") || !strings.Contains(msg, "detector.take_over_group") {
					t.Errorf("refusal names %q, want %q, the own group, and the fixes: %s", oge.Other, tc.refuse, msg)
				}
			}
			if !reflect.DeepEqual(took, tc.took) {
				t.Errorf("took over %+v, want %+v", took, tc.took)
			}
		})
	}
}

// refusingSource fails the test if the detector ever asks for partitions.
type refusingSource struct{ t *testing.T }

func (s refusingSource) Next(ctx context.Context) (Generation, error) {
	s.t.Error("the detector joined its consumer group although another group's state is in the store")
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestSecondGroupRefusedOnFileStore: a detector whose group is not the
// one that wrote the embedded store's state stops before it joins its
// group, so it reads nothing, publishes nothing and writes nothing; with
// detector.take_over_group it continues from the other group's
// checkpoints instead.
func TestSecondGroupRefusedOnFileStore(t *testing.T) {
	dir := t.TempDir()
	st, err := detstate.OpenFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	live := []detstate.Checkpoint{cp("live", "events", 0, 5), cp("live", "events", 1, 6)}
	if err := st.SaveCheckpoints(ctx, live); err != nil {
		t.Fatal(err)
	}
	if err := st.SaveStates(ctx, []detstate.State{{Topic: "events", Partition: 0, Kind: detstate.KindAgent, Key: "a1", UpdatedMs: 5, Blob: []byte("baseline")}}); err != nil {
		t.Fatal(err)
	}
	cat := StaticCatalog{}
	out := &recordingWriter{}
	d := &Detector{Source: refusingSource{t}, Store: st, Out: out, Group: "second", EventsTopic: "events", Proc: NewProcessor(testSettings(), cat, nil)}
	err = d.Run(ctx)
	var oge *OtherGroupError
	if !errors.As(err, &oge) || oge.Other != "live" || oge.Group != "second" || oge.Partitions != 2 {
		t.Fatalf("Run: %v; want a refusal naming group live", err)
	}
	t.Logf("refusal: %v", err)
	cps, err := st.Checkpoints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cps, live) || len(out.msgs) != 0 {
		t.Errorf("after the refusal: checkpoints %+v, %d messages published; want live's alone and none", cps, len(out.msgs))
	}
	s, ok, err := st.LoadState(ctx, detstate.KindAgent, "a1")
	if err != nil || !ok || string(s.Blob) != "baseline" {
		t.Errorf("agent state after the refusal: %+v %v %v", s, ok, err)
	}

	// Renamed: the new group takes over and asks for its partitions.
	asked := make(chan struct{})
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	d = &Detector{Store: st, Out: out, Group: "renamed", EventsTopic: "events", TakeOverGroup: "live", Proc: NewProcessor(testSettings(), cat, nil),
		Source: SourceFunc(func(ctx context.Context) (Generation, error) {
			close(asked)
			cancel()
			<-ctx.Done()
			return nil, ctx.Err()
		})}
	if err := d.Run(cctx); err != nil {
		t.Fatalf("Run with take_over_group: %v", err)
	}
	select {
	case <-asked:
	default:
		t.Fatal("the detector taking over never joined its group")
	}
	cps, err = st.Checkpoints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[int32]detstate.Checkpoint{}
	for _, c := range cps {
		if c.Group == "renamed" {
			got[c.Partition] = c
		}
	}
	for _, c := range live {
		g := got[c.Partition]
		if g.ResumeOffset != c.ResumeOffset || g.ClosedThroughMs != c.ClosedThroughMs || g.UpdatedMs <= c.UpdatedMs {
			t.Errorf("partition %d taken over as %+v, from %+v", c.Partition, g, c)
		}
	}
	// Once it has taken over, the old group's older rows stop nobody.
	if _, err := CheckGroup(cps, "renamed", "events", "", 1<<50); err != nil {
		t.Errorf("after the take-over: %v", err)
	}
}

type recordingWriter struct{ msgs []bus.Message }

func (w *recordingWriter) Write(_ context.Context, msgs ...bus.Message) error {
	w.msgs = append(w.msgs, msgs...)
	return nil
}

func (w *recordingWriter) Close() error { return nil }
