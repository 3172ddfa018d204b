package identity

import (
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"testing"
)

func token(payload string) []byte {
	return []byte("Bearer eyJhbGciOiJSUzI1NiJ9." + base64.RawURLEncoding.EncodeToString([]byte(payload)) + ".c2lnbmF0dXJl")
}

func TestResolve(t *testing.T) {
	r, err := NewResolver(nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(r.HeaderNames(), ","); got != "x-agent-id,authorization" {
		t.Fatalf("HeaderNames = %s", got)
	}
	h := func(kv ...string) []Field {
		var out []Field
		for i := 0; i < len(kv); i += 2 {
			out = append(out, Field{Name: kv[i], Value: []byte(kv[i+1])})
		}
		return out
	}
	cases := []struct {
		name             string
		in               Input
		agent, src, cred string
		err              error
	}{
		{"header wins", Input{Headers: h("x-agent-id", "agent-1"), ConsumerName: []byte("bob")}, "agent-1", "header", "", nil},
		{"consumer name", Input{ConsumerName: []byte("invoice-bot"), ConsumerID: []byte("c-9")}, "invoice-bot", "consumer", "c-9", nil},
		{"consumer id", Input{ConsumerID: []byte("c-9"), CredentialID: []byte("k-1")}, "c-9", "consumer", "k-1", nil},
		{"jwt sub", Input{Headers: h("authorization", string(token(`{"sub":"agent-7","client_id":"cli-1"}`)))}, "agent-7", "jwt", "cli-1", nil},
		{"jwt client_id", Input{Headers: h("authorization", string(token(`{"client_id":"svc-bot","jti":"j-1"}`)))}, "svc-bot", "jwt", "svc-bot", nil},
		{"jwt jti credential", Input{Headers: h("authorization", string(token(`{"sub":"a-1","jti":"j-1"}`)))}, "a-1", "jwt", "j-1", nil},
		{"jwt numeric sub", Input{Headers: h("authorization", string(token(`{"sub":12345}`)))}, "12345", "jwt", "", nil},
		{"jwt lower-case bearer, padded", Input{Headers: h("authorization", "bearer x."+base64.URLEncoding.EncodeToString([]byte(`{"sub":"a-22"}`))+".s")}, "a-22", "jwt", "", nil},
		{"verified claim beats token", Input{Claims: h("sub", "cognito-1"), Headers: h("authorization", string(token(`{"sub":"other"}`)))}, "cognito-1", "jwt", "", nil},
		{"mtls rfc2253", Input{MTLSSubject: []byte("CN=agent-cleanup-7,OU=agents,O=Example Corp")}, "agent-cleanup-7", "mtls", "", nil},
		{"mtls oneline", Input{MTLSSubject: []byte("/C=US/O=Example/CN=agent-8")}, "agent-8", "mtls", "", nil},
		{"nothing", Input{Headers: h("authorization", "Basic dXNlcjpwYXNz")}, "", "", "", nil},
		{"redacted", Input{Headers: h("authorization", "REDACTED")}, "", "", "", nil},
		{"garbage token", Input{Headers: h("authorization", "Bearer !!!.@@@.###")}, "", "", "", nil},
		// A payload that is not strict JSON is ignored like a malformed
		// token: repeated claims (first or last?) and raw control characters.
		{"jwt repeated sub", Input{Headers: h("authorization", string(token(`{"sub":"agent-7","sub":"agent-8"}`)))}, "", "", "", nil},
		{"jwt repeated other claim", Input{Headers: h("authorization", string(token(`{"sub":"agent-7","iat":1,"iat":2}`)))}, "", "", "", nil},
		{"jwt raw control character", Input{Headers: h("authorization", string(token("{\"sub\":\"agent-7\",\"n\":\"a\x00\"}")))}, "", "", "", nil},
		{"jwt escaped control character", Input{Headers: h("authorization", string(token(`{"sub":"agent-7","n":"a\u0000"}`)))}, "agent-7", "jwt", "", nil},
		{"hostile header", Input{Headers: h("x-agent-id", "agent 1")}, "", "", "", ErrInvalidAgentID},
		{"hostile jwt", Input{Headers: h("authorization", string(token(`{"sub":"<script>"}`)))}, "", "", "", ErrInvalidAgentID},
		{"hostile consumer", Input{ConsumerName: []byte("bob\x00")}, "", "", "", ErrInvalidAgentID},
		{"too long", Input{Headers: h("x-agent-id", strings.Repeat("a", 129))}, "", "", "", ErrInvalidAgentID},
		{"escaped CN", Input{MTLSSubject: []byte(`CN=a\,b,O=x`)}, "", "", "", ErrInvalidAgentID},
	}
	for _, c := range cases {
		got, err := r.Resolve(&c.in)
		if !errors.Is(err, c.err) || string(got.AgentID) != c.agent || got.Source != c.src || string(got.CredentialID) != c.cred {
			t.Errorf("%s: got %q %q cred %q, %v; want %q %q cred %q, %v", c.name, got.AgentID, got.Source, got.CredentialID, err,
				c.agent, c.src, c.cred, c.err)
		}
	}
}

func TestCustomRules(t *testing.T) {
	r, err := NewResolver(Rules{{Kind: KindJWT, Header: "X-Token", Claim: "azp"}, {Kind: KindHeader, Header: "X-Bot"}})
	if err != nil {
		t.Fatal(err)
	}
	in := Input{Headers: []Field{{"x-token", token(`{"azp":"bot-3"}`)}, {"x-bot", []byte("bot-4")},
		{"authorization", token(`{"client_id":"cli-5"}`)}}}
	got, err := r.Resolve(&in)
	if err != nil || string(got.AgentID) != "bot-3" || got.Source != KindJWT || string(got.CredentialID) != "cli-5" {
		t.Fatalf("got %q %q %q, %v", got.AgentID, got.Source, got.CredentialID, err)
	}
}

func TestValidate(t *testing.T) {
	if err := DefaultRules().Validate(); err != nil {
		t.Fatal(err)
	}
	err := Rules{{Kind: "cookie"}, {Kind: KindHeader}, {Kind: KindHeader, Header: "X Bad"}, {Kind: KindJWT}}.Validate()
	for _, want := range []string{"identity[0].kind", "identity[1].header", "identity[2].header", "identity[3].claim"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate error %v does not name %s", err, want)
		}
	}
	if _, err := NewResolver(Rules{{Kind: "cookie"}}); err == nil {
		t.Error("NewResolver accepted a bad rule")
	}
}

