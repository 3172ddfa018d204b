// Package filesource loads the embedded mode's data directory (the layout
// `agentwatch demo` writes) into a visibility.MemSource, and reads the
// agent registry and route inventory beside it:
//
//	DATA_DIR/events/      events, one JSON-lines file per UTC day (embedstore)
//	DATA_DIR/detector/    anomalies.jsonl (detstate.FileStore)
//	DATA_DIR/responder/   audit.jsonl (audit.FileStore): actions, and the
//	                      false-positive verdicts (action false_positive)
//	DATA_DIR/agents.yaml  agent registry
//	DATA_DIR/openapi.yaml route inventory
//
// It reads beside a running demo: it takes no lock but the audit file's
// shared one, and changes nothing.
package filesource

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/agentwatch/agentwatch/internal/detector/detstate"
	"github.com/agentwatch/agentwatch/internal/platform/embedstore"
	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/visibility"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/event"
	"github.com/agentwatch/agentwatch/pkg/inventory"
)

// Paths inside the data directory.
const (
	EventsDir    = "events"
	DetectorDir  = "detector"
	ResponderDir = "responder"
	RegistryFile = "agents.yaml"
	OpenAPIFile  = "openapi.yaml"
	// AuditFile is the responder's audit file in its state directory
	// (respond.AuditFile, which this package does not import: it imports
	// no service).
	AuditFile = "audit.jsonl"
)

// ActionFalsePositive is the audit action of an analyst's false-positive
// verdict (respond.Engine.FalsePositive): the embedded mode keeps
// verdicts nowhere else.
const ActionFalsePositive = "false_positive"

// Options say what to load.
type Options struct {
	// DataDir is embedded.data_dir.
	DataDir string
	// Since, when set, skips events before it: a question never looks
	// further back than its span or the lookback.
	Since time.Time
	// Progress, when set, gets a line per day file read and a total.
	Progress io.Writer
	// AuditFile is the audit file to read; "" means
	// DATA_DIR/responder/audit.jsonl.
	AuditFile string
}

// Stats say what Load read.
type Stats struct {
	Days, Events, Anomalies, Records, Verdicts int
}

// Load reads the data directory into a MemSource. A missing events,
// detector or responder directory holds nothing; an unreadable one is an
// error.
func Load(ctx context.Context, o Options) (*visibility.MemSource, Stats, error) {
	var st Stats
	events, err := loadEvents(ctx, o, &st)
	if err != nil {
		return nil, st, err
	}
	anoms, err := detstate.ReadAnomalies(filepath.Join(o.DataDir, DetectorDir))
	if err != nil {
		return nil, st, fmt.Errorf("read anomalies: %w", err)
	}
	auditFile := o.AuditFile
	if auditFile == "" {
		auditFile = filepath.Join(o.DataDir, ResponderDir, AuditFile)
	}
	recs, err := AuditRecords(ctx, auditFile)
	if err != nil {
		return nil, st, err
	}
	verdicts := Verdicts(recs, anoms)
	st.Anomalies, st.Records, st.Verdicts = len(anoms), len(recs), len(verdicts)
	if o.Progress != nil {
		fmt.Fprintf(o.Progress, "loaded %s: %d events over %d days, %d anomalies, %d audit records\n",
			o.DataDir, st.Events, st.Days, st.Anomalies, st.Records)
	}
	return visibility.NewMemSource(events, anoms, recs, verdicts), st, nil
}

