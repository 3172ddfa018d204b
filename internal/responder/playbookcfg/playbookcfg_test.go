package playbookcfg

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/playbooks"
)

func playbook(name string) string {
	return "playbooks:\n  - name: " + name + "\n    trigger: {kinds: [behaviour]}\n    steps: [{notify: {channel: '#a'}}]\n"
}

func write(t *testing.T, dir, name, data string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadDirectoryOrder(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "20-b.yml", playbook("b"))
	write(t, dir, "10-a.yaml", playbook("a"))
	write(t, dir, "30-c.json", `{"playbooks": [{"name": "c", "trigger": {}, "steps": [{"notify": {"channel": "#a"}}]}]}`)
	write(t, dir, "README.md", "not a playbook")
	write(t, dir, ".hidden.yaml", "broken: [")
	write(t, dir, "sub/d.yaml", playbook("d")) // not recursive
	extra := write(t, t.TempDir(), "z.yaml", playbook("z"))
	set, err := Load([]string{extra, dir})
	if err != nil {
		t.Fatal(err)
	}
	if got := set.Names(); !slices.Equal(got, []string{"z", "a", "b", "c"}) {
		t.Errorf("order %v", got)
	}
	if pb, _ := set.Lookup("b"); pb.File != filepath.Join(dir, "20-b.yml") {
		t.Errorf("file %q", pb.File)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	good := write(t, dir, "good.yaml", playbook("a"))
	bad := write(t, dir, "bad.yaml", "playbooks:\n  - name: exfil\n    trigger: {kinds: [behaviour]}\n    steps:\n      - revoke: {adapter: kong}\n        ttl: -1h\n")
	dup := write(t, dir, "dup.yaml", "\n"+playbook("a"))
	empty := t.TempDir()
	for _, tc := range []struct {
		name  string
		paths []string
		want  []string
	}{
		{"no paths", nil, []string{"responder.playbooks: no playbook files"}},
		{"missing", []string{filepath.Join(dir, "nope.yaml")}, []string{"load playbooks (responder.playbooks): stat " + filepath.Join(dir, "nope.yaml") + ": no such file"}},
		{"empty dir", []string{empty}, []string{"directory " + empty + " holds no"}},
		{"every file's problems", []string{bad, filepath.Join(dir, "nope.yaml")}, []string{
			bad + `:6: playbook "exfil": steps[0].ttl: must be positive, got -1h`,
			"nope.yaml: no such file",
		}},
		{"same name in two files", []string{good, dup}, []string{dup + `:3: playbook "a": name: duplicate of the playbook in ` + good + ":2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set, err := Load(tc.paths)
			if err == nil || len(set.Playbooks) != 0 {
				t.Fatalf("Load = %d playbooks, %v", len(set.Playbooks), err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n%v\nlacks %q", err, w)
				}
			}
		})
	}
	big := write(t, dir, "big.yaml", "# "+strings.Repeat("x", MaxFileBytes)+"\n")
	if _, err := Load([]string{big}); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("big file: %v", err)
	}
}

// The shipped default set loads as the responder would load it.
func TestLoadDefault(t *testing.T) {
	set, err := Load([]string{"../../../deploy/playbooks"})
	if err != nil {
		t.Fatal(err)
	}
	ds := playbooks.Match(set, anomaly.Anomaly{ID: "x", AgentID: "ghost", Kind: anomaly.ShadowAgent, Severity: "high"}, playbooks.AgentInfo{})
	if len(ds) != 1 || ds[0].Playbook != "shadow-agent" {
		t.Errorf("shadow agent: %+v", ds)
	}
	refs := set.References()
	if !slices.Equal(refs.Channels, []string{"#soc-alerts"}) || !slices.Equal(refs.Adapters, []string{"denylist"}) || len(refs.WebhookTargets) != 0 {
		t.Errorf("references %+v", refs)
	}
}

// The embedded set is the shipped directory, named so that nobody looks
// for it on disk; an empty responder.playbooks means it.
func TestBuiltinIsTheShippedDirectory(t *testing.T) {
	disk, err := Load([]string{"../../../deploy/playbooks"})
	if err != nil {
		t.Fatal(err)
	}
	for name, load := range map[string]func() (playbooks.Set, error){
		"Builtin":            Builtin,
		"LoadOrBuiltin(nil)": func() (playbooks.Set, error) { return LoadOrBuiltin(nil) },
	} {
		set, err := load()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !slices.Equal(set.Names(), disk.Names()) {
			t.Errorf("%s: names %v, want %v", name, set.Names(), disk.Names())
		}
		for i, pb := range set.Playbooks {
			want := disk.Playbooks[i]
			if pb.File != BuiltinPrefix+filepath.Base(want.File) {
				t.Errorf("%s: file %q, want %q", name, pb.File, BuiltinPrefix+filepath.Base(want.File))
			}
			pb.File, want.File = "", ""
			if !reflect.DeepEqual(pb, want) {
				t.Errorf("%s: playbook %s differs from the file on disk", name, pb.Name)
			}
		}
	}
	// A path given wins over the built-in set.
	one := write(t, t.TempDir(), "one.yaml", playbook("one"))
	if set, err := LoadOrBuiltin([]string{one}); err != nil || !slices.Equal(set.Names(), []string{"one"}) {
		t.Errorf("LoadOrBuiltin(path) = %v, %v", set.Names(), err)
	}
}

func TestLoadFSErrorsNameTheFile(t *testing.T) {
	fsys := fstest.MapFS{
		"10-good.yaml": {Data: []byte(playbook("a"))},
		"20-bad.yaml":  {Data: []byte("playbooks:\n  - name: exfil\n    trigger: {kinds: [behaviour]}\n    steps:\n      - revoke: {adapter: kong}\n        ttl: -1h\n")},
		"30-dup.yaml":  {Data: []byte("\n" + playbook("a"))},
		"README.md":    {Data: []byte("not a playbook")},
	}
	_, err := loadFS(fsys, BuiltinPrefix)
	if err == nil || !strings.Contains(err.Error(), `builtin:20-bad.yaml:6: playbook "exfil": steps[0].ttl: must be positive, got -1h`) {
		t.Errorf("bad file: %v", err)
	}
	delete(fsys, "20-bad.yaml")
	_, err = loadFS(fsys, BuiltinPrefix)
	if err == nil || !strings.Contains(err.Error(), `builtin:30-dup.yaml:3: playbook "a": name: duplicate of the playbook in builtin:10-good.yaml:2`) {
		t.Errorf("duplicate: %v", err)
	}
	if _, err := loadFS(fstest.MapFS{}, BuiltinPrefix); err == nil || !strings.Contains(err.Error(), "none embedded") {
		t.Errorf("empty: %v", err)
	}
}
