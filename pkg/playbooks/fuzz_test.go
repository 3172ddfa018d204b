package playbooks

import (
	"errors"
	"os"
	"testing"
)

func FuzzParse(f *testing.F) {
	if data, err := os.ReadFile(defaultFile); err == nil {
		f.Add(data)
	}
	f.Add([]byte(valid))
	f.Add([]byte(matchSet))
	f.Add([]byte(`{"playbooks": [{"name": "a", "trigger": {"labels": {"k": "v"}}, "steps": [{"snapshot": null}, {"throttle": {"adapter": "kong", "rate_per_minute": 5}, "ttl": "1h"}]}]}`))
	f.Add([]byte("playbooks:\n  - &p {name: a, trigger: &t {}, steps: [{webhook: {target: x}}]}\n  - {name: b, trigger: *t, steps: [{approve: {channel: '#a'}}]}\n"))
	f.Add([]byte("playbooks:\n  - name: a\n    manual_only: true\n    steps: [{revoke: {adapter: kong}, ttl: -1h}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		set, err := Parse("f.yaml", data)
		if err != nil {
			// Rejecting is fine; returning a half-parsed set is not, and
			// every problem must say where it is.
			if len(set.Playbooks) != 0 {
				t.Fatalf("Parse returned %d playbooks and %v", len(set.Playbooks), err)
			}
			for _, e := range unjoin(err) {
				var fe *FieldError
				if errors.As(e, &fe) && fe.File != "f.yaml" {
					t.Fatalf("error %q names file %q", fe, fe.File)
				}
			}
			return
		}
		if err := set.Validate(); err != nil {
			t.Fatalf("Parse accepted a set that Validate refuses: %v", err)
		}
		out, err := Marshal(set)
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		again, err := Parse("again.yaml", out)
		if err != nil {
			t.Fatalf("reparse of\n%s\n: %v", out, err)
		}
		if !equalSets(set, again) {
			t.Fatalf("round trip changed the set:\n%s", out)
		}
	})
}
