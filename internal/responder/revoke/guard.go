package revoke

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/keylock"
)

// Options configure a Guard.
type Options struct {
	// Ledger records every revocation; required. Share it between the
	// Guards of a process.
	Ledger Ledger
	// Budget limits automatic revocations; share one between the Guards
	// of a process. nil allows none: every automatic request needs
	// approval.
	Budget *Budget
	// Claims, when set, is the budget instead of Budget: the distributed
	// mode's, shared by every instance through the global table.
	Claims *Claims
	// Instance names this process in its budget claims.
	Instance string
	// Kill stops revocations while engaged; nil is never engaged.
	Kill KillSwitch
	// Metrics, if set, counts actions and refusals.
	Metrics *Metrics
	// Log receives one Info line per action that reached the gateway.
	Log *slog.Logger
	// Now is the clock of the records; default time.Now.
	Now func() time.Time
}

// Guard is the Revoker for one Gateway. It makes revocation idempotent
// per (adapter, credential, incident) through the Ledger, holds automatic
// requests to the Budget and the KillSwitch, and records each action
// before it starts (pending) and after it ends, so a crash in between is
// resumed, not repeated or lost. Safe for concurrent use: calls for one
// key run one at a time, others in parallel.
type Guard struct {
	gw      Gateway
	ledger  Ledger
	budget  *Budget
	claims  *Claims
	by      string
	kill    KillSwitch
	metrics *Metrics
	log     *slog.Logger
	now     func() time.Time

	locks keylock.Map[Key]
}

var _ Revoker = (*Guard)(nil)

// NewGuard returns the Guard of gw.
func NewGuard(gw Gateway, o Options) (*Guard, error) {
	if gw == nil {
		return nil, errors.New("revoke guard: nil gateway")
	}
	if o.Ledger == nil {
		return nil, fmt.Errorf("revoke guard %s: nil ledger; revocations must be recorded", gw.Name())
	}
	g := &Guard{gw: gw, ledger: o.Ledger, budget: o.Budget, claims: o.Claims, by: o.Instance, kill: o.Kill, metrics: o.Metrics, log: o.Log, now: o.Now}
	if g.kill == nil {
		g.kill = AnySwitch(nil)
	}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	if g.now == nil {
		g.now = time.Now
	}
	g.log = g.log.With("adapter", gw.Name())
	return g, nil
}

// Adapter returns the gateway adapter's name.
func (g *Guard) Adapter() string { return g.gw.Name() }

func (g *Guard) key(t Target) Key {
	return Key{Adapter: g.gw.Name(), CredentialID: t.CredentialID, IncidentID: t.IncidentID}
}

func (g *Guard) check(t Target) error {
	if err := t.validate(); err != nil {
		return err
	}
	if err := g.gw.Check(t); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidTarget, err)
	}
	return nil
}