func TestValidAgentID(t *testing.T) {
	for _, ok := range []string{"a", "agent-research-01", "lc-analyst@tenant-42", "spiffe/ns/x:y.z_q", strings.Repeat("Z", 128)} {
		if !ValidAgentID([]byte(ok)) {
			t.Errorf("%q rejected", ok)
		}
	}
	for _, bad := range []string{"", " ", "a b", "a<b", "a\nb", "é", strings.Repeat("Z", 129), "a\"", "a;b", "a%20"} {
		if ValidAgentID([]byte(bad)) {
			t.Errorf("%q accepted", bad)
		}
	}
}

func BenchmarkResolveJWT(b *testing.B) {
	r, _ := NewResolver(nil)
	in := Input{Headers: []Field{{"authorization", token(`{"iss":"https://auth.example.com/","sub":"agent-7","client_id":"cli-1","exp":1770734600}`)}}}
	b.ReportAllocs()
	for b.Loop() {
		if res, err := r.Resolve(&in); err != nil || len(res.AgentID) == 0 {
			b.Fatal(res, err)
		}
	}
}

// BenchmarkResolveJWTManyClaims: a hostile token of about a thousand
// claims, which the repeated-claim check must not make quadratic.
func BenchmarkResolveJWTManyClaims(b *testing.B) {
	r, _ := NewResolver(nil)
	var sb strings.Builder
	sb.WriteString(`{"sub":"agent-7"`)
	for i := 0; sb.Len() < 6000; i++ {
		sb.WriteString(`,"` + strconv.Itoa(i) + `":0`)
	}
	sb.WriteString("}")
	in := Input{Headers: []Field{{"authorization", token(sb.String())}}}
	b.ReportAllocs()
	for b.Loop() {
		if res, err := r.Resolve(&in); err != nil || len(res.AgentID) == 0 {
			b.Fatal(res, err)
		}
	}
}
