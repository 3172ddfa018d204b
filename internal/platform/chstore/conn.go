package chstore

import "github.com/ClickHouse/clickhouse-go/v2/lib/driver"

// Conn returns the Store's connection pool, for packages that keep their
// own tables in the Store's database (internal/platform/chresp). The pool belongs to
// the Store: do not Close it, Close the Store. Safe for concurrent use.
func (s *Store) Conn() driver.Conn { return s.conn }
