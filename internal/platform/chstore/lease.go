package chstore

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// TakeLease claims the lease name for owner for ttl (whole seconds, at
// least one) and reports whether owner holds it: a live lease of another
// owner means no; a live lease of owner's is renewed. It is the leases
// table's protocol (migration 0004): append a claim, read back the
// earliest live claim. Two owners that claim within the same second may
// both be told yes, so the work done under a lease must be idempotent.
// Safe for concurrent use.
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
	if holder, err = s.leaseHolder(ctx, name); err != nil {
		return false, err
	}
	return holder == owner, nil
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
