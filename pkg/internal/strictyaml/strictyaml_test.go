package strictyaml

import (
	"errors"
	"io"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		in      string
		wantErr error // nil: success; errAny: some other error
	}{
		{"a: 1\n", nil},
		{"", io.EOF},
		{"# only a comment\n", io.EOF},
		{"a: 1\n---\nb: 2\n", ErrExtraDocument},
		{"a: b: c\n", errAny},
	} {
		root, err := Decode([]byte(tc.in))
		switch {
		case tc.wantErr == nil && (err != nil || root == nil || root.Kind != yaml.DocumentNode):
			t.Errorf("Decode(%q) = %v, %v; want a document", tc.in, root, err)
		case tc.wantErr == errAny && (err == nil || !strings.HasPrefix(err.Error(), "yaml: ")):
			t.Errorf("Decode(%q) error = %v; want yaml's syntax error", tc.in, err)
		case tc.wantErr != nil && tc.wantErr != errAny && !errors.Is(err, tc.wantErr):
			t.Errorf("Decode(%q) error = %v; want %v", tc.in, err, tc.wantErr)
		}
	}
}

var errAny = errors.New("any")

func TestResolveBudget(t *testing.T) {
	root, err := Decode([]byte("a: &x [1, 2]\nb: *x\n"))
	if err != nil {
		t.Fatal(err)
	}
	budget := 2
	top, ok := Resolve(root, &budget)
	if !ok || top.Kind != yaml.MappingNode || budget != 1 {
		t.Fatalf("Resolve(document) = %v, %v, budget %d; want the mapping, budget 1", top, ok, budget)
	}
	alias := top.Content[3]
	n, ok := Resolve(alias, &budget)
	if ok || n == nil || n.Kind != yaml.SequenceNode {
		t.Fatalf("Resolve(alias) with the last unit = %v, %v; want the list and false (report here)", n, ok)
	}
	if n, ok := Resolve(alias, &budget); ok || n != nil {
		t.Fatalf("Resolve after the budget = %v, %v; want nil, false", n, ok)
	}
	if n, ok := Resolve(nil, &budget); ok || n != nil {
		t.Fatalf("Resolve(nil) = %v, %v", n, ok)
	}
}

func TestKindNameAndHint(t *testing.T) {
	root, _ := Decode([]byte("m: {}\ns: []\nn: ~\nv: " + strings.Repeat("x", 50) + "\n"))
	c := root.Content[0].Content
	for i, want := range []string{"a mapping", "a list", "null", `the scalar "` + strings.Repeat("x", 40) + `"`} {
		if got := KindName(c[2*i+1]); got != want {
			t.Errorf("KindName(%s) = %s; want %s", c[2*i].Value, got, want)
		}
		if IsNull(c[2*i+1]) != (want == "null") {
			t.Errorf("IsNull(%s) = %v", c[2*i].Value, !(want == "null"))
		}
	}
	if !IsNull(nil) {
		t.Error("IsNull(nil) = false")
	}
	if h, m := Hint("chanel", []string{"channel", "text"}); m != "channel" || h != `did you mean "channel"?` {
		t.Errorf("Hint(chanel) = %q, %q", h, m)
	}
	if h, m := Hint("zzz", []string{"channel", "text"}); m != "" || h != "known fields are channel, text" {
		t.Errorf("Hint(zzz) = %q, %q", h, m)
	}
}
