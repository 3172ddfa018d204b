package chstore

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/retry"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// A migration is one embedded migrations/NNNN_name.sql file.
type migration struct {
	version uint32
	name    string
	stmts   []string
}

// AppliedMigration is one row of the schema_migrations table.
type AppliedMigration struct {
	Version   uint32
	Name      string
	AppliedAt time.Time
}

var migrationName = regexp.MustCompile(`^(\d{4})_([a-z0-9_]+)\.sql$`)

// loadMigrations reads and validates the migrations in fsys, in version
// order. Versions must run 1, 2, 3… without gaps, so a missing file is a
// build error rather than a silently skipped schema change.
func loadMigrations(fsys fs.FS, dir string) ([]migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var ms []migration
	for _, e := range entries {
		m := migrationName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("migration file %s: name must look like 0001_create_events.sql", e.Name())
		}
		v, _ := strconv.ParseUint(m[1], 10, 32)
		body, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", e.Name(), err)
		}
		stmts := splitStatements(string(body))
		if len(stmts) == 0 {
			return nil, fmt.Errorf("migration %s has no statements", e.Name())
		}
		ms = append(ms, migration{version: uint32(v), name: m[2], stmts: stmts})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i, m := range ms {
		if m.version != uint32(i+1) {
			return nil, fmt.Errorf("migration versions must be 1, 2, 3… without gaps or duplicates; found %04d at position %d", m.version, i+1)
		}
	}
	if len(ms) == 0 {
		return nil, fmt.Errorf("no migrations in %s", dir)
	}
	return ms, nil
}

// splitStatements drops whole-line "--" comments and splits on ';'. The
// native protocol runs one statement per query; migrations keep semicolons
// out of literals so that this stays this simple.
func splitStatements(sql string) []string {
	var b strings.Builder
	for line := range strings.Lines(sql) {
		if strings.HasPrefix(strings.TrimSpace(line), "--") {
			continue
		}
		b.WriteString(line)
	}
	var out []string
	for part := range strings.SplitSeq(b.String(), ";") {
		if p := strings.TrimSpace(part); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// schemaMigrationsDDL creates the ledger of applied migrations. ClickHouse
// has neither transactions nor locks, so two processes migrating at once
// may both apply a migration and both record it: statements are required to
// be idempotent (see migrations/0001_events.sql), and ReplacingMergeTree
// plus GROUP BY version make the duplicate record harmless.
const schemaMigrationsDDL = `CREATE TABLE IF NOT EXISTS schema_migrations
(
    ` + "`version`" + `    UInt32,
    ` + "`name`" + `       String,
    ` + "`applied_at`" + ` DateTime
)
ENGINE = ReplacingMergeTree()
ORDER BY version`

// Migrate applies the embedded migrations that schema_migrations does not
// list yet, in version order, and records each one after its statements
// succeeded. Running it again is a no-op; running it from several processes
// at once is safe because every statement is idempotent.
func (s *Store) Migrate(ctx context.Context) error {
	ms, err := loadMigrations(migrationFiles, "migrations")
	if err != nil {
		return err
	}
	if err := s.execDDL(ctx, schemaMigrationsDDL); err != nil {
		return fmt.Errorf("create %s.schema_migrations: %w", s.db, err)
	}
	applied, err := s.AppliedMigrations(ctx)
	if err != nil {
		return err
	}
	done := make(map[uint32]bool, len(applied))
	for _, a := range applied {
		done[a.Version] = true
		if a.Version > ms[len(ms)-1].version {
			s.log.Warn("database schema is newer than this binary", "db_version", a.Version, "binary_version", ms[len(ms)-1].version)
		}
	}
	for _, m := range ms {
		if done[m.version] {
			continue
		}
		start := time.Now()
		for i, stmt := range m.stmts {
			if err := s.execDDL(ctx, stmt); err != nil {
				return fmt.Errorf("migration %04d_%s, statement %d of %d: %w", m.version, m.name, i+1, len(m.stmts), err)
			}
		}
		rec := []any{[]uint32{m.version}, []string{m.name}, []time.Time{time.Now().UTC().Truncate(time.Second)}}
		if err := s.insertColumns(ctx, "schema_migrations", []string{"version", "name", "applied_at"}, rec, 1); err != nil {
			return fmt.Errorf("record migration %04d_%s: %w", m.version, m.name, err)
		}
		s.log.Info("applied migration", "version", m.version, "name", m.name, "duration", time.Since(start))
	}
	return nil
}

// execDDL runs one DDL statement. Old servers guard concurrent DDL on the
// same table by failing the second one ("... is creating or attaching right
// now", "... already exists") even with IF NOT EXISTS, so a racing Migrate
// retries a few times, quickly: the other process's statement has the same
// effect.
func (s *Store) execDDL(ctx context.Context, stmt string) error {
	p := retry.Policy{
		Backoff:   retry.Backoff{Base: 50 * time.Millisecond, Max: 200 * time.Millisecond},
		Attempts:  5,
		Retryable: isDDLRace,
		OnRetry: func(attempt int, _ time.Duration, err error) {
			s.log.Debug("concurrent ddl, retrying", "attempt", attempt, "err", err)
		},
	}
	_, err := p.Do(ctx, func(ctx context.Context) error { return s.conn.Exec(ctx, stmt) })
	return err
}

func isDDLRace(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "right now") || strings.Contains(msg, "already exists")
}

// AppliedMigrations lists the migrations recorded in schema_migrations, by
// version; a migration recorded twice by racing processes is listed once,
// with its first applied_at.
func (s *Store) AppliedMigrations(ctx context.Context) ([]AppliedMigration, error) {
	rows, err := s.conn.Query(ctx,
		"SELECT version, any(name), min(applied_at) FROM schema_migrations GROUP BY version ORDER BY version")
	if err != nil {
		return nil, fmt.Errorf("read %s.schema_migrations: %w", s.db, err)
	}
	defer rows.Close()
	var out []AppliedMigration
	for rows.Next() {
		var a AppliedMigration
		if err := rows.Scan(&a.Version, &a.Name, &a.AppliedAt); err != nil {
			return nil, fmt.Errorf("read %s.schema_migrations: %w", s.db, err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read %s.schema_migrations: %w", s.db, err)
	}
	return out, nil
}
