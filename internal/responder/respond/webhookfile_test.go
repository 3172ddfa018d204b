package respond

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/responder/revoke"
)

// A webhook header from a file is sent as it is, even when it looks like
// a template, and errors name the header and path, never the value.
func TestWebhookHeaderFromFile(t *testing.T) {
	dir := t.TempDir()
	secretValue := "Bearer {{.CredentialID}}-not-a-template-9f8e"
	good := filepath.Join(dir, "auth")
	if err := os.WriteFile(good, []byte(secretValue+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Header.Get("Authorization")+"|"+r.Header.Get("X-Cred"))
		mu.Unlock()
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)

	req, err := webhookRequest(config.WebhookTarget{URL: srv.URL + "/revoke", Header: map[string]string{"X-Cred": "{{.CredentialID}}"},
		HeaderFile: map[string]string{"Authorization": good}})
	if err != nil {
		t.Fatal(err)
	}
	eg, err := revoke.NewEgress(revoke.EgressOptions{Allow: []string{u.Host}})
	if err != nil {
		t.Fatal(err)
	}
	wh, err := revoke.NewWebhook(revoke.WebhookOptions{Name: "webhook:revoke", Egress: eg, Revoke: req})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wh.Revoke(t.Context(), revoke.Target{CredentialID: "cred-7", AgentID: "a", IncidentID: "i"}, func([]byte) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != secretValue+"|cred-7" {
		t.Fatalf("webhook got %q; want the file's value as it is and the templated header rendered", got)
	}

	for name, tc := range map[string]struct {
		w    config.WebhookTarget
		want string
	}{
		"both":    {config.WebhookTarget{URL: "http://x/", Header: map[string]string{"authorization": "x"}, HeaderFile: map[string]string{"Authorization": good}}, "header Authorization is in both header and header_file"},
		"missing": {config.WebhookTarget{URL: "http://x/", HeaderFile: map[string]string{"Authorization": filepath.Join(dir, "nope")}}, "header_file Authorization: open " + filepath.Join(dir, "nope")},
		"empty":   {config.WebhookTarget{URL: "http://x/", HeaderFile: map[string]string{"Authorization": empty}}, "header_file Authorization: " + empty + " is empty"},
	} {
		_, err := webhookRequest(tc.w)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "not-a-template") {
			t.Errorf("%s: %v; want it to say %q", name, err, tc.want)
		}
	}
}
