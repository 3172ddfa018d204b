package respond

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"filippo.io/age"
	"github.com/prometheus/client_golang/prometheus"

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

// Without a ledger key, a responder that can revoke through Kong says at
// start that it keeps no Kong key; with one, or without Kong, it does not.
func TestLedgerKeyWarning(t *testing.T) {
	key, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, kong, key string
		warn            bool
	}{
		{"kong without key", "http://127.0.0.1:1", "", true},
		{"kong with key", "http://127.0.0.1:1", key.String(), false},
		{"no kong", "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := config.LoadEnv("", nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Responder.StateDir = t.TempDir()
			cfg.Responder.Kong.AdminURL = tc.kong
			cfg.Responder.LedgerKey = tc.key
			var logs bytes.Buffer
			svc, err := Build(cfg, Deps{Getenv: func(string) string { return "" }}, slog.New(slog.NewTextHandler(&logs, nil)), prometheus.NewRegistry())
			if err != nil {
				t.Fatal(err)
			}
			defer svc.Close()
			if got := strings.Contains(logs.String(), "responder.ledger_key is not set"); got != tc.warn {
				t.Fatalf("warning %v, want %v:\n%s", got, tc.warn, logs.String())
			}
		})
	}
}
