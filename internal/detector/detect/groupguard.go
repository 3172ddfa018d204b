package detect

import (
	"context"
	"fmt"
	"time"

	"github.com/agentwatch/agentwatch/internal/detector/detstate"
	"github.com/agentwatch/agentwatch/internal/platform/chstore"
)

// CheckpointLister is a Store that lists every consumer group's
// checkpoints (chstore.Store and detstate.FileStore are). Without it the
// detector cannot tell whether another group shares its store, and does
// not check.
type CheckpointLister interface {
	Checkpoints(ctx context.Context) ([]detstate.Checkpoint, error)
}

// OtherGroupError is CheckGroup's refusal: another consumer group's
// detector wrote the state this one would read and overwrite.
type OtherGroupError struct {
	// Group is this detector's group, Other the group whose newer
	// checkpoints are in the store (on Topic, Partitions of them, the
	// newest written at UpdatedMs).
	Group, Other, Topic string
	Partitions          int
	UpdatedMs           int64
}

func (e *OtherGroupError) Error() string {
	return fmt.Sprintf("the detector state in this store belongs to consumer group %q (events topic %q, %d partition checkpoints, the newest written %s), not to this detector's group %q: "+
		"baselines are shared by every group that uses the store, so a second group would re-read the topic, publish its anomalies again and overwrite the first group's baselines. "+
		"Run the second group against its own store (clickhouse.database, or embedded.data_dir in the one-process mode), "+
		"or, if kafka.detector_group was renamed, stop the detectors of group %q and set detector.take_over_group: %q",
		e.Other, e.Topic, e.Partitions, time.UnixMilli(e.UpdatedMs).UTC().Format(time.RFC3339), e.Group, e.Other, e.Other)
}

// CheckGroup refuses (with an *OtherGroupError) a store whose checkpoints
// cps show another consumer group writing more recently than group has,
// unless that group is takeOver and group has none yet: then it returns
// takeOver's checkpoints on topic, as group's and stamped nowMs, for the
// caller to save, so that group resumes exactly where takeOver stopped.
// Older checkpoints of a group that was taken over make no difference.
func CheckGroup(cps []detstate.Checkpoint, group, topic, takeOver string, nowMs int64) ([]detstate.Checkpoint, error) {
	own, found := int64(0), false
	type mark struct {
		topic  string
		parts  int
		newest int64
	}
	others := map[string]*mark{}
	for _, c := range cps {
		if c.Group == group {
			own, found = max(own, c.UpdatedMs), true
			continue
		}
		m := others[c.Group]
		if m == nil {
			m = &mark{}
			others[c.Group] = m
		}
		m.parts++
		if c.UpdatedMs >= m.newest {
			m.newest, m.topic = c.UpdatedMs, c.Topic
		}
	}
	// The newest group that wrote after this one (or at all, when this
	// one never did), other than the one it may take over.
	refuse, takeOverNewer := "", false
	for g, m := range others {
		if found && m.newest <= own {
			continue
		}
		if g == takeOver && !found {
			takeOverNewer = true
			continue
		}
		if refuse == "" || m.newest > others[refuse].newest || (m.newest == others[refuse].newest && g < refuse) {
			refuse = g
		}
	}
	if refuse != "" {
		m := others[refuse]
		return nil, &OtherGroupError{Group: group, Other: refuse, Topic: m.topic, Partitions: m.parts, UpdatedMs: m.newest}
	}
	if !takeOverNewer {
		return nil, nil
	}
	var mine []detstate.Checkpoint
	for _, c := range cps {
		if c.Group == takeOver && c.Topic == topic {
			c.Group, c.UpdatedMs = group, nowMs
			mine = append(mine, c)
		}
	}
	return mine, nil
}

// checkGroup runs CheckGroup on the detector's store, if it can list
// checkpoints, and saves what it takes over.
func (d *Detector) checkGroup(ctx context.Context) error {
	l, ok := d.Store.(CheckpointLister)
	if !ok {
		return nil
	}
	var cps []detstate.Checkpoint
	err := d.retry(ctx, "list detector checkpoints", func(ctx context.Context) error {
		var err error
		cps, err = l.Checkpoints(ctx)
		return err
	})
	if err != nil {
		return err
	}
	took, err := CheckGroup(cps, d.Group, d.EventsTopic, d.TakeOverGroup, time.Now().UnixMilli())
	if err != nil {
		return err
	}
	if d.TakeOverGroup == "" {
		return nil
	}
	if len(took) == 0 {
		d.Log.Info("nothing to take over: this group already has the newest state, or the other group has no checkpoint on this topic",
			"group", d.Group, "take_over_group", d.TakeOverGroup, "topic", d.EventsTopic)
		return nil
	}
	if err := d.retry(ctx, "save taken-over checkpoints", func(ctx context.Context) error { return d.Store.SaveCheckpoints(ctx, took) }); err != nil {
		return err
	}
	d.Log.Warn("took over the detector state of another consumer group", "group", d.Group, "take_over_group", d.TakeOverGroup,
		"topic", d.EventsTopic, "checkpoints", len(took))
	return nil
}

var (
	_ CheckpointLister = (*chstore.Store)(nil)
	_ CheckpointLister = (*detstate.FileStore)(nil)
)
