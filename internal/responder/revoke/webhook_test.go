package revoke

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
)

type hookRequest struct {
	Method, Path, RawQuery string
	Header                 http.Header
	Body                   []byte
}

func recordingHook(t *testing.T, code int) (srvURL, addr string, got func() []hookRequest) {
	t.Helper()
	var mu sync.Mutex
	var reqs []hookRequest
	srv, _ := hookServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		reqs = append(reqs, hookRequest{r.Method, r.URL.EscapedPath(), r.URL.RawQuery, r.Header.Clone(), b})
		mu.Unlock()
		w.WriteHeader(code)
	})
	return srv.URL, srv.Listener.Addr().String(), func() []hookRequest {
		mu.Lock()
		defer mu.Unlock()
		return append([]hookRequest(nil), reqs...)
	}
}

func TestWebhookEscapesEachContext(t *testing.T) {
	env := newEnv(t)
	base, addr, got := recordingHook(t, http.StatusAccepted)
	wh, err := NewWebhook(WebhookOptions{
		Revoke: WebhookRequest{
			Method: "post",
			URL:    base + "/creds/{{.CredentialID}}/revoke?agent={{.AgentID}}&incident={{.IncidentID}}",
			Header: map[string]string{"X-Credential": "{{.CredentialID}}", "Authorization": "Bearer static-token"},
			Body:   `{"credential":"{{.CredentialID}}","agent":"{{.AgentID}}","note":"revoked by agentwatch"}`,
		},
		Restore: &WebhookRequest{
			Method:     "DELETE",
			URL:        base + "/creds/{{.CredentialID}}/revoke",
			Body:       "credential={{.CredentialID}}&incident={{.IncidentID}}",
			BodyFormat: BodyForm,
		},
		Egress: env.egress(t, addr), Retry: fastRetry,
	})
	if err != nil {
		t.Fatal(err)
	}
	g := env.guard(t, wh, nil, nil)
	hostile := Target{
		CredentialID: "a/b\"c\nd\\e&x=1 <f>",
		AgentID:      "agent?x=y#frag",
		IncidentID:   "inc&admin=true",
		Origin:       Manual,
	}
	if res, err := g.Revoke(t.Context(), hostile); err != nil || res.Status != StatusRevoked {
		t.Fatalf("Revoke = %+v, %v; want revoked", res, err)
	}
	r := got()[0]
	if r.Method != http.MethodPost {
		t.Errorf("method %s; want POST", r.Method)
	}
	if want := "/creds/a%2Fb%22c%0Ad%5Ce%26x%3D1%20%3Cf%3E/revoke"; r.Path != want {
		t.Errorf("path %q; want %q", r.Path, want)
	}
	q, err := url.ParseQuery(r.RawQuery)
	if err != nil || len(q) != 2 || q.Get("agent") != hostile.AgentID || q.Get("incident") != hostile.IncidentID {
		t.Errorf("query %q = %v, %v; want exactly agent and incident, unchanged", r.RawQuery, q, err)
	}
	if v, _ := url.PathUnescape(r.Header.Get("X-Credential")); v != hostile.CredentialID || strings.ContainsAny(r.Header.Get("X-Credential"), "\n\"") {
		t.Errorf("header X-Credential %q; want the escaped credential", r.Header.Get("X-Credential"))
	}
	if r.Header.Get("Authorization") != "Bearer static-token" || r.Header.Get("Content-Type") != "application/json" || r.Header.Get("Idempotency-Key") == "" {
		t.Errorf("headers %v; want the static Authorization, a JSON content type and an Idempotency-Key", r.Header)
	}
	var body map[string]string
	if err := json.Unmarshal(r.Body, &body); err != nil || len(body) != 3 || body["credential"] != hostile.CredentialID || body["agent"] != hostile.AgentID {
		t.Errorf("body %s = %v, %v; want three keys with the values unchanged", r.Body, body, err)
	}

	if res, err := g.Restore(t.Context(), hostile); err != nil || res.Status != StatusRestored {
		t.Fatalf("Restore = %+v, %v; want restored", res, err)
	}
	r = got()[1]
	form, err := url.ParseQuery(string(r.Body))
	if r.Method != http.MethodDelete || err != nil || len(form) != 2 || form.Get("credential") != hostile.CredentialID || form.Get("incident") != hostile.IncidentID {
		t.Errorf("restore %s body %q = %v, %v; want DELETE with two form fields, unchanged", r.Method, r.Body, form, err)
	}
	if r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
		t.Errorf("restore content type %q", r.Header.Get("Content-Type"))
	}
}

