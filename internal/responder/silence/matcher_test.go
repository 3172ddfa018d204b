package silence

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestMatcherMatches(t *testing.T) {
	labels := map[string]string{"agent_id": "cs-agent-1", "kind": "behaviour", "feature": "response_bytes", "partition": "0"}
	for _, tc := range []struct {
		m    Matcher
		want bool
	}{
		{Matcher{"agent_id", "cs-agent-1", MatchEqual}, true},
		{Matcher{"agent_id", "cs-agent-2", MatchEqual}, false},
		{Matcher{"agent_id", "cs-agent", MatchEqual}, false},
		{Matcher{"agent_id", "cs-agent-2", MatchNotEqual}, true},
		{Matcher{"agent_id", "cs-agent-1", MatchNotEqual}, false},
		{Matcher{"agent_id", "cs-agent-.*", MatchRegexp}, true},
		{Matcher{"agent_id", "cs-.*|billing-.*", MatchRegexp}, true}, // alternation stays inside the anchors
		{Matcher{"agent_id", "agent", MatchRegexp}, false},           // anchored: a substring is not enough
		{Matcher{"agent_id", "cs-agent", MatchRegexp}, false},        // anchored at the end too
		{Matcher{"agent_id", "^cs-agent-1$", MatchRegexp}, true},     // explicit anchors are harmless
		{Matcher{"agent_id", "x|cs-agent-1", MatchRegexp}, true},     // "^(?:x|cs-agent-1)$", not "^x|cs-agent-1$"
		{Matcher{"agent_id", "cs-agent-.*", MatchNotRegexp}, false},
		{Matcher{"agent_id", "agent", MatchNotRegexp}, true}, // anchored the same way
		{Matcher{"feature", "response_bytes(_max)?", MatchRegexp}, true},
		// A missing label has the empty value, as in Alertmanager.
		{Matcher{"owner", "", MatchEqual}, true},
		{Matcher{"owner", "alice", MatchEqual}, false},
		{Matcher{"owner", "alice", MatchNotEqual}, true},
		{Matcher{"owner", "", MatchNotEqual}, false},
		{Matcher{"owner", ".*", MatchRegexp}, true},
		{Matcher{"owner", ".+", MatchRegexp}, false},
		{Matcher{"owner", ".+", MatchNotRegexp}, true},
		{Matcher{"partition", "0", MatchEqual}, true},
		// Invalid matchers match nothing.
		{Matcher{"agent_id", "(", MatchRegexp}, false},
		{Matcher{"agent_id", "(", MatchNotRegexp}, false},
		{Matcher{"host", "", MatchEqual}, false},
		{Matcher{"agent_id", "cs-agent-1", "like"}, false},
	} {
		if got := tc.m.Matches(labels); got != tc.want {
			t.Errorf("%s (%s).Matches = %v; want %v", tc.m, tc.m.Type, got, tc.want)
		}
	}
}

func TestMatcherValidate(t *testing.T) {
	bad := func(m Matcher, want ...string) {
		t.Helper()
		err := m.Validate()
		if err == nil {
			t.Fatalf("Validate(%+v) = nil; want an error", m)
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Validate(%+v) = %q; want it to mention %q", m, err, w)
			}
		}
	}
	bad(Matcher{"host", "a", MatchEqual}, `name "host"`, "agent_id")
	bad(Matcher{"Agent_ID", "a", MatchEqual}, "name")
	bad(Matcher{"agent_id", "a", "=="}, "type")
	bad(Matcher{"agent_id", "(a", MatchRegexp}, "regex", "missing closing )")
	bad(Matcher{"agent_id", "a{1001}", MatchNotRegexp}, "regex")
	bad(Matcher{"agent_id", strings.Repeat("a", MaxValueLen+1), MatchEqual}, "1025 bytes")
	bad(Matcher{"agent_id", "\xff", MatchEqual}, "UTF-8")
	bad(Matcher{"x", "(", "?"}, "name", "type") // every problem at once

	for _, m := range []Matcher{
		{"agent_id", "", MatchEqual},
		{"feature", "(", MatchEqual}, // not a regex: anything goes
		{"severity", "high|critical", MatchRegexp},
		{"agent_id", strings.Repeat("a", MaxValueLen), MatchEqual},
	} {
		if err := m.Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v; want nil", m, err)
		}
	}
}

