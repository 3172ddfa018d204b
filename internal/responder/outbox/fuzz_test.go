package outbox

import (
	"bytes"
	"testing"
	"time"
)

func FuzzParseLine(f *testing.F) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
	e := Entry{
		Key: "3f2a9c0d1e4b5a69788796a5b4c3d2e1-0", Kind: "slack.post", OrderKey: "slack:inc-7", Seq: 42,
		Payload: []byte(`{"channel":"C1","text":"<!channel> \u0000"}`), State: StateParked, Attempts: 5, Failures: 3,
		RetryAfterWaits: 2, NextAttempt: at.Add(time.Minute), LastError: "gateway answered 503", Result: []byte("1700000000.000100"),
		Created: at, Updated: at.Add(time.Hour),
	}
	for _, l := range []line{{Entry: &e}, {Seen: &seenLine{ID: "anomaly-1", At: at}}} {
		b, err := appendLine(nil, l)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(bytes.TrimSuffix(b, []byte("\n")))
	}
	f.Add([]byte(`{"entry":{"key":"k","kind":"k","seq":1,"payload":null,"state":"pending","attempts":0,"failures":0,"retry_after_waits":0,"next_attempt":"2026-03-01T12:00:00+01:00","created":"0001-01-01T00:00:00Z","updated":"0001-01-01T00:00:00Z"}}`))
	f.Add([]byte(`{"entry":{},"seen":{}}`))
	f.Add([]byte(`{"seen":{"id":"a","at":"2026-03-01T12:00:00Z"}} {}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := parseLine(b)
		if err != nil {
			return // rejecting is fine; panicking is not
		}
		out, err := appendLine(nil, l)
		if err != nil {
			t.Fatalf("appendLine of parsed %q: %v", b, err)
		}
		if bytes.Count(out, []byte("\n")) != 1 {
			t.Fatalf("encoded line %q is not one line", out)
		}
		again, err := parseLine(out[:len(out)-1])
		if err != nil {
			t.Fatalf("round trip of %q: %v", b, err)
		}
		out2, err := appendLine(nil, again)
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("encoding is not stable: %q then %q (%v)", out, out2, err)
		}
		if (l.Entry == nil) != (again.Entry == nil) || (l.Entry != nil && !equalEntries(*l.Entry, *again.Entry)) {
			t.Fatalf("round trip of %q changed the entry: %+v then %+v", b, l.Entry, again.Entry)
		}
	})
}
