package respond

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/outbox"
)

// groupedPrefix starts the result of an approval request that joined
// another: "grouped:" and the other's key.
const groupedPrefix = "grouped:"

// approvalGroup is the open group of one cause: its first request, whose
// message is the one posted.
type approvalGroup struct {
	leader string
	opened time.Time
}

// approvalCause is what makes approval requests "the same": the anomaly
// kind, the playbook, the gated steps and the channel. A flood of
// unregistered agents gives many requests with one cause; an analyst
// answers it once. Its values come from the configuration and the
// detector's kinds, so there are few causes whatever the flood.
func approvalCause(j job, channel string) string {
	kinds := make([]string, 0, len(j.Pending))
	for _, p := range j.Pending {
		kinds = append(kinds, string(p.Kind()))
	}
	return strings.Join([]string{j.Anomaly.Kind, j.Decision.Playbook, strings.Join(kinds, "+"), channel}, "\x00")
}

// groupApproval joins request key to the open group of its cause, or
// opens one with it. joined says the request joined leader's group and
// must not be posted. A group closes after the window, or once its
// leader is answered: later requests start a new one, so an answer never
// covers a request that came after it. Manual runs are never grouped.
func (e *Engine) groupApproval(ctx context.Context, key string, j job, channel string) (leader string, joined bool, err error) {
	window := e.o.Settings.ApprovalGroupWindow
	if window <= 0 || j.Decision.Manual {
		return "", false, nil
	}
	cause := approvalCause(j, channel)
	now := e.now()
	e.groupMu.Lock()
	defer e.groupMu.Unlock()
	g, ok := e.approvals[cause]
	if ok && g.leader != key && now.Sub(g.opened) < window {
		_, answered, err := e.o.Outbox.Get(ctx, g.leader+"-answer")
		if err != nil {
			return "", false, err
		}
		if !answered {
			return g.leader, true, nil
		}
	}
	if !ok || g.leader != key {
		e.approvals[cause] = approvalGroup{leader: key, opened: now}
	}
	return "", false, nil
}

// answerGroup gives the answer of a group's leader to every request that
// joined it. Each member keeps its own timeout entry as well: a member
// that joins while the answer is being given is answered by its timeout,
// with the step's default.
func (e *Engine) answerGroup(ctx context.Context, j job) (int, error) {
	if j.Request == "" {
		return 0, nil
	}
	done, err := e.o.Outbox.List(ctx, outbox.StateDone)
	if err != nil {
		return 0, fmt.Errorf("find the requests grouped with %s: %w", j.Request, err)
	}
	var members []string
	for _, en := range done {
		if en.Kind == kindApprove && string(en.Result) == groupedPrefix+j.Request {
			members = append(members, en.Key)
		}
	}
	slices.Sort(members)
	for _, m := range members {
		if _, err := e.Answer(ctx, m, j.Approved, j.Actor); err != nil {
			return 0, fmt.Errorf("answer %s, grouped with %s: %w", m, j.Request, err)
		}
	}
	return len(members), nil
}
