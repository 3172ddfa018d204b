package revoke

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// manual is a target that bypasses the budget, for adapter tests.
func manual(cred, consumer, incident string) Target {
	return Target{CredentialID: cred, AgentID: "agent-" + cred, Consumer: consumer, IncidentID: incident, Origin: Manual}
}

func TestKongRevokeOnceThenAlready(t *testing.T) {
	env := newEnv(t)
	fk := newFakeKong(t)
	fk.add("bot", "cred-1", "key-one", "team-a")
	g := env.guard(t, env.kong(t, fk), nil, nil)

	res, err := g.Revoke(t.Context(), manual("cred-1", "bot", "inc-1"))
	if err != nil || res.Status != StatusRevoked || res.Attempts != 1 {
		t.Fatalf("first Revoke = %+v, %v; want revoked after 1 attempt", res, err)
	}
	if _, ok := fk.has("cred-1"); ok {
		t.Fatal("credential still at kong after revoke")
	}
	want := []string{"GET /consumers/bot/key-auth/cred-1", "DELETE /consumers/bot/key-auth/cred-1"}
	if got := fk.requests(); !slices.Equal(got, want) {
		t.Fatalf("kong got %q; want %q", got, want)
	}

	res, err = g.Revoke(t.Context(), manual("cred-1", "bot", "inc-1"))
	if err != nil || res.Status != StatusAlreadyRevoked || res.Attempts != 0 {
		t.Fatalf("second Revoke = %+v, %v; want already_revoked, no call", res, err)
	}
	if n := len(fk.requests()); n != 2 {
		t.Fatalf("kong got %d requests after the second revoke; want still 2", n)
	}
	if got := testutil.ToFloat64(env.m.Actions.WithLabelValues("kong", "revoked")); got != 1 {
		t.Errorf("revocations_total{kong,revoked} = %v; want 1", got)
	}
	if got := testutil.ToFloat64(env.m.Actions.WithLabelValues("kong", "already_revoked")); got != 1 {
		t.Errorf("revocations_total{kong,already_revoked} = %v; want 1", got)
	}
	for _, tok := range fk.tokens {
		if tok != "s3cret" {
			t.Fatalf("Kong-Admin-Token = %q; want the configured token on every request", tok)
		}
	}
}

func TestKong404IsAlreadyRevoked(t *testing.T) {
	env := newEnv(t)
	fk := newFakeKong(t)
	g := env.guard(t, env.kong(t, fk), nil, nil)

	// Not at kong at all: the GET's 404 settles it, no DELETE.
	res, err := g.Revoke(t.Context(), manual("gone", "bot", "inc-1"))
	if err != nil || res.Status != StatusAlreadyRevoked {
		t.Fatalf("Revoke of a missing credential = %+v, %v; want already_revoked", res, err)
	}
	if n := fk.count(http.MethodDelete); n != 0 {
		t.Fatalf("%d DELETEs for a missing credential; want 0", n)
	}

	// Gone between the GET and the DELETE.
	fk.add("bot", "racy", "k")
	fk.deleteCodes = []int{http.StatusNotFound}
	res, err = g.Revoke(t.Context(), manual("racy", "bot", "inc-1"))
	if err != nil || res.Status != StatusAlreadyRevoked || res.Attempts != 1 {
		t.Fatalf("Revoke answered 404 on DELETE = %+v, %v; want already_revoked after 1 attempt", res, err)
	}

	// The incident did not revoke these, so restore leaves them alone.
	res, err = g.Restore(t.Context(), manual("gone", "bot", "inc-1"))
	if err != nil || res.Status != StatusLeftRevoked {
		t.Fatalf("Restore of a credential found revoked = %+v, %v; want left_revoked", res, err)
	}
}

