package config

import (
	"strings"
	"testing"
	"time"
)

func TestReportKeys(t *testing.T) {
	cfg, err := load(write(t, "report:\n  schedule: weekly 06:30\n  slack_channel: C0REPORTS\n  formats: [pdf]\n"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	sch, ok, err := ParseReportSchedule(cfg.Report.Schedule)
	if err != nil || !ok || !sch.Weekly || sch.At != 6*time.Hour+30*time.Minute {
		t.Fatalf("%+v %v %v", sch, ok, err)
	}
	if cfg.Report.SlackChannel != "C0REPORTS" || len(cfg.Report.Formats) != 1 {
		t.Fatalf("%+v", cfg.Report)
	}
	for body, key := range map[string]string{
		"report:\n  schedule: daily 06:00\n":                             "report.schedule",
		"report:\n  schedule: monthly 24:00\n":                           "report.schedule",
		"report:\n  schedule: monthly 6:00\n":                            "report.schedule",
		"report:\n  slack_channel: '#reports'\n":                         "report.slack_channel",
		"report:\n  formats: [html, docx]\n":                             "report.formats",
		"report:\n  formats: []\n":                                       "report.formats",
		"kafka:\n  brokers: [a:1]\nreport:\n  schedule: monthly 06:00\n": "report.schedule: the scheduled report reads the embedded data dir",
	} {
		_, err := load(write(t, body), nil, nil)
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%q: want an error naming %s, got %v", body, key, err)
		}
	}
	if _, ok, err := ParseReportSchedule(""); ok || err != nil {
		t.Errorf("empty schedule: %v %v", ok, err)
	}
}
