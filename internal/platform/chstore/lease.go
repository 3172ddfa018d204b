package chstore

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// leaseSettle is how many seconds of the server's clock a claim waits
// before it reads back who holds the lease: every claim stamped with the
// same or an earlier second has committed by then, so every claimant
// reads the same set of competing claims and agrees on the holder. It
// assumes an INSERT commits within this many seconds of evaluating now(),
// which a healthy server does in milliseconds.
const leaseSettle = 2

// TakeLease claims the lease name for owner for ttl (whole seconds, at
// least one) and reports whether owner holds it: a live lease of another
// owner means no; a live lease of owner's is renewed. It is the leases
// table's protocol (migration 0004): append a claim stamped with the
// server's clock, wait until that clock has moved leaseSettle seconds past
// it, then read back the earliest live claim (ties: the smallest owner).
// Claimants racing therefore agree on one holder, unless an INSERT took
// longer than the settle time to commit; the work done under a lease is
// idempotent all the same. A claim costs about leaseSettle seconds. Safe
// for concurrent use.
func (s *Store) TakeLease(ctx context.Context, name, owner string, ttl time.Duration) (bool, error) {
	if name == "" || owner == "" {
		return false, errors.New("take lease: name and owner must be set")
	}
	secs := int64(ttl / time.Second)
	if secs < 1 {
		return false, fmt.Errorf("take lease %s: ttl %s is under a second", name, ttl)
	}
	holder, err := s.leaseHolder(ctx, name)
	if err != nil {
		return false, err
	}
	if holder != "" && holder != owner {
		return false, nil
	}
	// The server's now(), not ours: replicas' clocks may disagree.
	if err := s.conn.Exec(ctx, "INSERT INTO leases (name, owner, taken_s, expires_s) SELECT ?, ?, toInt64(toUnixTimestamp(now())), toInt64(toUnixTimestamp(now())) + ?",
		name, owner, secs); err != nil {
		return false, fmt.Errorf("claim lease %s in %s: %w", name, s.db, err)
	}
	var taken int64
	if err := s.conn.QueryRow(ctx, "SELECT max(taken_s) FROM leases WHERE name = ? AND owner = ?", name, owner).Scan(&taken); err != nil {
		return false, fmt.Errorf("read back the claim of lease %s in %s: %w", name, s.db, err)
	}
	if err := s.waitServerClock(ctx, taken+leaseSettle); err != nil {
		return false, fmt.Errorf("claim lease %s in %s: %w", name, s.db, err)
	}
	if holder, err = s.leaseHolder(ctx, name); err != nil {
		return false, err
	}
	return holder == owner, nil
}

// waitServerClock waits until the server's now() reaches unix seconds.
func (s *Store) waitServerClock(ctx context.Context, unix int64) error {
	for {
		var now int64
		if err := s.conn.QueryRow(ctx, "SELECT toInt64(toUnixTimestamp(now()))").Scan(&now); err != nil {
			return fmt.Errorf("read the server's clock: %w", err)
		}
		if now >= unix {
			return nil
		}
		wait := time.Duration(unix-now) * time.Second
		if wait > time.Second {
			wait = time.Second
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait / 4):
		}
	}
}

// leaseHolder returns the owner of the earliest live claim of name, or "".
func (s *Store) leaseHolder(ctx context.Context, name string) (string, error) {
	rows, err := s.conn.Query(ctx, "SELECT owner FROM leases WHERE name = ? AND expires_s > toInt64(toUnixTimestamp(now())) ORDER BY taken_s, owner LIMIT 1", name)
	if err != nil {
		return "", fmt.Errorf("read lease %s in %s: %w", name, s.db, err)
	}
	defer rows.Close()
	owner := ""
	if rows.Next() {
		if err := rows.Scan(&owner); err != nil {
			return "", fmt.Errorf("read lease %s in %s: %w", name, s.db, err)
		}
	}
	if err := rows.Err(); err != nil {
		return "", fmt.Errorf("read lease %s in %s: %w", name, s.db, err)
	}
	return owner, nil
}