// Revoke implements Revoker. In order:
//   - a key this incident revoked already returns already_revoked, with
//     no call;
//   - an automatic request for a key already restored returns an
//     ApprovalError (reason restored): re-revoking is a human's call;
//   - with the kill switch engaged, an automatic request returns an
//     ApprovalError (kill_switch) and a manual one ErrKillSwitch unless
//     Force;
//   - the gateway is called; just before it changes anything (its keep),
//     a new automatic revocation spends one unit of the budget, or stops
//     with an ApprovalError (budget), and the record is written pending
//     with what Restore will need; resuming a pending one spends none,
//     and a unit spent for a credential the gateway reports already done,
//     or for a call that failed before its change, is refunded;
//   - the record is written revoked.
//
// On a gateway error after its keep the record stays pending, and a later
// Revoke of the key resumes it; before its keep nothing was recorded or
// changed. If the last ledger write fails, Revoke returns the Result and
// the error: the revocation is made but not recorded, and calling again is
// safe.
func (g *Guard) Revoke(ctx context.Context, t Target) (Result, error) {
	if err := g.check(t); err != nil {
		return Result{}, err
	}
	k := g.key(t)
	defer g.locks.Lock(k)()

	rec, found, err := g.ledger.Get(ctx, k)
	if err != nil {
		return Result{}, fmt.Errorf("read revocation record: %w", err)
	}
	resume := found && rec.State == StatePending
	switch {
	case found && rec.State == StateRevoked:
		g.metrics.action(k.Adapter, string(StatusAlreadyRevoked))
		return Result{Status: StatusAlreadyRevoked, Detail: fmt.Sprintf("revoked in this incident at %s", rec.RevokedAt.UTC().Format(time.RFC3339))}, nil
	case found && rec.State == StateRestored && t.automatic():
		g.metrics.refusal(ReasonRestored)
		return Result{}, &ApprovalError{Reason: ReasonRestored, Detail: fmt.Sprintf("credential %s was revoked and then restored in incident %s; revoking it again needs a human", t.CredentialID, t.IncidentID)}
	}
	if g.kill.Engaged() {
		switch {
		case t.automatic():
			g.metrics.refusal(ReasonKillSwitch)
			return Result{}, &ApprovalError{Reason: ReasonKillSwitch, Detail: "the kill switch is engaged: automatic revocations are stopped"}
		case !t.Force:
			g.metrics.refusal(ReasonKillSwitch + "_manual")
			return Result{}, ErrKillSwitch
		}
	}
	if t.automatic() && !resume && g.claims == nil && g.budget == nil {
		g.metrics.refusal(ReasonBudget)
		return Result{}, &ApprovalError{Reason: ReasonBudget, Detail: g.budgetDetail()}
	}
	now := g.now().UTC()
	if !resume {
		rec = Record{Key: k, StartedAt: now}
	}
	rec.AgentID, rec.Consumer, rec.Origin, rec.State, rec.Status = t.AgentID, t.Consumer, t.Origin, StatePending, ""
	rec.RevokedAt, rec.RestoredAt = time.Time{}, time.Time{}
	// The budget is spent and the record written pending only once the
	// gateway is about to change (keep), not before its read: a credential
	// found gone then costs no unit and no write, and the pending record
	// carries the restore material in the same write. A crash before keep
	// leaves nothing to resume, since nothing was changed.
	var (
		spentAt time.Time
		claim   string
		spent   bool
		kept    bool
		refused *ApprovalError
	)
	keep := func(saved []byte) error {
		if t.automatic() && !resume && !spent {
			switch {
			case g.claims != nil:
				var err error
				if claim, spent, err = g.claims.Claim(ctx, g.by); err != nil {
					return fmt.Errorf("claim revocation budget: %w", err)
				}
			case g.budget != nil:
				spentAt, spent = g.budget.spend()
			}
			if !spent {
				g.metrics.refusal(ReasonBudget)
				refused = &ApprovalError{Reason: ReasonBudget, Detail: g.budgetDetail()}
				return refused
			}
		}
		rec.Saved = saved
		if err := g.ledger.Put(ctx, rec); err != nil {
			return fmt.Errorf("record revocation start: %w", err)
		}
		kept = true
		return nil
	}

	start := time.Now()
	res, err := g.gw.Revoke(ctx, t, keep)
	g.metrics.observe(k.Adapter, time.Since(start).Seconds())
	if spent && ((err != nil && !kept) || (err == nil && res.Status == StatusAlreadyRevoked)) {
		// The gateway failed before its change (nothing to resume: the
		// next attempt claims again), or found the credential gone: the
		// unit goes back. A spent unit is never a resumed revocation's.
		g.refund(ctx, spentAt, claim)
	}
	if refused != nil {
		return Result{}, refused
	}
	if err != nil {
		g.metrics.action(k.Adapter, "error")
		return res, fmt.Errorf("revoke credential %s through %s: %w", t.CredentialID, k.Adapter, err)
	}
	if res.Status == StatusAlreadyRevoked {
		if resume && (rec.Saved != nil || rec.Withheld) {
			// Started before a crash or failure, got as far as the
			// change, and found done now: it was this incident's doing,
			// so Restore must undo it.
			res.Status, res.Detail = StatusRevoked, res.Detail+" (finishing an interrupted revocation)"
		}
	}
	rec.State, rec.Status, rec.RevokedAt = StateRevoked, res.Status, g.now().UTC()
	g.metrics.action(k.Adapter, string(res.Status))
	g.log.Info("revoke done", "credential_id", t.CredentialID, "agent_id", t.AgentID, "incident_id", t.IncidentID,
		"origin", t.Origin.String(), "status", string(res.Status), "attempts", res.Attempts)
	if err := g.ledger.Put(ctx, rec); err != nil {
		return res, fmt.Errorf("record revocation of %s (made, not recorded; calling Revoke again is safe): %w", t.CredentialID, err)
	}
	return res, nil
}

