package preview

import (
	"strings"
	"testing"
)

const rec1 = `{"v":1,"anomaly_id":"a1","agent_id":"cs-agent-006","kind":"behaviour","severity":"critical","score":89.4,"window_start_ms":1796219640000,"window_end_ms":1796219700000}`
const rec2 = `{"anomaly_id":"a2","agent_id":"it-007","kind":"unapproved_route","severity":"medium","extra_field":{"ignored":true}}`

func TestReadAnomalies(t *testing.T) {
	for _, c := range []struct {
		name, in string
		ids      []string
		err      string // substring of the error; "" for none
	}{
		{"one record", rec1, []string{"a1"}, ""},
		{"one record, pretty-printed", "\n  {\n  \"anomaly_id\": \"a1\",\n  \"agent_id\": \"x\",\n  \"kind\": \"drift\",\n  \"severity\": \"high\"\n}\n", []string{"a1"}, ""},
		{"a byte order mark", "\xef\xbb\xbf" + rec1, []string{"a1"}, ""},
		{"an array", "[" + rec1 + ",\n" + rec2 + "]", []string{"a1", "a2"}, ""},
		{"JSON lines", rec1 + "\n\n" + rec2 + "\r\n", []string{"a1", "a2"}, ""},
		{"empty", " \n", nil, "in.json: empty: want an anomaly record"},
		{"an empty array", "[]", nil, "an empty array"},
		{"not JSON", "anomaly_id=a1", nil, `starts with "a"`},
		{"a number", "42", nil, `starts with "4"`},
		{"an array of numbers", "[1]", nil, "record 1: not a JSON object"},
		{"a broken array", "[\n" + rec1 + ",\n{\"anomaly_id\": }]", nil, "not a JSON array of anomaly records: line 3, column 17"},
		{"a broken record", "{\n  \"anomaly_id\": \"a1\",\n  \"agent_id\" \"x\"\n}", nil, "not an anomaly record: line 3"},
		{"a broken line", rec1 + "\n" + rec2 + "\n{\"anomaly_id\": \n", nil, "line 3: not a JSON object"},
		{"a bad line among good ones", rec1 + "\n" + `{"anomaly_id":"a3","agent_id":"x","kind":"behaviour"}`, nil, "line 2: severity missing or empty"},
		{"no id", `{"agent_id":"x","kind":"behaviour","severity":"low"}`, nil, "record 1: anomaly_id missing or empty"},
		{"no id, agent nor kind", `{"severity":"low"}`, nil, "anomaly_id, agent_id, kind missing or empty"},
		{"an unknown kind", `{"anomaly_id":"a","agent_id":"x","kind":"exfil","severity":"low"}`, nil, `kind "exfil" is not one of behaviour, drift`},
		{"an unknown severity", `{"anomaly_id":"a","agent_id":"x","kind":"drift","severity":"severe"}`, nil, `severity "severe" is not one of low, medium, high, critical`},
		{"a newer version", `{"v":2,"anomaly_id":"a","agent_id":"x","kind":"drift","severity":"low"}`, nil, "record version 2; this responder reads version 1"},
		{"a wrong type", `{"anomaly_id":"a","agent_id":"x","kind":"drift","severity":"low","score":"high"}`, nil, "field score: want a float64, got a JSON string"},
		{"not UTF-8", "{\"anomaly_id\":\"\xff\"}", nil, "not UTF-8"},
	} {
		t.Run(c.name, func(t *testing.T) {
			as, err := ReadAnomalies("in.json", strings.NewReader(c.in))
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want one with %q", err, c.err)
				}
				if !strings.HasPrefix(err.Error(), "in.json: ") {
					t.Errorf("error %q does not name the input", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, a := range as {
				ids = append(ids, a.ID)
			}
			if strings.Join(ids, ",") != strings.Join(c.ids, ",") {
				t.Fatalf("read %v, want %v", ids, c.ids)
			}
		})
	}
}

func TestReadAnomaliesCapsTheCount(t *testing.T) {
	var b strings.Builder
	for i := 0; i <= MaxAnomalies; i++ {
		b.WriteString(rec2 + "\n")
	}
	if _, err := ReadAnomalies("big.jsonl", strings.NewReader(b.String())); err == nil || !strings.Contains(err.Error(), "more than 5000 anomalies") {
		t.Fatalf("error %v, want the cap", err)
	}
}

// FuzzReadAnomalies: any input is read or refused with an error naming
// it, never a panic, and what is read is valid.
func FuzzReadAnomalies(f *testing.F) {
	for _, s := range []string{rec1, rec2, "[" + rec1 + "," + rec2 + "]", rec1 + "\n" + rec2, "", "[", "{", "[{}]", "\"x\"", "null", "[null]", "\xef\xbb\xbf{}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		as, err := ReadAnomalies("fuzz", strings.NewReader(in))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz: ") {
				t.Fatalf("error %q does not name the input", err)
			}
			return
		}
		if len(as) == 0 {
			t.Fatal("no anomaly and no error")
		}
		for _, a := range as {
			if a.ID == "" || a.AgentID == "" || a.Kind == "" || a.Severity == "" {
				t.Fatalf("read an invalid anomaly %+v", a)
			}
		}
	})
}
