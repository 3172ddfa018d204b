package kstate

import (
	"slices"
	"testing"
)

func TestMuxRoutesByLongestPrefix(t *testing.T) {
	m := NewMux()
	var got []string
	m.Handle("s/", func(r Record) { got = append(got, "silence:"+r.Key) })
	m.Handle("s/x/", func(r Record) { got = append(got, "special:"+r.Key) })
	m.Handle("b/", func(r Record) { got = append(got, "budget:"+r.Key) })
	for _, k := range []string{"s/1", "s/x/2", "b/3", "z/unknown", "s"} {
		m.Apply(Record{Key: k, Value: []byte("v")})
	}
	want := []string{"silence:s/1", "special:s/x/2", "budget:b/3"}
	if !slices.Equal(got, want) {
		t.Fatalf("routed %v, want %v", got, want)
	}
	if m.Unhandled() != 2 {
		t.Fatalf("unhandled = %d, want 2", m.Unhandled())
	}
	defer func() {
		if recover() == nil {
			t.Fatal("a second handler for one prefix did not panic")
		}
	}()
	m.Handle("b/", func(Record) {})
}
