package audit

import (
	"bytes"
	"reflect"
	"testing"
)

func FuzzParseLine(f *testing.F) {
	full := Record{
		ID: "0f1e2d3c4b5a69788796a5b4c3d2e1f0", AtMs: t0, Actor: Actor{Kind: ActorSlack, Name: "alice", UserID: "U0ANALYST"},
		Action: "revoke", Playbook: "revoke-on-exfil", DecisionID: "d1", StepID: "d1-1", IncidentID: "d1", AnomalyID: "an-1",
		AgentID: "agent-7", CredentialID: "cred-9", DryRun: true, Why: "kind exfiltration, severity high >= high",
		Result: ResultDryRun, Detail: "would DELETE /consumers/agent-7/key-auth/cred-9",
	}
	for _, r := range []Record{full, rec("x", 1, "a\x1b[31m\"<!channel>\"\xff\u009b", "i")} {
		line, err := MarshalLine(r.Normalize())
		if err != nil {
			f.Fatal(err)
		}
		f.Add(line)
	}
	f.Add([]byte(`{"id":"x","at_ms":1,"actor":{"kind":"cli"},"action":"playbook","result":"ok","new_field":[1,2]}`))
	f.Add([]byte(`{"id":"x","at_ms":1e3,"actor":{"kind":"cli"},"action":"playbook","result":"ok"}`))
	f.Add([]byte(`{"id":"x","at_ms":1,"actor":null,"action":"playbook","result":"ok"}`))
	f.Add([]byte("{\"id\":\"x\",\"at_ms\":1,\"actor\":{\"kind\":\"api\"},\"action\":\"p\",\"result\":\"ok\",\"why\":\"\xff\xfe\"}\n"))
	f.Add([]byte(`{"id":"x"`))
	f.Fuzz(func(t *testing.T, line []byte) {
		r, err := ParseLine(line)
		if err != nil {
			return // rejecting is fine; panicking is not
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("ParseLine(%q) accepted an invalid record: %v", line, err)
		}
		out, err := MarshalLine(r)
		if err != nil {
			t.Fatalf("MarshalLine of parsed %q: %v", line, err)
		}
		if bytes.Count(out, []byte{'\n'}) != 1 || out[len(out)-1] != '\n' {
			t.Fatalf("MarshalLine gave not one line: %q", out)
		}
		again, err := ParseLine(out)
		if err != nil || !reflect.DeepEqual(again, r) {
			t.Fatalf("round trip of %q: got %+v, %v; want %+v", line, again, err, r)
		}
		if n := r.Normalize(); !reflect.DeepEqual(n.Normalize(), n) {
			t.Fatalf("Normalize not idempotent for %q", line)
		}
	})
}
