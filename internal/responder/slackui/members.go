package slackui

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// ErrNotAllowed means the clicker may not take the action: the responder
// audited the attempt, told the clicker (ephemeral) and did nothing. The
// interaction handler answers 200: the click was handled.
var ErrNotAllowed = errors.New("not allowed to take this action")

// DefaultGroupTTL is how long a user group's members are cached.
const DefaultGroupTTL = 5 * time.Minute

// Groups resolves Slack user groups (S…) to their members, through
// usergroups.users.list (scope usergroups:read), with a cache: a click
// must be answered within 3 seconds, and a group changes rarely. Safe for
// concurrent use.
type Groups struct {
	fetch func(ctx context.Context, group string) ([]string, error)
	ttl   time.Duration
	now   func() time.Time

	mu    sync.Mutex
	cache map[string]groupEntry
}

type groupEntry struct {
	members []string
	until   time.Time
}

// NewGroups returns a resolver over fetch (slack.Client's
// GetUserGroupMembersContext, without its options). ttl ≤ 0 means
// DefaultGroupTTL; now nil means time.Now.
func NewGroups(fetch func(ctx context.Context, group string) ([]string, error), ttl time.Duration, now func() time.Time) *Groups {
	if ttl <= 0 {
		ttl = DefaultGroupTTL
	}
	if now == nil {
		now = time.Now
	}
	return &Groups{fetch: fetch, ttl: ttl, now: now, cache: map[string]groupEntry{}}
}

// Members returns the group's user ids, from the cache while it is fresh.
// A failed lookup is not cached.
func (g *Groups) Members(ctx context.Context, group string) ([]string, error) {
	now := g.now()
	g.mu.Lock()
	e, ok := g.cache[group]
	g.mu.Unlock()
	if ok && now.Before(e.until) {
		return e.members, nil
	}
	m, err := g.fetch(ctx, group)
	if err != nil {
		return nil, fmt.Errorf("members of user group %s: %w", group, err)
	}
	g.mu.Lock()
	g.cache[group] = groupEntry{members: slices.Clone(m), until: now.Add(g.ttl)}
	g.mu.Unlock()
	return m, nil
}

// IsGroup says whether a Slack id names a user group (S…) rather than a
// user (U…, W…).
func IsGroup(id string) bool { return strings.HasPrefix(id, "S") }

// Allowed reports whether user is one of ids, directly or as a member of
// a user group among them. Groups are looked up only when the user is not
// listed directly; a lookup that fails counts as "not a member" when
// another group admits the user, and is returned otherwise, so that a
// Slack outage refuses (fails closed) and says why. groups nil: user
// groups admit nobody.
func Allowed(ctx context.Context, user string, ids []string, groups *Groups) (bool, error) {
	if user == "" {
		return false, nil
	}
	if slices.Contains(ids, user) {
		return true, nil
	}
	var errs []error
	for _, id := range ids {
		if !IsGroup(id) || groups == nil {
			continue
		}
		m, err := groups.Members(ctx, id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if slices.Contains(m, user) {
			return true, nil
		}
	}
	return false, errors.Join(errs...)
}
