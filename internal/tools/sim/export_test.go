package sim

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/agentwatch/agentwatch/pkg/routes"
)

var update = flag.Bool("update", false, "rewrite deploy/sim from the default simulation")

func TestRoutes(t *testing.T) {
	routes := Inventory()
	seen := map[string]bool{}
	var sensitive, deprecated int
	for _, r := range routes {
		if seen[r.Template] {
			t.Errorf("template %s listed twice", r.Template)
		}
		seen[r.Template] = true
		if r.Sensitive {
			sensitive++
		}
		if r.Deprecated {
			deprecated++
			if len(r.Roles) != 0 {
				t.Errorf("deprecated %s is used by %v in normal work", r.Template, r.Roles)
			}
		}
		if len(r.Methods) == 0 || r.Service == "" {
			t.Errorf("route %+v lacks methods or service", r)
		}
	}
	if sensitive < len(Roles) || deprecated < len(Roles) {
		t.Errorf("%d sensitive and %d deprecated routes; want one of each per role at least", sensitive, deprecated)
	}
	for _, p := range reconPaths {
		if seen[p] {
			t.Errorf("recon path %s is in the inventory", p)
		}
	}
}

func TestRegistryYAMLRoundTrip(t *testing.T) {
	s := mustNew(t, Config{Seed: 4, Agents: 25, Start: tuesday, Duration: time.Hour})
	var buf bytes.Buffer
	if err := WriteRegistryYAML(&buf, s.Registry()); err != nil {
		t.Fatal(err)
	}
	got, err := ReadRegistryYAML(&buf)
	if err != nil {
		t.Fatal(err)
	}
	want := s.Registry()
	if len(got.Agents) != 25 {
		t.Fatalf("read %d agents, want 25", len(got.Agents))
	}
	for i, a := range want.Agents {
		g := got.Agents[i]
		if g.ID != a.ID || g.Role != a.Role || g.Owner != a.Owner || g.CredentialID != a.CredentialID || !slices.Equal(g.ApprovedRoutes, a.ApprovedRoutes) {
			t.Errorf("agent %d: read %+v, wrote %+v", i, g, a)
		}
	}
	if _, err := ReadRegistryYAML(strings.NewReader("agents:\n  - id: x\n    colour: red\n")); err == nil {
		t.Error("unknown registry key accepted")
	}
}

func TestRoutesYAMLRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteRoutesYAML(&buf, Inventory()); err != nil {
		t.Fatal(err)
	}
	got, err := ReadRoutesYAML(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, Inventory()) {
		t.Fatalf("route inventory changed in a YAML round trip:\n%+v\n%+v", got, Inventory())
	}
}

func TestOpenAPI(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteOpenAPI(&buf, Inventory()); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		OpenAPI string                          `yaml:"openapi"`
		Paths   map[string]map[string]yaml.Node `yaml:"paths"`
	}
	if err := yaml.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatalf("openapi output is not YAML: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi: %q", doc.OpenAPI)
	}
	for _, r := range Inventory() {
		item, ok := doc.Paths[r.Template]
		if !ok {
			t.Errorf("path %s missing", r.Template)
			continue
		}
		for _, m := range r.Methods {
			node, ok := item[strings.ToLower(m)]
			if !ok {
				t.Errorf("%s %s missing", m, r.Template)
				continue
			}
			var op struct {
				Tags       []string `yaml:"tags"`
				Deprecated bool     `yaml:"deprecated"`
			}
			if err := node.Decode(&op); err != nil {
				t.Fatalf("%s %s: %v", m, r.Template, err)
			}
			if op.Deprecated != r.Deprecated || slices.Contains(op.Tags, "deprecated") != r.Deprecated || slices.Contains(op.Tags, "sensitive") != r.Sensitive {
				t.Errorf("%s %s: tags %v deprecated %v; want sensitive=%v deprecated=%v", m, r.Template, op.Tags, op.Deprecated, r.Sensitive, r.Deprecated)
			}
		}
	}
	if len(doc.Paths) != len(Inventory()) {
		t.Errorf("%d paths, want %d", len(doc.Paths), len(Inventory()))
	}

	// pkg/routes, the document's consumer, must read the same inventory
	// and map generated paths back to their templates.
	rs, err := routes.ParseOpenAPI(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	n, err := routes.New(rs)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range Inventory() {
		got, ok := n.Lookup(r.Template)
		if !ok || slices.Contains(got.Tags, "sensitive") != r.Sensitive || slices.Contains(got.Tags, routes.TagDeprecated) != r.Deprecated {
			t.Errorf("pkg/routes read %s as %+v (found %v)", r.Template, got, ok)
		}
		path := strings.ReplaceAll(r.Template, "{id}", "4711")
		if m, ok := n.Match(path); !ok || m != r.Template {
			t.Errorf("pkg/routes matched %s to %q, want %s", path, m, r.Template)
		}
	}
}

