package revoke

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestBudgetFiftyAgentsInOneMinute(t *testing.T) {
	env := newEnv(t)
	fk := newFakeKong(t)
	clock := &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	b := mustBudget(t, 5, time.Hour, clock.Now)
	g := env.guard(t, env.kong(t, fk), b, nil)

	const agents = 50
	for i := range agents {
		fk.add("bot", fmt.Sprintf("cred-%02d", i), fmt.Sprintf("key-%02d", i))
	}
	var (
		mu       sync.Mutex
		revoked  int
		approval int
		wg       sync.WaitGroup
	)
	for i := range agents {
		wg.Go(func() {
			clock.Add(time.Second) // 50 requests within one minute
			tg := Target{CredentialID: fmt.Sprintf("cred-%02d", i), AgentID: fmt.Sprintf("agent-%02d", i), Consumer: "bot", IncidentID: fmt.Sprintf("inc-%02d", i)}
			res, err := g.Revoke(t.Context(), tg)
			mu.Lock()
			defer mu.Unlock()
			var ae *ApprovalError
			switch {
			case err == nil && res.Status == StatusRevoked:
				revoked++
			case errors.As(err, &ae) && ae.Reason == ReasonBudget && errors.Is(err, ErrNeedsApproval):
				approval++
			default:
				t.Errorf("Revoke(%s) = %+v, %v; want revoked or ErrNeedsApproval(budget)", tg.CredentialID, res, err)
			}
		})
	}
	wg.Wait()
	if revoked != 5 || approval != 45 {
		t.Fatalf("%d revoked, %d approval requests; want 5 and 45", revoked, approval)
	}
	if n := fk.count(http.MethodDelete); n != 5 {
		t.Fatalf("kong got %d DELETEs; want 5", n)
	}
	if got := testutil.ToFloat64(env.m.Refusals.WithLabelValues(ReasonBudget)); got != 45 {
		t.Errorf("revocation_refusals_total{budget} = %v; want 45", got)
	}
	if b.Remaining() != 0 {
		t.Errorf("Remaining = %d; want 0", b.Remaining())
	}

	// An approved request goes through past the budget.
	fk.add("bot", "extra", "key-extra")
	res, err := g.Revoke(t.Context(), Target{CredentialID: "extra", Consumer: "bot", IncidentID: "inc-x", Origin: Approved})
	if err != nil || res.Status != StatusRevoked {
		t.Fatalf("approved Revoke past the budget = %+v, %v; want revoked", res, err)
	}

	// The window slides: an hour after the first five, five more.
	clock.Add(time.Hour)
	if b.Remaining() != 5 {
		t.Fatalf("Remaining an hour later = %d; want 5", b.Remaining())
	}
}

func TestBudgetSlidingWindowAndRefund(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	b := mustBudget(t, 2, time.Minute, clock.Now)
	t1, ok1 := b.spend()
	clock.Add(30 * time.Second)
	_, ok2 := b.spend()
	_, ok3 := b.spend()
	if !ok1 || !ok2 || ok3 {
		t.Fatalf("spend = %v %v %v; want true true false", ok1, ok2, ok3)
	}
	clock.Add(30 * time.Second) // the first unit is exactly one interval old
	if b.Remaining() != 1 {
		t.Fatalf("Remaining = %d; want 1", b.Remaining())
	}
	b.refund(t1) // already expired: no effect
	if b.Remaining() != 1 {
		t.Fatalf("Remaining after refunding an expired unit = %d; want 1", b.Remaining())
	}
	if _, err := NewBudget(-1, time.Minute, nil); err == nil {
		t.Error("NewBudget(-1) = nil error")
	}
	if _, err := NewBudget(1, 0, nil); err == nil {
		t.Error("NewBudget(interval 0) = nil error")
	}
}

