package eval

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/agentwatch/agentwatch/internal/tools/nab"
)

// WriteNABSummary writes what `detector eval nab` prints for res: the
// run's counts, NAB's scoreboard with res's row, and one line per
// profile. out names where the results CSVs and plots went; subset says
// the run scored part of the corpus, so its scores are not comparable
// with the published scoreboard.
func WriteNABSummary(w io.Writer, res NABResult, out string, subset bool) error {
	fmt.Fprintf(w, "NAB: %d files, %d points, %d labeled windows, scored in %s; results in %s\n\n",
		res.Files, res.Points, res.Windows, res.Elapsed.Round(time.Millisecond), out)
	if subset {
		fmt.Fprintf(w, "A subset of the corpus: the scores are not comparable with the published scoreboard below.\n\n")
	}
	if err := nab.Table(w, "agentwatch (pkg/baseline Series)", res.Report); err != nil {
		return err
	}
	fmt.Fprintln(w)
	for _, p := range res.Report.Profiles {
		fmt.Fprintf(w, "%-20s threshold %.4f  TP %d  FP %d  FN %d  raw %.2f (null %.2f, perfect %.2f)\n",
			p.Name, p.Threshold, p.TP, p.FP, p.FN, p.Raw, p.Null, p.Perfect)
	}
	fmt.Fprintf(w, "\nrarity bar: %d points muted in %d files (a series that paged RarityReports times lately does not page)\n", res.Muted, res.MutedFiles)
	writeNABParts(w, res.Parts)
	if len(res.Plots) > 0 {
		fmt.Fprintf(w, "\nplots: %s\n", strings.Join(res.Plots, ", "))
	}
	return nil
}

// RunScenarioSeeds runs RunScenario with o for each seed in turn, the
// first being the seed the detector was tuned on and the others held out,
// and writes each report to w as a markdown section (WriteScenarioTable).
// If falseAlerts is set, each seed's false alerts are also written as JSON
// lines to falseAlerts.seedN.
func RunScenarioSeeds(ctx context.Context, o ScenarioOptions, seeds []uint64, falseAlerts string, w io.Writer) error {
	for i, seed := range seeds {
		o.Seed = seed
		r, err := RunScenario(ctx, o)
		if err != nil {
			return err
		}
		role := "held-out seed"
		if i == 0 {
			role = "tuning seed"
		}
		if falseAlerts != "" {
			if err := writeJSONL(fmt.Sprintf("%s.seed%d", falseAlerts, seed), r.FalseAlerts); err != nil {
				return err
			}
		}
		fmt.Fprintf(w, "### Scenario evaluation, %s\n\n", role)
		WriteScenarioTable(w, r)
		fmt.Fprintln(w)
	}
	return nil
}

func writeJSONL[T any](path string, xs []T) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(f)
	for _, x := range xs {
		if err := enc.Encode(x); err != nil {
			f.Close()
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	return f.Close()
}
