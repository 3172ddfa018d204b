package silence

import (
	"bytes"
	"slices"
	"testing"
	"time"
)

func FuzzParseMatchers(f *testing.F) {
	for _, s := range []string{
		"agent_id=cs-agent-1,kind=behaviour",
		`{agent_id="cs-agent-1", feature=~"response_bytes\\..*"}`,
		`owner!="Jane Doe, Security"`,
		`severity!~low|medium`,
		`role=""`,
		`kind="~x",agent_id=~"x{1,3}"`,
		`credential_id="\u00a0\t\x00"`,
		"{}",
		"agent_id=a,",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ms, err := ParseMatchers(s)
		if err != nil {
			return // rejecting is fine; panicking is not
		}
		for _, m := range ms {
			if err := m.Validate(); err != nil {
				t.Fatalf("ParseMatchers(%q) gave invalid %+v: %v", s, m, err)
			}
		}
		out := FormatMatchers(ms)
		again, err := ParseMatchers(out)
		if err != nil || !slices.Equal(again, ms) {
			t.Fatalf("round trip of %q through %q: got %+v, %v; want %+v", s, out, again, err, ms)
		}
		if out2 := FormatMatchers(again); out2 != out {
			t.Fatalf("formatting is not stable: %q then %q", out, out2)
		}
		if len(ms) == 1 {
			one, err := ParseMatcher(ms[0].String())
			if err != nil || one != ms[0] {
				t.Fatalf("ParseMatcher(%q) = %+v, %v; want %+v", ms[0].String(), one, err, ms[0])
			}
		}
	})
}

func FuzzParseLine(f *testing.F) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
	s := Silence{
		ID: "0123456789abcdef0123456789abcdef", Matchers: []Matcher{{"agent_id", "cs-agent-1", MatchEqual}, {"feature", "resp.*", MatchRegexp}},
		StartsAt: at, EndsAt: at.Add(time.Hour), CreatedBy: "U123", Comment: "marked false positive", Reason: ReasonFalsePositive,
		AnomalyID: "a1", CreatedAt: at,
	}
	b, err := appendLine(nil, s)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(bytes.TrimSuffix(b, []byte("\n")))
	s.ExpiredAt, s.ExpiredBy = at.Add(time.Minute), "U456"
	b, _ = appendLine(nil, s)
	f.Add(bytes.TrimSuffix(b, []byte("\n")))
	f.Add([]byte(`{"silence":{"id":"x","matchers":[{"name":"owner","value":"","type":"equal"}],"starts_at":"2026-03-01T12:00:00+01:00","ends_at":"2026-03-01T13:00:00Z","created_by":"u","comment":"","reason":"","created_at":"2026-03-01T12:00:00Z"}}`))
	f.Add([]byte(`{"silence":null}`))
	f.Add([]byte(`{"silence":{}} {}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, _, err := parseLine(b)
		if err != nil {
			return
		}
		out, err := appendLine(nil, s)
		if err != nil {
			t.Fatalf("appendLine of parsed %q: %v", b, err)
		}
		if bytes.Count(out, []byte("\n")) != 1 {
			t.Fatalf("encoded line %q is not one line", out)
		}
		again, _, err := parseLine(out[:len(out)-1])
		if err != nil {
			t.Fatalf("round trip of %q: %v", b, err)
		}
		if out2, _ := appendLine(nil, again); !bytes.Equal(out, out2) {
			t.Fatalf("encoding is not stable: %q then %q", out, out2)
		}
	})
}