func TestBudgetRefundsAlreadyRevoked(t *testing.T) {
	env := newEnv(t)
	fk := newFakeKong(t)
	b := mustBudget(t, 1, time.Hour, nil)
	g := env.guard(t, env.kong(t, fk), b, nil)
	// Not at kong: already revoked, which spends nothing.
	if res, err := g.Revoke(t.Context(), Target{CredentialID: "gone", IncidentID: "i"}); err != nil || res.Status != StatusAlreadyRevoked {
		t.Fatalf("Revoke = %+v, %v", res, err)
	}
	if b.Remaining() != 1 {
		t.Fatalf("Remaining = %d; want 1", b.Remaining())
	}
}

func TestNilBudgetSendsEverythingToApproval(t *testing.T) {
	env := newEnv(t)
	fk := newFakeKong(t)
	fk.add("bot", "c", "k")
	g := env.guard(t, env.kong(t, fk), nil, nil)
	if _, err := g.Revoke(t.Context(), Target{CredentialID: "c", IncidentID: "i"}); !errors.Is(err, ErrNeedsApproval) {
		t.Fatalf("automatic Revoke without a budget = %v; want ErrNeedsApproval", err)
	}
	if n := len(fk.requests()); n != 0 {
		t.Fatalf("kong got %d requests; want 0", n)
	}
}

