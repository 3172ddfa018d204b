package config

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Report configures the periodic report the responder writes on a schedule
// (docs/reports.md). `agentwatch report` reads out_dir and formats as its
// defaults too.
type Report struct {
	Schedule     string   `mapstructure:"schedule" doc:"When the responder writes the report of the period just ended, in UTC: \"monthly HH:MM\" (on the 1st of each month, for the month before), \"weekly HH:MM\" (each Monday, for the ISO week before), or empty for never. Each period is written once: the evidence chain's report bundle says it was done."`
	SlackChannel string   `mapstructure:"slack_channel" doc:"Slack conversation id (C..., G...) the scheduled report is uploaded to as files; needs responder.slack's token with files:write. Empty: not posted."`
	OutDir       string   `mapstructure:"out_dir" doc:"Directory the report files are written to (agentwatch-report-PERIOD.html, .pdf). Empty: embedded.data_dir/reports for the schedule, the current directory for agentwatch report."`
	Formats      []string `mapstructure:"formats" doc:"Editions written: html, pdf or both."`
}

func reportDefaults() map[string]any {
	return map[string]any{
		"report.schedule":      "",
		"report.slack_channel": "",
		"report.out_dir":       "",
		"report.formats":       []string{"html", "pdf"},
	}
}

// ReportSchedule is a parsed report.schedule.
type ReportSchedule struct {
	// Weekly: every Monday for the ISO week before; else on the 1st for
	// the month before.
	Weekly bool
	// At is the time of day, UTC, from midnight.
	At time.Duration
}

var scheduleRE = regexp.MustCompile(`^(monthly|weekly) ([01][0-9]|2[0-3]):([0-5][0-9])$`)

// ParseReportSchedule reads "monthly HH:MM" or "weekly HH:MM". ok is false
// for "" (no schedule).
func ParseReportSchedule(s string) (sch ReportSchedule, ok bool, err error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return ReportSchedule{}, false, nil
	}
	m := scheduleRE.FindStringSubmatch(s)
	if m == nil {
		return ReportSchedule{}, false, fmt.Errorf("want \"monthly HH:MM\" or \"weekly HH:MM\" (UTC, 24-hour), got %q", s)
	}
	h, _ := strconv.Atoi(m[2])
	mi, _ := strconv.Atoi(m[3])
	return ReportSchedule{Weekly: m[1] == "weekly", At: time.Duration(h)*time.Hour + time.Duration(mi)*time.Minute}, true, nil
}

// ReportFormats are the editions a report can be written as.
var ReportFormats = []string{"html", "pdf"}

var slackConversation = regexp.MustCompile(`^[CGD][A-Z0-9]{2,}$`)

func (c Config) validateReport(bad func(key, format string, a ...any)) {
	r := c.Report
	_, scheduled, err := ParseReportSchedule(r.Schedule)
	if err != nil {
		bad("report.schedule", "%v", err)
	}
	if r.SlackChannel != "" && !slackConversation.MatchString(r.SlackChannel) {
		bad("report.slack_channel", "want a Slack conversation id (C..., G...), not a channel name: Slack shares files to ids only; got %q", r.SlackChannel)
	}
	if len(r.Formats) == 0 {
		bad("report.formats", "need html, pdf or both")
	}
	for _, f := range r.Formats {
		if !slices.Contains(ReportFormats, f) {
			bad("report.formats", "%q is not html or pdf", f)
		}
	}
	if scheduled && c.Distributed() {
		bad("report.schedule", "the scheduled report reads the embedded data dir in this build: unset kafka.brokers, or run agentwatch report by hand")
	}
}