func TestKongRetries5xxThenSucceeds(t *testing.T) {
	env := newEnv(t)
	fk := newFakeKong(t)
	fk.add("bot", "cred-1", "k")
	fk.deleteCodes = []int{http.StatusServiceUnavailable, http.StatusServiceUnavailable}
	g := env.guard(t, env.kong(t, fk), nil, nil)

	res, err := g.Revoke(t.Context(), manual("cred-1", "bot", "inc-1"))
	if err != nil || res.Status != StatusRevoked || res.Attempts != 3 {
		t.Fatalf("Revoke = %+v, %v; want revoked after 3 attempts", res, err)
	}
	if n := fk.count(http.MethodDelete); n != 3 {
		t.Fatalf("%d DELETEs; want 3", n)
	}
	if got := testutil.ToFloat64(env.m.Retries.WithLabelValues("kong")); got != 2 {
		t.Errorf("retries_total = %v; want 2", got)
	}
}

func TestKongNoRetryOn4xxAndBoundedOn5xx(t *testing.T) {
	env := newEnv(t)
	fk := newFakeKong(t)
	fk.add("bot", "a", "k1")
	fk.add("bot", "b", "k2")
	g := env.guard(t, env.kong(t, fk), nil, nil)

	fk.deleteCodes = []int{http.StatusForbidden}
	_, err := g.Revoke(t.Context(), manual("a", "bot", "inc-1"))
	var se *StatusError
	if !errors.As(err, &se) || se.Code != http.StatusForbidden {
		t.Fatalf("Revoke answered 403 = %v; want a StatusError 403", err)
	}
	if n := fk.count(http.MethodDelete); n != 1 {
		t.Fatalf("%d DELETEs after a 403; want 1 (no retry on 4xx)", n)
	}

	fk.deleteCodes = []int{500, 500, 500, 500, 500, 500}
	_, err = g.Revoke(t.Context(), manual("b", "bot", "inc-1"))
	if !errors.As(err, &se) || se.Code != 500 {
		t.Fatalf("Revoke answered 500s = %v; want a StatusError 500", err)
	}
	if n := fk.count(http.MethodDelete); n != 1+fastRetry.Attempts {
		t.Fatalf("%d DELETEs; want 1 + %d (bounded attempts)", n, fastRetry.Attempts)
	}
	// The failed revocation stays pending, and a later call resumes it.
	rec, _, _ := env.ledger.Get(t.Context(), Key{"kong", "b", "inc-1"})
	if rec.State != StatePending {
		t.Fatalf("record after failure: state %q; want pending", rec.State)
	}
	fk.deleteCodes = nil
	res, err := g.Revoke(t.Context(), manual("b", "bot", "inc-1"))
	if err != nil || res.Status != StatusRevoked {
		t.Fatalf("resumed Revoke = %+v, %v; want revoked", res, err)
	}
}

func TestKongRestoreRecreatesSameKey(t *testing.T) {
	env := newEnv(t)
	fk := newFakeKong(t)
	fk.add("bot", "cred-1", "the-key", "team-a", "prod")
	g := env.guard(t, env.kong(t, fk), nil, nil)
	tg := manual("cred-1", "bot", "inc-1")

	if _, err := g.Revoke(t.Context(), tg); err != nil {
		t.Fatal(err)
	}
	res, err := g.Restore(t.Context(), tg)
	if err != nil || res.Status != StatusRestored {
		t.Fatalf("Restore = %+v, %v; want restored", res, err)
	}
	c, ok := fk.has("cred-1")
	if !ok || c.Key != "the-key" || !slices.Equal(c.Tags, []string{"team-a", "prod"}) {
		t.Fatalf("after restore kong has %+v, %v; want cred-1 with key the-key and its tags", c, ok)
	}
	if got := fk.requests(); got[len(got)-1] != "PUT /consumers/bot/key-auth/cred-1" {
		t.Fatalf("last request %q; want the PUT that re-creates", got[len(got)-1])
	}
	res, err = g.Restore(t.Context(), tg)
	if err != nil || res.Status != StatusAlreadyRestored {
		t.Fatalf("second Restore = %+v, %v; want already_restored", res, err)
	}
	if n := fk.count(http.MethodPut); n != 1 {
		t.Fatalf("%d PUTs; want 1", n)
	}

	// An automatic request after the restore is a human's call.
	auto := tg
	auto.Origin = Automatic
	var ae *ApprovalError
	if _, err := g.Revoke(t.Context(), auto); !errors.As(err, &ae) || ae.Reason != ReasonRestored {
		t.Fatalf("automatic Revoke after restore = %v; want ApprovalError(restored)", err)
	}
	// A manual one revokes again.
	if res, err := g.Revoke(t.Context(), tg); err != nil || res.Status != StatusRevoked {
		t.Fatalf("manual Revoke after restore = %+v, %v; want revoked", res, err)
	}
	if n := fk.count(http.MethodDelete); n != 2 {
		t.Fatalf("%d DELETEs; want 2", n)
	}
}