func TestKillSwitch(t *testing.T) {
	env := newEnv(t)
	fk := newFakeKong(t)
	for _, id := range []string{"a", "b", "c"} {
		fk.add("bot", id, "key-"+id)
	}
	var sw Switch
	file := FileSwitch(filepath.Join(t.TempDir(), "stop-revocations"))
	b := mustBudget(t, 10, time.Hour, nil)
	g := env.guard(t, env.kong(t, fk), b, AnySwitch{&sw, file})

	sw.Set(true)
	var ae *ApprovalError
	if _, err := g.Revoke(t.Context(), Target{CredentialID: "a", IncidentID: "i"}); !errors.As(err, &ae) || ae.Reason != ReasonKillSwitch {
		t.Fatalf("automatic Revoke with the switch on = %v; want ApprovalError(kill_switch)", err)
	}
	if _, err := g.Revoke(t.Context(), Target{CredentialID: "a", IncidentID: "i", Origin: Manual}); !errors.Is(err, ErrKillSwitch) {
		t.Fatalf("manual Revoke with the switch on = %v; want ErrKillSwitch", err)
	}
	if _, err := g.Revoke(t.Context(), Target{CredentialID: "a", IncidentID: "i", Force: true}); !errors.Is(err, ErrNeedsApproval) {
		t.Fatalf("forced automatic Revoke with the switch on = %v; want ErrNeedsApproval (force is for humans)", err)
	}
	if n := len(fk.requests()); n != 0 {
		t.Fatalf("kong got %d requests with the switch on; want 0", n)
	}
	if res, err := g.Revoke(t.Context(), Target{CredentialID: "a", IncidentID: "i", Origin: Approved, Force: true}); err != nil || res.Status != StatusRevoked {
		t.Fatalf("forced approved Revoke = %+v, %v; want revoked", res, err)
	}
	if b.Remaining() != 10 {
		t.Fatalf("Remaining = %d; want 10 (approved requests spend no budget)", b.Remaining())
	}
	// Restores are not stopped.
	if res, err := g.Restore(t.Context(), Target{CredentialID: "a", IncidentID: "i"}); err != nil || res.Status != StatusRestored {
		t.Fatalf("Restore with the switch on = %+v, %v; want restored", res, err)
	}

	sw.Set(false)
	if res, err := g.Revoke(t.Context(), Target{CredentialID: "b", IncidentID: "i"}); err != nil || res.Status != StatusRevoked {
		t.Fatalf("automatic Revoke with the switch off = %+v, %v; want revoked", res, err)
	}
	// The file switch: engaged while the file exists.
	if err := os.WriteFile(string(file), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Revoke(t.Context(), Target{CredentialID: "c", IncidentID: "i"}); !errors.Is(err, ErrNeedsApproval) {
		t.Fatalf("automatic Revoke with the file switch = %v; want ErrNeedsApproval", err)
	}
	if got := testutil.ToFloat64(env.m.Refusals.WithLabelValues(ReasonKillSwitch)); got != 3 {
		t.Errorf("revocation_refusals_total{kill_switch} = %v; want 3", got)
	}
}

func TestBudgetSeededFromLedgerAfterRestart(t *testing.T) {
	env := newEnv(t)
	fk := newFakeKong(t)
	clock := &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	for i := range 6 {
		fk.add("bot", fmt.Sprint(i), fmt.Sprint("k", i))
	}
	b := mustBudget(t, 3, time.Hour, clock.Now)
	g, _ := NewGuard(env.kong(t, fk), Options{Ledger: env.ledger, Budget: b, Now: clock.Now})
	for i := range 2 {
		if _, err := g.Revoke(t.Context(), Target{CredentialID: fmt.Sprint(i), IncidentID: "i"}); err != nil {
			t.Fatal(err)
		}
	}
	// Restart: a new process, a new budget, the same ledger.
	l2, err := OpenFileLedgerWith(env.ledger.Path(), LedgerOptions{Key: testLedgerKey})
	if err != nil {
		t.Fatal(err)
	}
	clock.Add(10 * time.Minute)
	b2 := mustBudget(t, 3, time.Hour, clock.Now)
	if err := b2.SeedFrom(t.Context(), l2); err != nil {
		t.Fatal(err)
	}
	if b2.Remaining() != 1 {
		t.Fatalf("Remaining after restart = %d; want 1 (two spent before)", b2.Remaining())
	}
	clock.Add(time.Hour)
	if b2.Remaining() != 3 {
		t.Fatalf("Remaining an hour later = %d; want 3", b2.Remaining())
	}
}

func TestRegisterBudgetGauges(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b, err := NewBudget(3, time.Minute, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	RegisterBudget(reg, b)
	gauge := func(name string) float64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == name {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		t.Fatalf("%s not gathered", name)
		return 0
	}
	for _, tc := range []struct {
		spend     int
		advance   time.Duration
		remaining float64
	}{
		{0, 0, 3},
		{2, 0, 1},
		{1, 0, 0},
		{0, time.Minute, 3}, // the window slid past every spending
	} {
		for range tc.spend {
			if _, ok := b.spend(); !ok {
				t.Fatal("spend refused within the limit")
			}
		}
		now = now.Add(tc.advance)
		if got := gauge("agentwatch_responder_revoke_budget_remaining"); got != tc.remaining {
			t.Errorf("remaining after %d more spent, %s later: %g, want %g", tc.spend, tc.advance, got, tc.remaining)
		}
		if got := gauge("agentwatch_responder_revoke_budget_limit"); got != 3 {
			t.Errorf("limit %g, want 3", got)
		}
	}
}

// TestBudgetRefundsGoneAtTheDelete: a credential Kong still had at the GET
// but not at the DELETE was not this revocation's doing: its unit, spent
// just before the DELETE, goes back.
func TestBudgetRefundsGoneAtTheDelete(t *testing.T) {
	env := newEnv(t)
	fk := newFakeKong(t)
	fk.add("bot", "racy", "k")
	fk.deleteCodes = []int{http.StatusNotFound}
	b := mustBudget(t, 1, time.Hour, nil)
	g := env.guard(t, env.kong(t, fk), b, nil)
	res, err := g.Revoke(t.Context(), Target{CredentialID: "racy", Consumer: "bot", IncidentID: "i"})
	if err != nil || res.Status != StatusAlreadyRevoked {
		t.Fatalf("Revoke = %+v, %v; want already_revoked", res, err)
	}
	if b.Remaining() != 1 {
		t.Fatalf("Remaining = %d; want 1 (refunded)", b.Remaining())
	}
}