func TestParseMatcher(t *testing.T) {
	ok := func(s string, want Matcher) {
		t.Helper()
		got, err := ParseMatcher(s)
		if err != nil || got != want {
			t.Fatalf("ParseMatcher(%q) = %+v, %v; want %+v", s, got, err, want)
		}
	}
	ok("agent_id=cs-agent-1", Matcher{"agent_id", "cs-agent-1", MatchEqual})
	ok("agent_id!=cs-agent-1", Matcher{"agent_id", "cs-agent-1", MatchNotEqual})
	ok("agent_id=~cs-.*", Matcher{"agent_id", "cs-.*", MatchRegexp})
	ok("agent_id!~cs-.*", Matcher{"agent_id", "cs-.*", MatchNotRegexp})
	ok("  kind = behaviour  ", Matcher{"kind", "behaviour", MatchEqual})
	ok("feature=~response_bytes\\..*", Matcher{"feature", `response_bytes\..*`, MatchRegexp}) // bare: backslash is literal
	ok(`feature=~"response_bytes\\..*"`, Matcher{"feature", `response_bytes\..*`, MatchRegexp})
	ok(`owner=""`, Matcher{"owner", "", MatchEqual})
	ok(`owner="Jane Doe, Security"`, Matcher{"owner", "Jane Doe, Security", MatchEqual})
	ok(`owner="say \"hi\""`, Matcher{"owner", `say "hi"`, MatchEqual})
	ok(`agent_id="~tilde"`, Matcher{"agent_id", "~tilde", MatchEqual})
	ok(`agent_id=~"~tilde"`, Matcher{"agent_id", "~tilde", MatchRegexp})
	ok(`role=équipe`, Matcher{"role", "équipe", MatchEqual})
	ok(`severity=~high|critical`, Matcher{"severity", "high|critical", MatchRegexp})

	bad := func(s, want string) {
		t.Helper()
		_, err := ParseMatcher(s)
		if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Fatalf("ParseMatcher(%q) = %v; want an ErrInvalid mentioning %q", s, err, want)
		}
	}
	bad("", "want name=value")
	bad("=x", "want name=value")
	bad("agent_id", "want one of")
	bad("agent_id:x", "want one of")
	bad("agent_id=", "empty")
	bad("agent_id==x", "quote it")
	bad("agent_id= ~x", "quote it")
	bad("agent_id=a b", "must be quoted")
	bad(`agent_id=a"b`, "must be quoted")
	bad(`agent_id="abc`, "unterminated")
	bad(`agent_id="a"b`, "after the quoted value")
	bad(`agent_id="\q"`, "bad quoted string")
	bad(`agent_id="\xff"`, "UTF-8")
	bad("host=web-1", `name "host"`)
	bad("agent_id=~(", "regex")
	bad("agent_id=~x{1,3}", "must be quoted") // a comma always needs quotes, list or not
}

func TestParseMatchers(t *testing.T) {
	ok := func(s string, want ...Matcher) {
		t.Helper()
		got, err := ParseMatchers(s)
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("ParseMatchers(%q) = %+v, %v; want %+v", s, got, err, want)
		}
	}
	a, k := Matcher{"agent_id", "cs-agent-1", MatchEqual}, Matcher{"kind", "behaviour", MatchEqual}
	ok("")
	ok(" {} ")
	ok("agent_id=cs-agent-1", a)
	ok("agent_id=cs-agent-1,kind=behaviour", a, k)
	ok("agent_id=cs-agent-1 , kind=behaviour", a, k)
	ok(`{agent_id="cs-agent-1", kind="behaviour"}`, a, k)
	ok(`owner="a,b",kind=behaviour`, Matcher{"owner", "a,b", MatchEqual}, k)
	ok(`owner="a\",b",kind=behaviour`, Matcher{"owner", `a",b`, MatchEqual}, k)
	ok(`agent_id=~"x{1,3}"`, Matcher{"agent_id", "x{1,3}", MatchRegexp})

	bad := func(s, want string) {
		t.Helper()
		_, err := ParseMatchers(s)
		if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Fatalf("ParseMatchers(%q) = %v; want an ErrInvalid mentioning %q", s, err, want)
		}
	}
	bad("agent_id=a,", "trailing comma")
	bad("agent_id=a,,kind=b", "want name=value")
	bad("{agent_id=a", "closing brace")
	bad("agent_id=~x{1,3}", `matcher "3}"`) // unquoted, the comma splits it
	bad(`owner="a,b`, "unterminated")
	bad(strings.Repeat("kind=a,", MaxMatchers)+"kind=a", "at most 32")
}

func TestFormatMatchers(t *testing.T) {
	ms := []Matcher{
		{"agent_id", "cs-agent-1", MatchEqual},
		{"owner", "Jane Doe, Security", MatchNotEqual},
		{"feature", `response_bytes\..*`, MatchRegexp},
		{"role", "", MatchNotRegexp},
		{"kind", "~x", MatchEqual},
		{"severity", "=x", MatchEqual},
		{"credential_id", "tab\there", MatchEqual},
	}
	const want = `agent_id=cs-agent-1,owner!="Jane Doe, Security",feature=~response_bytes\..*,role!~"",kind="~x",severity="=x",credential_id="tab\there"`
	got := FormatMatchers(ms)
	if got != want {
		t.Fatalf("FormatMatchers = %s\nwant             %s", got, want)
	}
	back, err := ParseMatchers(got)
	if err != nil || !slices.Equal(back, ms) {
		t.Fatalf("ParseMatchers(FormatMatchers(ms)) = %+v, %v; want %+v", back, err, ms)
	}
}
