package evidence

import (
	"reflect"
	"strings"
	"testing"
)

func FuzzParseManifest(f *testing.F) {
	h := strings.Repeat("0123456789abcdef", 4)
	m := Manifest{
		V: ManifestVersion, BundleID: "ev-0f1e2d3c4b5a69788796a5b4c3d2e1f0", Seq: 3, AgentID: "agent-7", AnomalyID: "a1",
		IncidentID: "inc-1", CreatedMs: 1741093200000, FromMs: 1741092300000, ToMs: 1741093800000,
		Events: 100, MaxEvents: DefaultMaxEvents, PrevManifestSHA256: h,
		Files: []File{{Name: EventsJSONL, SHA256: h, Size: 12345}, {Name: PlotPNG, SHA256: ZeroHash, Size: 0}},
	}
	seed, err := MarshalManifest(m)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte(`{"v":1}`))
	f.Add([]byte(`{"v":1,"bundle_id":"x","seq":1,"files":[{"name":"a","sha256":"` + h + `","size":1}],"prev_manifest_sha256":"` + ZeroHash + `"} `))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseManifest(b)
		if err != nil {
			return // rejecting is fine; panicking is not
		}
		out, err := MarshalManifest(m)
		if err != nil {
			t.Fatalf("MarshalManifest of parsed %q: %v", b, err)
		}
		again, err := ParseManifest(out)
		if err != nil || !reflect.DeepEqual(again, m) {
			t.Fatalf("round trip of %q: got %+v, %v; want %+v", b, again, err, m)
		}
		if out2, _ := MarshalManifest(again); string(out2) != string(out) {
			t.Fatalf("MarshalManifest is not stable: %q then %q", out, out2)
		}
	})
}

func FuzzParseRecord(f *testing.F) {
	r := Record{Seq: 2, BundleID: "ev-1", AgentID: "agent-7", AnomalyID: "a1", IncidentID: "inc-1",
		Path: "/var/lib/agentwatch/evidence/ev-1", ManifestSHA256: strings.Repeat("ab", 32), PrevSHA256: strings.Repeat("cd", 32), CreatedMs: 1741093200000}
	seed, err := MarshalRecord(r)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	r.Seq, r.PrevSHA256, r.AgentID = 1, ZeroHash, "a\n\"<!channel>\"\xff"
	seed, _ = MarshalRecord(r)
	f.Add(seed)
	f.Add([]byte(`{"seq":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRecord(b)
		if err != nil {
			return
		}
		out, err := MarshalRecord(r)
		if err != nil {
			t.Fatalf("MarshalRecord of parsed %q: %v", b, err)
		}
		if again, err := ParseRecord(out); err != nil || again != r {
			t.Fatalf("round trip of %q: got %+v, %v; want %+v", b, again, err, r)
		}
	})
}
