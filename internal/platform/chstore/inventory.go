package chstore

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The inventory's summary tables and their materialized views (migration
// 0005_inventory, whose comment explains them).
const (
	inventoryRouteTable = "inventory_agent_route_daily"
	inventoryAttrTable  = "inventory_agent_attr_daily"
)

// Kinds of inventory_agent_attr_daily.kind.
const (
	attrSourceIP   = 1
	attrCredential = 2
	attrGateway    = 3
)

// inventoryView is one view of migration 0005: its name, the table it
// feeds and its SELECT over events.
type inventoryView struct {
	name, table, create string
	// selectSQL is the view's SELECT, with "FROM events" on a line of its
	// own: fromEvents replaces that line to run the same aggregation over
	// a selection of events.
	selectSQL string
}

// inventoryEventColumns are the events columns the views read.
const inventoryEventColumns = "event_id, event_time, event_time_ms, agent_id, route, status, request_bytes, response_bytes, source_ip, credential_id, gateway"

// fromEvents is the view's aggregation over the events that where selects
// (a condition on events' columns), each event_id once: what the view
// would have written had every event been inserted exactly once.
func (v inventoryView) fromEvents(where string) string {
	return strings.Replace(v.selectSQL, "\nFROM events\n",
		"\nFROM (SELECT "+inventoryEventColumns+" FROM events WHERE "+where+" LIMIT 1 BY event_id)\n", 1)
}

