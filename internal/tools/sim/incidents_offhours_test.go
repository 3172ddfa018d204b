package sim

import (
	"testing"
	"time"
)

func TestOffHoursIncidentIsAtNightForADayStartingInTheEvening(t *testing.T) {
	for _, start := range []time.Time{
		time.Date(2026, 11, 24, 20, 38, 0, 0, time.UTC),
		time.Date(2026, 11, 24, 1, 10, 0, 0, time.UTC),
		time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC),
	} {
		for _, spec := range DefaultIncidents(start, 24*time.Hour) {
			if spec.Kind != OffHours {
				continue
			}
			h := start.Add(spec.Offset).UTC().Hour()
			if h >= 7 && h < 20 {
				t.Errorf("start %s: off-hours incident at %02d:00 UTC, want outside business hours", start.Format(time.Kitchen), h)
			}
		}
	}
}
