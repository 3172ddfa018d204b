package sim

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"
)

// pinConfigs are old-style configs, using only what Config had before the
// evaluation features, whose output must never change.
var pinConfigs = []Config{
	{Seed: 99, Agents: 30, Start: time.Date(2025, 3, 4, 1, 0, 0, 0, time.UTC), Duration: 3 * time.Hour, GarbageRate: 0.05},
	{Seed: 7, Agents: 12, Start: time.Date(2025, 3, 8, 9, 30, 17, 0, time.UTC), Duration: 90 * time.Minute, Incidents: []IncidentSpec{
		{Kind: Exfiltration, Offset: 5 * time.Minute, Duration: 10 * time.Minute},
		{Kind: EndpointSprawl, Offset: 20 * time.Minute, Duration: 10 * time.Minute},
		{Kind: AuthStorm, Agent: "fin-agent-001", Offset: 30 * time.Minute, Duration: 5 * time.Minute, Rate: 50},
		{Kind: ZombieAPI, Offset: 40 * time.Minute, Duration: 20 * time.Minute},
		{Kind: UnregisteredAgent, Offset: 0, Duration: time.Hour},
		{Kind: OffHours, Offset: 60 * time.Minute, Duration: 10 * time.Minute},
	}},
	{Seed: 3, Start: time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC), Duration: 40 * time.Minute, Formats: []string{"kong", "nginx_combined"}, RateScale: 0.5},
}

// pinHash hashes every line of cfg with its labels, the registry and the
// run's route inventory.
func pinHash(t *testing.T, cfg Config) (string, int) {
	t.Helper()
	s := mustNew(t, cfg)
	h := sha256.New()
	var b bytes.Buffer
	if err := WriteRegistryYAML(&b, s.Registry()); err != nil {
		t.Fatal(err)
	}
	if err := WriteRoutesYAML(&b, s.Routes()); err != nil {
		t.Fatal(err)
	}
	h.Write(b.Bytes())
	for _, inc := range s.Incidents() {
		h.Write([]byte(inc.ID + inc.Agent + inc.Start.String() + inc.End.String() + "\n"))
	}
	n := 0
	for l := range s.All() {
		n++
		h.Write(l.Raw)
		h.Write([]byte{0})
		h.Write([]byte(l.Incident + "\x00" + string(l.Garbage) + "\n"))
	}
	return hex.EncodeToString(h.Sum(nil)), n
}

// TestOldConfigsUnchanged pins the output of configs that use no field
// added for detection-quality evaluation (benign changes, History, the
// incident kinds beyond IncidentKinds): the detector's, demo's and
// ingest's tests depend on the exact traffic. The hashes were computed
// with the code as it was BEFORE those features were added (commit
// 5117400), and must never change. If this fails, new code draws from an
// old random stream or changed the catalog order, the fleet or rendering.
func TestOldConfigsUnchanged(t *testing.T) {
	want := []struct {
		lines int
		sum   string
	}{
		{6746, "82f80be6589d09777cbe55f42cffefc3ef6b1fe04b8786aced70cbfa0b4a1531"},
		{1252, "01e248f5761ff97aa4d85cf9c6412cd957628faa66e275563d0ee4217d2266ee"},
		{1977, "d97593ca66187862af0d74f7a4646113cf621ebc8b6fd43a276b29010a932179"},
	}
	for i, cfg := range pinConfigs {
		sum, n := pinHash(t, cfg)
		if n != want[i].lines || sum != want[i].sum {
			t.Errorf("config %d: %d lines, sha256 %s; want %d lines, %s (the output of an old-style Config changed)", i, n, sum, want[i].lines, want[i].sum)
		}
	}
}
