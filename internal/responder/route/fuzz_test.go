package route

import (
	"encoding/json"
	"testing"
)

// FuzzApply feeds the Router records as any process with write access to
// the global table could write them: it never panics, and it keeps only
// commands whose id is their key.
func FuzzApply(f *testing.F) {
	good, _ := json.Marshal(click("f1"))
	f.Add("c/slack-action:f1", good)
	f.Add("c/x", []byte(`{"id":"x","kind":"run","state":"done"}`))
	f.Add("c/x", []byte(`{"id":"y"}`))
	f.Add("c/", []byte(`null`))
	f.Add("s/1", []byte(`{}`))
	f.Fuzz(func(t *testing.T, key string, value []byte) {
		r, err := New(Options{Instance: "fuzz"})
		if err != nil {
			t.Fatal(err)
		}
		r.Apply(key, value)
		r.mu.Lock()
		defer r.mu.Unlock()
		for id, c := range r.cmds {
			if c.ID != id || Prefix+id != key {
				t.Fatalf("kept %q under %q from key %q", c.ID, id, key)
			}
			if err := c.validate(); err != nil && !c.Final() {
				t.Fatalf("kept a pending command nobody can run: %v", err)
			}
		}
	})
}
