package anomaly

// VerdictFalsePositive is the only verdict today: a human said the anomaly
// was normal behaviour for the agent.
const VerdictFalsePositive = "false_positive"

// Verdict is a human's judgement of one anomaly, sent from the responder
// back to the detector (the false-positive feedback loop, docs/feedback.md).
// The detector folds the window it names into the agent's baseline, so the
// same behaviour stops looking anomalous.
type Verdict struct {
	// ID identifies the verdict; the same click retried gives the same ID,
	// so a detector can apply each verdict once.
	ID        string `json:"verdict_id"`
	AnomalyID string `json:"anomaly_id"`
	AgentID   string `json:"agent_id"`
	// Kind is the anomaly's kind.
	Kind          string `json:"kind"`
	WindowStartMs int64  `json:"window_start_ms"`
	WindowEndMs   int64  `json:"window_end_ms"`
	// Values are the window's observed feature values indexed by
	// features.ID (from the window's Score), nil when unknown (a rule
	// anomaly, or a window whose score is no longer stored).
	Values []float64 `json:"values,omitempty"`
	// Verdict is VerdictFalsePositive.
	Verdict string `json:"verdict"`
	// Author is who gave the verdict (a Slack user id, a CLI user).
	Author string `json:"author"`
	// AtMs is when the verdict was given, in Unix milliseconds.
	AtMs int64 `json:"at_ms"`
}