// inventoryViews reads the views out of the embedded migration 0005, so
// that the rebuild, the reads of partial days and the benchmark's
// drop-and-recreate run exactly the migration's SQL.
var inventoryViews = sync.OnceValues(func() (map[string]inventoryView, error) {
	ms, err := loadMigrations(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	const prefix = "CREATE MATERIALIZED VIEW IF NOT EXISTS "
	out := map[string]inventoryView{}
	for _, m := range ms {
		if m.name != "inventory" {
			continue
		}
		for _, stmt := range m.stmts {
			rest, ok := strings.CutPrefix(stmt, prefix)
			if !ok {
				continue
			}
			f := strings.Fields(rest)
			i := strings.Index(stmt, " AS\nSELECT")
			if len(f) < 4 || f[1] != "TO" || i < 0 || strings.Count(stmt, "\nFROM events\n") != 1 {
				return nil, fmt.Errorf("migration 0005_inventory: view statement %.60q is not shaped as inventory.go expects", stmt)
			}
			out[f[2]] = inventoryView{name: f[0], table: f[2], create: stmt, selectSQL: stmt[i+len(" AS\n"):]}
		}
	}
	for _, t := range []string{inventoryRouteTable, inventoryAttrTable} {
		if _, ok := out[t]; !ok {
			return nil, fmt.Errorf("migration 0005_inventory: no view feeds %s", t)
		}
	}
	return out, nil
})

// inventoryView returns the view that feeds table.
func inventoryViewOf(table string) (inventoryView, error) {
	vs, err := inventoryViews()
	if err != nil {
		return inventoryView{}, err
	}
	return vs[table], nil
}

// inventoryTables are the summary tables, in the order the views are
// created.
var inventoryTables = []string{inventoryRouteTable, inventoryAttrTable}

// DropInventoryViews drops the inventory's materialized views, so inserts
// into events stop feeding the summaries; CreateInventoryViews puts them
// back. The ingest benchmark uses the pair to measure what the views cost.
// Events inserted in between are not summarised until RebuildInventory.
func (s *Store) DropInventoryViews(ctx context.Context) error {
	for _, t := range inventoryTables {
		v, err := inventoryViewOf(t)
		if err != nil {
			return err
		}
		if err := s.execDDL(ctx, "DROP TABLE IF EXISTS "+quoteIdent(v.name)); err != nil {
			return fmt.Errorf("drop view %s.%s: %w", s.db, v.name, err)
		}
	}
	return nil
}

// CreateInventoryViews creates the inventory's materialized views if they
// are missing, as migration 0005 does.
func (s *Store) CreateInventoryViews(ctx context.Context) error {
	for _, t := range inventoryTables {
		v, err := inventoryViewOf(t)
		if err != nil {
			return err
		}
		if err := s.execDDL(ctx, v.create); err != nil {
			return fmt.Errorf("create view %s.%s: %w", s.db, v.name, err)
		}
	}
	return nil
}

// dayNum is t's UTC day as YYYYMMDD, the partition id of the events and
// summary tables.
func dayNum(t time.Time) uint64 {
	y, m, d := t.UTC().Date()
	return uint64(y)*10000 + uint64(m)*100 + uint64(d)
}

// RebuildInventory recounts the summaries of the UTC days from from's day
// up to and including to's day from the events, each event_id once: for
// each day it drops the day's summary partitions, then inserts the views'
// aggregation of that day's events. It summarises events stored before the
// views existed, and removes the double counts of retried inserts.
//
// Ingest writing into a day while it is rebuilt may lose that day's
// inserts made between the drop and the insert's read, or count them twice
// (once by the view, once by the rebuild): rebuild days ingest no longer
// writes (yesterday and older), or rebuild a day again once its traffic has
// settled. It returns the days rebuilt, as YYYYMMDD, with the error that
// stopped it.
func (s *Store) RebuildInventory(ctx context.Context, from, to time.Time) ([]string, error) {
	day := from.UTC().Truncate(24 * time.Hour)
	last := to.UTC().Truncate(24 * time.Hour)
	if last.Before(day) {
		return nil, fmt.Errorf("rebuild inventory: to %s is before from %s", last.Format(time.DateOnly), day.Format(time.DateOnly))
	}
	var done []string
	for ; !day.After(last); day = day.AddDate(0, 0, 1) {
		if err := s.rebuildInventoryDay(ctx, day); err != nil {
			return done, err
		}
		done = append(done, strconv.FormatUint(dayNum(day), 10))
	}
	return done, nil
}

func (s *Store) rebuildInventoryDay(ctx context.Context, day time.Time) error {
	p := strconv.FormatUint(dayNum(day), 10)
	fromMs := day.UnixMilli()
	toMs := day.AddDate(0, 0, 1).UnixMilli()
	where := "event_time_ms >= " + strconv.FormatInt(fromMs, 10) + " AND event_time_ms < " + strconv.FormatInt(toMs, 10) +
		" AND event_time >= toDateTime(" + strconv.FormatUint(uint64(partitionSec(fromMs)), 10) + ")" +
		" AND event_time <= toDateTime(" + strconv.FormatUint(uint64(partitionSec(toMs)), 10) + ")"
	start := time.Now()
	for _, t := range inventoryTables {
		v, err := inventoryViewOf(t)
		if err != nil {
			return err
		}
		if err := s.conn.Exec(ctx, "ALTER TABLE "+quoteIdent(t)+" DROP PARTITION "+p); err != nil {
			return fmt.Errorf("rebuild inventory of %s: drop partition %s of %s.%s: %w", day.Format(time.DateOnly), p, s.db, t, err)
		}
		if err := s.conn.Exec(ctx, "INSERT INTO "+quoteIdent(t)+" "+v.fromEvents(where)); err != nil {
			return fmt.Errorf("rebuild inventory of %s: fill %s.%s: %w", day.Format(time.DateOnly), s.db, t, err)
		}
	}
	s.log.Info("rebuilt inventory", "day", day.Format(time.DateOnly), "duration", time.Since(start))
	return nil
}

// dropSummaryPartitionsBefore drops the summary tables' day partitions
// before cutoff (YYYYMMDD), for retention.
func (s *Store) dropSummaryPartitionsBefore(ctx context.Context, cutoff uint64) error {
	for _, t := range inventoryTables {
		old, err := s.partitionsBefore(ctx, t, cutoff)
		if err != nil {
			return err
		}
		for _, p := range old {
			if err := s.conn.Exec(ctx, "ALTER TABLE "+quoteIdent(t)+" DROP PARTITION "+strconv.FormatUint(p, 10)); err != nil {
				return fmt.Errorf("drop partition %d of %s.%s: %w", p, s.db, t, err)
			}
			s.log.Info("dropped partition", "table", t, "partition", p)
		}
	}
	return nil
}