func loadEvents(ctx context.Context, o Options, st *Stats) ([]event.Event, error) {
	from := o.Since
	if from.IsZero() {
		from = time.UnixMilli(0)
	}
	var out []event.Event
	cur, n := "", 0
	done := func() {
		if cur != "" {
			st.Days++
			if o.Progress != nil {
				t, _ := time.Parse("20060102", cur)
				fmt.Fprintf(o.Progress, "read events of %s: %d\n", t.Format(time.DateOnly), len(out)-n)
			}
		}
	}
	// The end is far enough to take any event stamped ahead of now.
	err := embedstore.Read(filepath.Join(o.DataDir, EventsDir), from, time.Now().Add(366*24*time.Hour), func(day string, e *event.Event) bool {
		if day != cur {
			done()
			cur, n = day, len(out)
		}
		out = append(out, *e)
		return ctx.Err() == nil
	})
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	done()
	st.Events = len(out)
	return out, nil
}

// AuditRecords reads every record of the audit file at path (none when
// it does not exist).
func AuditRecords(ctx context.Context, path string) ([]audit.Record, error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	fs, err := audit.OpenFileStore(path)
	if err != nil {
		return nil, err
	}
	recs, err := fs.Query(ctx, audit.Filter{Limit: math.MaxInt32})
	if err != nil {
		return nil, err
	}
	return recs, nil
}

// Verdicts rebuilds the false-positive verdicts from their audit records,
// with the kind and window of the anomaly when anoms has it; the ID is the
// one the responder gives (fp-ANOMALY).
func Verdicts(recs []audit.Record, anoms []anomaly.Anomaly) []anomaly.Verdict {
	byID := make(map[string]*anomaly.Anomaly, len(anoms))
	for i := range anoms {
		byID[anoms[i].ID] = &anoms[i]
	}
	var out []anomaly.Verdict
	for _, r := range recs {
		if r.Action != ActionFalsePositive || r.Result != audit.ResultOK || r.AnomalyID == "" {
			continue
		}
		v := anomaly.Verdict{ID: "fp-" + r.AnomalyID, AnomalyID: r.AnomalyID, AgentID: r.AgentID, Verdict: anomaly.VerdictFalsePositive,
			Author: r.Actor.String(), AtMs: r.AtMs}
		if a := byID[r.AnomalyID]; a != nil {
			v.Kind, v.WindowStartMs, v.WindowEndMs = a.Kind, a.WindowStartMs, a.WindowEndMs
		}
		out = append(out, v)
	}
	return out
}

// Fleet reads the registry and route inventory: registryFile, routesFile
// and openAPIFile when given (the detector's configuration), else the data
// directory's agents.yaml and openapi.yaml when they exist. None gives
// the empty (not enabled) registry or inventory.
func Fleet(dataDir, registryFile, routesFile, openAPIFile string) (*inventory.Registry, *inventory.Inventory, error) {
	if registryFile == "" && routesFile == "" && openAPIFile == "" {
		registryFile = existing(filepath.Join(dataDir, RegistryFile))
		openAPIFile = existing(filepath.Join(dataDir, OpenAPIFile))
	}
	reg := inventory.EmptyRegistry()
	if registryFile != "" {
		b, err := os.ReadFile(registryFile)
		if err != nil {
			return nil, nil, fmt.Errorf("agent registry: %w", err)
		}
		if reg, err = inventory.ParseRegistry(registryFile, b); err != nil {
			return nil, nil, err
		}
	}
	invs := []*inventory.Inventory{}
	if routesFile != "" {
		b, err := os.ReadFile(routesFile)
		if err != nil {
			return nil, nil, fmt.Errorf("route inventory: %w", err)
		}
		inv, err := inventory.ParseRoutes(routesFile, b)
		if err != nil {
			return nil, nil, err
		}
		invs = append(invs, inv)
	}
	if openAPIFile != "" {
		b, err := os.ReadFile(openAPIFile)
		if err != nil {
			return nil, nil, fmt.Errorf("OpenAPI document: %w", err)
		}
		inv, err := inventory.FromOpenAPI(openAPIFile, b)
		if err != nil {
			return nil, nil, err
		}
		invs = append(invs, inv)
	}
	return reg, inventory.Merge(invs...), nil
}

func existing(path string) string {
	if _, err := os.Stat(path); err == nil {
		return path
	}
	return ""
}
