// Package detstate holds the detector's persisted state as plain rows:
// serialised per-agent and per-peer-group baselines and the per-partition
// checkpoint that says which windows are closed and where to resume. The
// ClickHouse store (internal/platform/chstore) and the embedded file store (this
// package's FileStore) both keep these rows, so a restarted or rebalanced
// detector continues with the same baselines.
package detstate

// State is one serialised baseline: an agent's (Kind "agent", Key = agent
// id) or a peer group's (Kind "peer", Key = role, "" for all agents).
type State struct {
	Topic     string
	Partition int32
	Kind      string
	Key       string
	// UpdatedMs orders versions of the same (Kind, Key): the newest wins.
	UpdatedMs int64
	Blob      []byte
}

// State kinds.
const (
	KindAgent = "agent"
	KindPeer  = "peer"
	// KindPartition holds a partition's watermark sources (Key: the
	// partition number).
	KindPartition = "partition"
)

// Checkpoint is where one events-topic partition stands for a detector
// group: every window ending at or before ClosedThroughMs has been scored
// and written; processing resumes at ResumeOffset.
type Checkpoint struct {
	Group           string
	Topic           string
	Partition       int32
	ClosedThroughMs int64
	WatermarkMs     int64
	// ResumeOffset is the first offset not yet folded into a closed window
	// (-1: none recorded, use the group's committed offset).
	ResumeOffset int64
	// LastOffset is the highest offset processed when the checkpoint was taken.
	LastOffset int64
	UpdatedMs  int64
}
