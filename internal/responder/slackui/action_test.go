package slackui

import (
	"encoding/base64"
	"strings"
	"testing"
)

func TestActionCodecRoundTrip(t *testing.T) {
	c := testCodec(t)
	for k := range kindCodes {
		ref := ActionRef{Kind: k, IncidentID: "inc-2026-11-25-cs-agent-006", AnomalyID: "02be9dacfbe7c11664140ff87051faf2"}
		v, err := c.Encode(ref)
		if err != nil {
			t.Fatal(err)
		}
		if len(v) > 140 {
			t.Errorf("%s: value of %d chars; want compact", k, len(v))
		}
		got, err := c.Decode(v)
		if err != nil || got != ref {
			t.Errorf("Decode(Encode(%+v)) = %+v, %v", ref, got, err)
		}
	}
	long := strings.Repeat("i", maxRefID)
	v, err := c.Encode(ActionRef{Kind: Revoke, IncidentID: long, AnomalyID: long})
	if err != nil || len(v) > maxButtonValue {
		t.Errorf("longest ids: %d chars, %v", len(v), err)
	}
}

func TestActionCodecRefuses(t *testing.T) {
	c := testCodec(t)
	other, _ := NewActionCodec("another-secret")
	ref := ActionRef{Kind: Revoke, IncidentID: "inc-1", AnomalyID: "a1"}
	v, _ := c.Encode(ref)
	if _, err := other.Decode(v); err == nil {
		t.Error("a value made with another key decoded")
	}
	raw, _ := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(v, actionPrefix))
	for i := range raw { // flip each byte: kind, lengths, ids, tag
		b := append([]byte(nil), raw...)
		b[i] ^= 0x01
		if got, err := c.Decode(actionPrefix + base64.RawURLEncoding.EncodeToString(b)); err == nil {
			t.Errorf("byte %d flipped: decoded %+v", i, got)
		}
	}
	for _, bad := range []string{"", "aw1.", "aw1.!!!", "aw2." + v[4:], v + "A", v[:len(v)-1], "revoke:inc-1:a1"} {
		if got, err := c.Decode(bad); err == nil {
			t.Errorf("Decode(%q) = %+v; want an error", bad, got)
		}
	}
	for _, r := range []ActionRef{
		{Kind: "delete_everything", IncidentID: "i", AnomalyID: "a"},
		{Kind: Revoke, IncidentID: "", AnomalyID: "a"},
		{Kind: Revoke, IncidentID: "i", AnomalyID: strings.Repeat("a", maxRefID+1)},
		{Kind: Revoke, IncidentID: "inc 1", AnomalyID: "a"},
		{Kind: Revoke, IncidentID: "inc\x001", AnomalyID: "a"},
		{Kind: Revoke, IncidentID: "inc-é", AnomalyID: "a"},
	} {
		if _, err := c.Encode(r); err == nil {
			t.Errorf("Encode(%+v) succeeded", r)
		}
	}
	if _, err := NewActionCodec(""); err == nil {
		t.Error("NewActionCodec with an empty secret succeeded")
	}
}

// FuzzActionDecode: a button value comes back from outside. Whatever it is,
// Decode either refuses it or returns a ref that encodes to the same value.
func FuzzActionDecode(f *testing.F) {
	c := testCodec(f)
	for k := range kindCodes {
		v, _ := c.Encode(ActionRef{Kind: k, IncidentID: "inc-7f3a", AnomalyID: "02be9dacfbe7c11664140ff87051faf2"})
		f.Add(v)
	}
	f.Add("aw1.")
	f.Add("aw1.AQAA")
	f.Fuzz(func(t *testing.T, v string) {
		ref, err := c.Decode(v)
		if err != nil {
			return
		}
		again, err := c.Encode(ref)
		if err != nil || again != v {
			t.Fatalf("Decode(%q) = %+v, but Encode gives %q, %v", v, ref, again, err)
		}
	})
}
