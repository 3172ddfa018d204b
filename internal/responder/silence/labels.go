package silence

import (
	"slices"
	"strconv"

	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

// The labels of an anomaly, the only names a Matcher may use. A label the
// anomaly leaves empty is absent from Labels; a matcher sees it as "".
const (
	// LabelAgentID is the agent's id (Anomaly.AgentID).
	LabelAgentID = "agent_id"
	// LabelKind is the anomaly's kind (anomaly.Kinds: behaviour, drift,
	// shadow_agent, ...).
	LabelKind = "kind"
	// LabelSeverity is low, medium, high or critical.
	LabelSeverity = "severity"
	// LabelRole is the agent's role from the agent registry, if known.
	LabelRole = "role"
	// LabelOwner is the agent's owner from the agent registry, if known.
	LabelOwner = "owner"
	// LabelCredentialID is the id of the credential the agent used, if
	// known.
	LabelCredentialID = "credential_id"
	// LabelPartition is the events-topic partition the agent's events came
	// from, in decimal. Always present: partition 0 is a real partition.
	LabelPartition = "partition"
	// LabelFeature is the name of the feature that explains the anomaly
	// most (Anomaly.Explanation[0], the most surprising first); absent for
	// rule anomalies, which have no explanation.
	LabelFeature = "feature"
)

var labelNames = []string{
	LabelAgentID, LabelCredentialID, LabelFeature, LabelKind,
	LabelOwner, LabelPartition, LabelRole, LabelSeverity,
}

// LabelNames returns the label names a Matcher may use, sorted.
func LabelNames() []string { return slices.Clone(labelNames) }

func isLabelName(s string) bool {
	_, ok := slices.BinarySearch(labelNames, s)
	return ok
}

// Labels returns the labels of a, the values silences match against. Empty
// fields are left out (a matcher reads a missing label as "").
func Labels(a anomaly.Anomaly) map[string]string {
	l := make(map[string]string, len(labelNames))
	put := func(k, v string) {
		if v != "" {
			l[k] = v
		}
	}
	put(LabelAgentID, a.AgentID)
	put(LabelKind, a.Kind)
	put(LabelSeverity, a.Severity)
	put(LabelRole, a.Role)
	put(LabelOwner, a.Owner)
	put(LabelCredentialID, a.CredentialID)
	put(LabelPartition, strconv.FormatInt(int64(a.Partition), 10))
	put(LabelFeature, a.TopFeature())
	return l
}