func TestKongWithoutConsumerUsesKeyAuths(t *testing.T) {
	env := newEnv(t)
	fk := newFakeKong(t)
	fk.add("bot", "cred-1", "the-key")
	g := env.guard(t, env.kong(t, fk), nil, nil)
	tg := manual("cred-1", "", "inc-1")
	if res, err := g.Revoke(t.Context(), tg); err != nil || res.Status != StatusRevoked {
		t.Fatalf("Revoke = %+v, %v", res, err)
	}
	if res, err := g.Restore(t.Context(), tg); err != nil || res.Status != StatusRestored {
		t.Fatalf("Restore = %+v, %v", res, err)
	}
	want := []string{"GET /key-auths/cred-1", "DELETE /key-auths/cred-1", "GET /key-auths/cred-1", "PUT /key-auths/cred-1"}
	if got := fk.requests(); !slices.Equal(got, want) {
		t.Fatalf("kong got %q; want %q", got, want)
	}
	if c, _ := fk.has("cred-1"); c.Key != "the-key" || fk.owner["cred-1"] != "bot" {
		t.Fatalf("restored %+v owned by %q; want the-key owned by bot", c, fk.owner["cred-1"])
	}
}

func TestKongEscapesPathSegments(t *testing.T) {
	env := newEnv(t)
	fk := newFakeKong(t)
	fk.add("team/bot", "id/with?odd#chars", "k")
	g := env.guard(t, env.kong(t, fk), nil, nil)
	res, err := g.Revoke(t.Context(), manual("id/with?odd#chars", "team/bot", "inc-1"))
	if err != nil || res.Status != StatusRevoked {
		t.Fatalf("Revoke = %+v, %v; want revoked", res, err)
	}
	if got := fk.requests()[1]; got != "DELETE /consumers/team%2Fbot/key-auth/id%2Fwith%3Fodd%23chars" {
		t.Fatalf("DELETE path %q; want each id inside its own escaped segment", got)
	}
	if _, err := g.Revoke(t.Context(), manual("..", "bot", "inc-1")); err == nil {
		t.Fatal(`Revoke of credential ".." succeeded; want refused (it would address the parent resource)`)
	}
}

func TestKongWrongConsumerIsNotAlreadyRevoked(t *testing.T) {
	env := newEnv(t)
	fk := newFakeKong(t)
	fk.add("bot", "cred-1", "k")
	g := env.guard(t, env.kong(t, fk), nil, nil)
	_, err := g.Revoke(t.Context(), manual("cred-1", "someone-else", "inc-1"))
	if err == nil || !strings.Contains(err.Error(), "not under consumer") {
		t.Fatalf("Revoke under the wrong consumer = %v; want an error naming the consumer", err)
	}
	if _, ok := fk.has("cred-1"); !ok || fk.count(http.MethodDelete) != 0 {
		t.Fatal("credential deleted under the wrong consumer")
	}
}