func TestWebhookIdempotencyKeyStableAcrossRetries(t *testing.T) {
	env := newEnv(t)
	var mu sync.Mutex
	var keys []string
	srv, _ := hookServer(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		keys = append(keys, r.Header.Get("Idempotency-Key"))
		if len(keys) == 1 {
			w.WriteHeader(http.StatusBadGateway)
		}
	})
	wh, err := NewWebhook(WebhookOptions{
		Revoke: WebhookRequest{URL: srv.URL + "/r/{{.CredentialID}}", AlreadyStatus: []int{404}},
		Egress: env.egress(t, srv.Listener.Addr().String()), Retry: fastRetry,
	})
	if err != nil {
		t.Fatal(err)
	}
	res, err := env.guard(t, wh, nil, nil).Revoke(t.Context(), manual("c", "", "i"))
	if err != nil || res.Attempts != 2 {
		t.Fatalf("Revoke = %+v, %v; want success after 2 attempts", res, err)
	}
	if len(keys) != 2 || keys[0] != keys[1] || keys[0] == "" {
		t.Fatalf("idempotency keys %q; want the same on both tries", keys)
	}
}

func TestWebhookAlreadyStatus(t *testing.T) {
	env := newEnv(t)
	base, addr, _ := recordingHook(t, http.StatusNotFound)
	wh, err := NewWebhook(WebhookOptions{
		Revoke: WebhookRequest{URL: base + "/r/{{.CredentialID}}", AlreadyStatus: []int{404}},
		Egress: env.egress(t, addr), Retry: fastRetry,
	})
	if err != nil {
		t.Fatal(err)
	}
	res, err := env.guard(t, wh, nil, nil).Revoke(t.Context(), manual("c", "", "i"))
	if err != nil || res.Status != StatusAlreadyRevoked {
		t.Fatalf("Revoke answered 404 = %+v, %v; want already_revoked", res, err)
	}
}

func TestWebhookRejectsUnsafeTemplates(t *testing.T) {
	env := newEnv(t)
	eg := env.egress(t, "127.0.0.1:9")
	bad := map[string]WebhookRequest{
		"value outside a JSON string": {URL: "http://127.0.0.1:9/r", Body: `{"id": {{.CredentialID}}}`},
		"host from the target":        {URL: "http://{{.Consumer}}.hooks.test:9/r"},
		"port from the target":        {URL: "http://127.0.0.1:{{.AgentID}}/r"},
		"unknown field":               {URL: "http://127.0.0.1:9/{{.Secret}}"},
		"relative URL":                {URL: "/r/{{.CredentialID}}"},
		"other scheme":                {URL: "file:///etc/{{.CredentialID}}"},
		"user info":                   {URL: "http://u:p@127.0.0.1:9/r"},
		"bad method":                  {Method: "CONNECT", URL: "http://127.0.0.1:9/r"},
		"bad header name":             {URL: "http://127.0.0.1:9/r", Header: map[string]string{"X Bad": "v"}},
		"2xx as already":              {URL: "http://127.0.0.1:9/r", AlreadyStatus: []int{204}},
		"unknown body format":         {URL: "http://127.0.0.1:9/r", Body: "x", BodyFormat: "xml"},
		"template syntax":             {URL: "http://127.0.0.1:9/{{.CredentialID"},
	}
	for name, req := range bad {
		if _, err := NewWebhook(WebhookOptions{Revoke: req, Egress: eg}); err == nil {
			t.Errorf("%s: NewWebhook = nil error; want refused", name)
		}
	}
	if _, err := NewWebhook(WebhookOptions{Revoke: WebhookRequest{URL: "http://127.0.0.1:9/r"}}); err == nil {
		t.Error("NewWebhook without egress = nil error")
	}
}

func TestWebhookWithoutRestore(t *testing.T) {
	env := newEnv(t)
	base, addr, _ := recordingHook(t, http.StatusOK)
	wh, err := NewWebhook(WebhookOptions{Revoke: WebhookRequest{URL: base + "/r"}, Egress: env.egress(t, addr)})
	if err != nil {
		t.Fatal(err)
	}
	g := env.guard(t, wh, nil, nil)
	if _, err := g.Revoke(t.Context(), manual("c", "", "i")); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Restore(t.Context(), manual("c", "", "i")); err == nil || !strings.Contains(err.Error(), "no restore request") {
		t.Fatalf("Restore without a restore request = %v; want an error saying so", err)
	}
}

func TestEscapeComponent(t *testing.T) {
	ok := func(in, want string) {
		t.Helper()
		if got := escapeComponent(in); got != want {
			t.Errorf("escapeComponent(%q) = %q; want %q", in, got, want)
		}
		if back, err := url.PathUnescape(escapeComponent(in)); err != nil || back != in {
			t.Errorf("PathUnescape(escapeComponent(%q)) = %q, %v", in, back, err)
		}
		if back, err := url.QueryUnescape(escapeComponent(in)); err != nil || back != in {
			t.Errorf("QueryUnescape(escapeComponent(%q)) = %q, %v", in, back, err)
		}
	}
	ok("abc-1.2_3~", "abc-1.2_3~")
	ok("a/b", "a%2Fb")
	ok("a+b c", "a%2Bb%20c")
	ok("\r\n", "%0D%0A")
	ok("é", "%C3%A9")
	ok("%2F", "%252F")
}