// TestDeployExamples keeps deploy/sim in step with the simulator: run
// `go test ./internal/tools/sim -run TestDeployExamples -update` after changing
// the catalog or the fleet.
func TestDeployExamples(t *testing.T) {
	s := mustNew(t, ExampleConfig())
	files := map[string]func(*bytes.Buffer) error{
		"registry.yaml": func(b *bytes.Buffer) error { return WriteRegistryYAML(b, s.Registry()) },
		"routes.yaml":   func(b *bytes.Buffer) error { return WriteRoutesYAML(b, s.Routes()) },
		"openapi.yaml":  func(b *bytes.Buffer) error { return WriteOpenAPI(b, s.Routes()) },
	}
	for name, write := range files {
		var buf bytes.Buffer
		if err := write(&buf); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join("..", "..", "..", "deploy", "sim", name)
		if *update {
			if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		have, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v; run go test ./internal/tools/sim -run TestDeployExamples -update", err)
		}
		if !bytes.Equal(have, buf.Bytes()) {
			t.Errorf("%s is stale; run go test ./internal/tools/sim -run TestDeployExamples -update", path)
		}
	}
}

func TestPacer(t *testing.T) {
	simStart := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	wallStart := time.Date(2025, 3, 8, 0, 0, 0, 0, time.UTC)
	p := Pacer{SimStart: simStart, WallStart: wallStart, Speed: 60}
	if got := p.WallTime(simStart.Add(time.Hour)); !got.Equal(wallStart.Add(time.Minute)) {
		t.Errorf("an hour at 60x is due at %s, want %s", got, wallStart.Add(time.Minute))
	}
	if got := p.SimTime(wallStart.Add(time.Minute)); !got.Equal(simStart.Add(time.Hour)) {
		t.Errorf("SimTime after a minute = %s", got)
	}
	// Catching up: a week behind at 1000x, simulated time meets the wall
	// clock after about 10 minutes and then follows it.
	c := Pacer{SimStart: simStart, WallStart: wallStart, Speed: 1000, NotAfterWall: true}
	for _, w := range []time.Duration{0, 5 * time.Minute, 11 * time.Minute, time.Hour} {
		wall := wallStart.Add(w)
		sim := c.SimTime(wall)
		if sim.After(wall) {
			t.Errorf("at wall %s simulated time %s is ahead", wall, sim)
		}
		if back := c.WallTime(sim); back.Sub(wall).Abs() > time.Millisecond {
			t.Errorf("WallTime(SimTime(%s)) = %s", wall, back)
		}
	}
	if got := c.SimTime(wallStart.Add(time.Hour)); !got.Equal(wallStart.Add(time.Hour)) {
		t.Errorf("caught-up pacer gives %s, want the wall clock", got)
	}

	synctest.Test(t, func(t *testing.T) {
		now := time.Now()
		p := Pacer{SimStart: simStart, WallStart: now, Speed: 120}
		if err := p.Wait(context.Background(), simStart.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if waited := time.Since(now); waited != 30*time.Second {
			t.Errorf("waited %s for an hour at 120x, want 30s", waited)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := p.Wait(ctx, simStart.Add(24*time.Hour)); err == nil {
			t.Error("Wait outlived its context")
		}
	})
}

func TestWriteTo(t *testing.T) {
	cfg := Config{Seed: 8, Start: tuesday.Add(9 * time.Hour), Duration: 20 * time.Minute, GarbageRate: 0.05}
	want := all(mustNew(t, cfg))
	var buf bytes.Buffer
	n, err := mustNew(t, cfg).WriteTo(&buf)
	if err != nil || n != int64(buf.Len()) {
		t.Fatalf("WriteTo = %d, %v; wrote %d bytes", n, err, buf.Len())
	}
	got := bytes.Split(bytes.TrimSuffix(buf.Bytes(), []byte("\n")), []byte("\n"))
	if len(got) != len(want) {
		t.Fatalf("WriteTo wrote %d lines, Next gives %d: a line holds a newline", len(got), len(want))
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i].Raw) {
			t.Fatalf("line %d differs", i)
		}
	}
	seen := 0
	for range mustNew(t, cfg).All() {
		seen++
		if seen == 10 {
			break
		}
	}
	if seen != 10 {
		t.Fatalf("All stopped after %d lines", seen)
	}
}

// FuzzReadRoutesYAML: whatever ReadRoutesYAML accepts must survive a write
// and read back unchanged.
func FuzzReadRoutesYAML(f *testing.F) {
	var buf bytes.Buffer
	if err := WriteRoutesYAML(&buf, Inventory()[:3]); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add([]byte("routes:\n  - template: /a/{id}\n    methods: [GET, POST]\n    tags: [deprecated, other]\n"))
	f.Fuzz(func(t *testing.T, doc []byte) {
		rs, err := ReadRoutesYAML(bytes.NewReader(doc))
		if err != nil {
			return
		}
		var out bytes.Buffer
		if err := WriteRoutesYAML(&out, rs); err != nil {
			t.Fatalf("write what was read: %v", err)
		}
		again, err := ReadRoutesYAML(&out)
		if err != nil || !reflect.DeepEqual(norm(again), norm(rs)) {
			t.Fatalf("round trip of %q: %+v, %v; want %+v", doc, again, err, rs)
		}
	})
}

// norm makes empty and nil slices compare equal: YAML cannot tell them apart.
func norm(rs []RouteSpec) []RouteSpec {
	for i := range rs {
		if len(rs[i].Methods) == 0 {
			rs[i].Methods = nil
		}
		if len(rs[i].Roles) == 0 {
			rs[i].Roles = nil
		}
	}
	if len(rs) == 0 {
		return nil
	}
	return rs
}
