package report

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/atomicfile"
	"github.com/agentwatch/agentwatch/internal/responder/evidence"
)

// Job writes a period's report: builds it, renders the asked editions,
// writes them to OutDir, posts them to Slack and records them in the
// evidence chain, each step when configured. A Job is safe for concurrent
// use if its parts are.
type Job struct {
	Builder *Builder
	// Formats are the editions: "html", "pdf" (default both).
	Formats []string
	// OutDir receives agentwatch-report-PERIOD.EXT; "" writes no file.
	OutDir string
	// Chain and EvidenceRoot record the report; nil Chain: not recorded.
	Chain        evidence.ChainStore
	EvidenceRoot string
	// Slack and Channel post it; nil Slack or "" Channel: not posted.
	Slack   Uploader
	Channel string
	// Progress, when set, is told each step after the build (the
	// Builder has its own).
	Progress func(step string)
}

// Written is one file a Job wrote.
type Written struct {
	Name   string `json:"name"`
	Path   string `json:"path,omitempty"`
	SHA256 string `json:"sha256"`
	Size   int    `json:"size"`
}

// Result is what a Job did.
type Result struct {
	Report *Report
	Files  []Written
	// SlackFiles are the Slack file ids, when posted.
	SlackFiles []string
	// Bundle is the evidence bundle, when recorded.
	Bundle *evidence.Bundle
}

// FileName is the name of a report edition: "agentwatch-report-2026-11.pdf".
func FileName(period, format string) string { return "agentwatch-report-" + period + "." + format }

// JSONName is the name of the report's numbers in its evidence bundle.
const JSONName = "report.json"

func (j *Job) step(s string) {
	if j.Progress != nil {
		j.Progress(s)
	}
}

// Run writes the report of p. Slack comes before the evidence chain: a
// report bundle in the chain then says the report was delivered, which
// is what the scheduler reads to skip a period already done. A failure
// stops the run and says which step failed; files written before it stay.
func (j *Job) Run(ctx context.Context, p Period) (Result, error) {
	formats := j.Formats
	if len(formats) == 0 {
		formats = []string{"html", "pdf"}
	}
	for _, f := range formats {
		if f != "html" && f != "pdf" {
			return Result{}, fmt.Errorf("report %s: format %q: want html or pdf", p.Name, f)
		}
	}
	r, err := j.Builder.Build(ctx, p)
	if err != nil {
		return Result{}, err
	}
	res := Result{Report: r}
	j.step("charts")
	charts, err := Charts(r)
	if err != nil {
		return res, fmt.Errorf("report %s: %w", p.Name, err)
	}
	var outs []Output
	for _, f := range formats {
		j.step("render " + f)
		var b []byte
		if f == "html" {
			b, err = HTML(r, charts)
		} else {
			b, err = PDF(r, charts)
		}
		if err != nil {
			return res, err
		}
		outs = append(outs, Output{Name: FileName(p.Name, f), Data: b})
	}
	for _, o := range outs {
		sum := sha256.Sum256(o.Data)
		w := Written{Name: o.Name, SHA256: hex.EncodeToString(sum[:]), Size: len(o.Data)}
		if j.OutDir != "" {
			j.step("write " + o.Name)
			if err := os.MkdirAll(j.OutDir, 0o750); err != nil {
				return res, fmt.Errorf("report %s: %w", p.Name, err)
			}
			w.Path = filepath.Join(j.OutDir, o.Name)
			if err := atomicfile.WriteFile(w.Path, o.Data, 0o640); err != nil {
				return res, fmt.Errorf("report %s: write %s: %w", p.Name, w.Path, err)
			}
		}
		res.Files = append(res.Files, w)
	}
	if j.Slack != nil && j.Channel != "" {
		j.step("post to Slack")
		ids, err := Post(ctx, j.Slack, j.Channel, r, outs)
		res.SlackFiles = ids
		if err != nil {
			return res, err
		}
	}
	if j.Chain != nil {
		j.step("record in the evidence chain")
		meta, err := json.MarshalIndent(struct {
			Period     Period    `json:"period"`
			Files      []Written `json:"files"`
			Channel    string    `json:"slack_channel,omitempty"`
			SlackFiles []string  `json:"slack_files,omitempty"`
			Sections   []Section `json:"sections"`
			Numbers    Numbers   `json:"numbers"`
		}{p, stripPaths(res.Files), j.Channel, res.SlackFiles, r.Sections, r.Numbers}, "", "  ")
		if err != nil {
			return res, fmt.Errorf("report %s: %w", p.Name, err)
		}
		files := []evidence.ReportFile{{Name: JSONName, Data: append(meta, '\n')}}
		for _, o := range outs {
			files = append(files, evidence.ReportFile{Name: bundleName(o.Name), Data: o.Data})
		}
		b, err := evidence.RecordReport(ctx, j.Chain, j.EvidenceRoot, p.Name, files, time.UnixMilli(r.GeneratedMs))
		if err != nil {
			return res, fmt.Errorf("report %s: %w", p.Name, err)
		}
		res.Bundle = &b
	}
	return res, nil
}

// bundleName is an edition's name inside the bundle: "report.pdf".
func bundleName(name string) string { return "report" + ext(name) }

// stripPaths drops the local paths, which say nothing to a verifier.
func stripPaths(ws []Written) []Written {
	out := slices.Clone(ws)
	for i := range out {
		out[i].Path = ""
	}
	return out
}
