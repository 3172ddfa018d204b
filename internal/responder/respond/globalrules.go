package respond

import (
	"context"
	"os"
	"slices"
	"strings"

	"github.com/agentwatch/agentwatch/internal/responder/global"
	"github.com/agentwatch/agentwatch/internal/responder/revoke"
)

// gatewayExtras are what buildGateways makes besides the guards: the
// deny-list adapter (its file, served and mirrored) and the kill switch
// the guards obey (every switch of the mode, any of which engages it).
type gatewayExtras struct {
	denylist *revoke.Denylist
	kill     revoke.KillSwitch
}

// instanceName names this process in budget claims: the host name.
func instanceName() string {
	h, _ := os.Hostname()
	return h
}

// denylistSource serves GET /v1/denylist: from the shared ledger in the
// distributed mode (every instance serves the same list, with the same
// ETag), from the file otherwise.
type denylistSource struct {
	rules *global.Rules
	file  *revoke.Denylist
}

func (d denylistSource) DenylistText() ([]byte, string, error) {
	if d.rules != nil {
		body, etag := d.rules.DenylistText("denylist")
		return body, etag, nil
	}
	ids, err := d.file.IDs()
	if err != nil {
		return nil, "", err
	}
	var b strings.Builder
	for _, id := range ids {
		if !strings.ContainsAny(id, "\r\n") {
			b.WriteString(id)
			b.WriteByte('\n')
		}
	}
	return []byte(b.String()), global.ETag([]byte(b.String())), nil
}

// apiSwitch is the kill switch of /v1/kill-switch: the table's record,
// and whether any switch (kill_switch_file too) is engaged.
type apiSwitch struct {
	*revoke.TableSwitch
	any revoke.KillSwitch
}

func (s apiSwitch) Engaged() bool { return s.any.Engaged() }

// stillRevoked returns the entries of revoked ("adapter/credential" of
// incident) whose revocation the ledger does not hold as restored. The
// ledger is where a restore made anywhere lands (`responder restore`, the
// TTL, another instance), so this is what lifts the suppression of an
// incident's alerts everywhere, including in an incident restored while
// its state sat on another instance. A ledger that cannot be read keeps
// the entry: suppression errs on the side of a contained agent.
func (e *Engine) stillRevoked(ctx context.Context, incident string, revoked []string) []string {
	if e.o.Ledger == nil || len(revoked) == 0 {
		return revoked
	}
	return slices.DeleteFunc(slices.Clone(revoked), func(k string) bool {
		adapter, cred, ok := strings.Cut(k, "/")
		if !ok {
			return false
		}
		rec, found, err := e.o.Ledger.Get(ctx, revoke.Key{Adapter: adapter, CredentialID: cred, IncidentID: incident})
		return err == nil && found && rec.State == revoke.StateRestored
	})
}
