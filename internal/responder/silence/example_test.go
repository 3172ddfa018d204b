package silence_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/silence"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

// The responder's side: a false-positive click adds a silence under the
// click's key, and later anomalies it matches post no alert.
func Example() {
	dir, _ := os.MkdirTemp("", "silences")
	defer os.RemoveAll(dir)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	store, err := silence.Open(filepath.Join(dir, "silences.jsonl"), silence.Options{Now: func() time.Time { return now }})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer store.Close()

	a := anomaly.Anomaly{ID: "an1", AgentID: "cs-agent-1", Kind: anomaly.Behaviour, Severity: "high",
		Explanation: []anomaly.Feature{{Name: "response_bytes"}}}
	ctx := context.Background()
	for range 2 { // the click, and its retry
		s, created, err := store.AddWithKey(ctx, "slack:T1:click-42", silence.ForFalsePositive(a, "U123", now, 7*24*time.Hour))
		fmt.Println(silence.FormatMatchers(s.Matchers), created, err)
	}

	next := a
	next.ID = "an2"
	fmt.Println("muted:", len(store.Mutes(next, now.Add(time.Hour))) > 0)
	next.Explanation = []anomaly.Feature{{Name: "client_4xx"}}
	fmt.Println("muted:", len(store.Mutes(next, now.Add(time.Hour))) > 0)

	ms, err := silence.ParseMatchers(`{agent_id=~"cs-agent-.*", severity!~"high|critical"}`)
	fmt.Println(silence.FormatMatchers(ms), err)
	// Output:
	// agent_id=cs-agent-1,kind=behaviour,feature=response_bytes true <nil>
	// agent_id=cs-agent-1,kind=behaviour,feature=response_bytes false <nil>
	// muted: true
	// muted: false
	// agent_id=~cs-agent-.*,severity!~high|critical <nil>
}