// refund gives back a unit spent from the process's Budget (at) or the
// global Claims (claim). A failed global refund leaves the unit spent: the
// budget then errs on the side of fewer revocations.
func (g *Guard) refund(ctx context.Context, at time.Time, claim string) {
	if g.claims != nil {
		if err := g.claims.Refund(context.WithoutCancel(ctx), claim); err != nil {
			g.log.Warn("budget refund failed; the unit stays spent until the window passes", "err", err)
		}
		return
	}
	g.budget.refund(at)
}

func (g *Guard) budgetDetail() string {
	if g.claims != nil {
		return fmt.Sprintf("the revocation budget (%d per %s, across every instance) is spent", g.claims.limit, g.claims.interval)
	}
	if g.budget == nil {
		return "no revocation budget is configured: every automatic revocation needs approval"
	}
	return fmt.Sprintf("the revocation budget (%d per %s) is spent", g.budget.limit, g.budget.interval)
}

// Restore implements Revoker. It undoes only what the incident did: with
// no record it returns ErrNoRevocation; for a credential the incident
// found already revoked it returns left_revoked with no call; a record
// restored already gives already_restored. Neither the budget nor the
// kill switch applies to restores.
func (g *Guard) Restore(ctx context.Context, t Target) (Result, error) {
	if err := t.validate(); err != nil {
		return Result{}, err
	}
	k := g.key(t)
	defer g.locks.Lock(k)()

	rec, found, err := g.ledger.Get(ctx, k)
	switch {
	case err != nil:
		return Result{}, fmt.Errorf("read revocation record: %w", err)
	case !found:
		return Result{}, fmt.Errorf("restore credential %s through %s in incident %s: %w", t.CredentialID, k.Adapter, t.IncidentID, ErrNoRevocation)
	case rec.State == StateRestored:
		g.metrics.action(k.Adapter, string(StatusAlreadyRestored))
		return Result{Status: StatusAlreadyRestored, Detail: fmt.Sprintf("restored at %s", rec.RestoredAt.UTC().Format(time.RFC3339))}, nil
	case rec.State == StateRevoked && rec.Status == StatusAlreadyRevoked:
		g.metrics.action(k.Adapter, string(StatusLeftRevoked))
		return Result{Status: StatusLeftRevoked, Detail: "the credential was already revoked when this incident came to revoke it; left as it is"}, nil
	}
	// Revoked, or pending (which may or may not have reached the
	// gateway): undoing is harmless either way.
	start := time.Now()
	res, err := g.gw.Restore(ctx, t, rec.Saved)
	g.metrics.observe(k.Adapter, time.Since(start).Seconds())
	if err != nil {
		g.metrics.action(k.Adapter, "error")
		return res, fmt.Errorf("restore credential %s through %s: %w", t.CredentialID, k.Adapter, err)
	}
	rec.State, rec.RestoredAt = StateRestored, g.now().UTC()
	g.metrics.action(k.Adapter, string(res.Status))
	g.log.Info("restore done", "credential_id", t.CredentialID, "agent_id", t.AgentID, "incident_id", t.IncidentID,
		"origin", t.Origin.String(), "status", string(res.Status), "attempts", res.Attempts)
	if err := g.ledger.Put(ctx, rec); err != nil {
		return res, fmt.Errorf("record restore of %s (made, not recorded; calling Restore again is safe): %w", t.CredentialID, err)
	}
	return res, nil
}
