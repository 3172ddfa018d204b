package respapi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/revoke"
)

type fakeDenylist struct {
	mu   sync.Mutex
	body string
}

func (f *fakeDenylist) set(body string) { f.mu.Lock(); f.body = body; f.mu.Unlock() }

func (f *fakeDenylist) DenylistText() ([]byte, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	sum := sha256.Sum256([]byte(f.body))
	return []byte(f.body), `"` + hex.EncodeToString(sum[:8]) + `"`, nil
}

func (fx *fixture) get(t *testing.T, path, auth string, hdr map[string]string) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, fx.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", auth)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := fx.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return response{code: resp.StatusCode, hdr: resp.Header, body: []byte(b.String())}
}

func TestDenylistETag(t *testing.T) {
	dl := &fakeDenylist{body: "cred-1\ncred-2\n"}
	fx := newFixture(t, func(o *Options) {
		o.Denylist = dl
		o.Tokens = append(o.Tokens, Token{Name: "gateway", Secret: strings.Repeat("g", 40), CanReadDenylist: true})
	})
	gw := "Bearer " + strings.Repeat("g", 40)
	wantCode(t, fx.get(t, "/v1/denylist", "", nil), http.StatusUnauthorized)
	wantCode(t, fx.get(t, "/v1/denylist", "Bearer "+secretCI, nil), http.StatusForbidden)
	if rec := fx.lastAudit(t); rec.Action != "denylist_read" || rec.Result != audit.ResultRefused || rec.Actor.TokenName != "ci" {
		t.Errorf("refusal audited as %+v", rec)
	}
	r := fx.get(t, "/v1/denylist", gw, nil)
	wantCode(t, r, http.StatusOK)
	etag := r.hdr.Get("ETag")
	if string(r.body) != "cred-1\ncred-2\n" || !strings.HasPrefix(etag, `"`) || r.hdr.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Fatalf("body %q etag %q type %q", r.body, etag, r.hdr.Get("Content-Type"))
	}
	tests := []struct {
		name, inm string
		want      int
	}{
		{"same tag", etag, http.StatusNotModified},
		{"weak form of the tag", "W/" + etag, http.StatusNotModified},
		{"in a list", `"other", ` + etag, http.StatusNotModified},
		{"star", "*", http.StatusNotModified},
		{"other tag", `"other"`, http.StatusOK},
		{"unquoted tag", strings.Trim(etag, `"`), http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := fx.get(t, "/v1/denylist", gw, map[string]string{"If-None-Match": tt.inm})
			wantCode(t, r, tt.want)
			if tt.want == http.StatusNotModified && len(r.body) != 0 {
				t.Errorf("304 with a body %q", r.body)
			}
			if r.hdr.Get("ETag") != etag {
				t.Errorf("ETag %q, want %q", r.hdr.Get("ETag"), etag)
			}
		})
	}
	dl.set("cred-1\n")
	r = fx.get(t, "/v1/denylist", gw, map[string]string{"If-None-Match": etag})
	wantCode(t, r, http.StatusOK)
	if string(r.body) != "cred-1\n" || r.hdr.Get("ETag") == etag {
		t.Fatalf("after a change: body %q etag %q (old %q)", r.body, r.hdr.Get("ETag"), etag)
	}
}

type fakeSwitch struct {
	mu   sync.Mutex
	st   revoke.SwitchState
	file bool
}

func (f *fakeSwitch) State() revoke.SwitchState { f.mu.Lock(); defer f.mu.Unlock(); return f.st }
func (f *fakeSwitch) Engaged() bool             { f.mu.Lock(); defer f.mu.Unlock(); return f.st.Engaged || f.file }
func (f *fakeSwitch) Set(_ context.Context, st revoke.SwitchState) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.st = st
	return nil
}

func TestKillSwitchThroughTheAPI(t *testing.T) {
	sw := &fakeSwitch{}
	fx := newFixture(t, func(o *Options) {
		o.KillSwitch = sw
		o.Tokens[1].CanKillSwitch = true // oncall
	})
	wantCode(t, fx.do(t, http.MethodPut, "/v1/kill-switch", "Bearer "+secretCI, `{"engaged":true}`), http.StatusForbidden)
	wantCode(t, fx.do(t, http.MethodPut, "/v1/kill-switch", "Bearer "+secretOncall, `{"reason":"x"}`), http.StatusBadRequest)
	r := fx.do(t, http.MethodPut, "/v1/kill-switch", "Bearer "+secretOncall, `{"engaged":true,"reason":"bad rollout"}`)
	wantCode(t, r, http.StatusOK)
	var got SwitchResponse
	if err := json.Unmarshal(r.body, &got); err != nil || !got.Engaged || !got.Effective || got.By != "api:oncall" {
		t.Fatalf("answer %s (%v)", r.body, err)
	}
	if rec := fx.lastAudit(t); rec.Action != "kill_switch" || rec.Result != audit.ResultOK || rec.Why != "bad rollout" || rec.Detail != "kill switch engaged" {
		t.Errorf("audit %+v", rec)
	}
	wantCode(t, fx.do(t, http.MethodPut, "/v1/kill-switch", "Bearer "+secretOncall, `{"engaged":false}`), http.StatusOK)
	sw.file = true
	r = fx.do(t, http.MethodGet, "/v1/kill-switch", "Bearer "+secretOncall, "")
	wantCode(t, r, http.StatusOK)
	if err := json.Unmarshal(r.body, &got); err != nil || got.Engaged || !got.Effective {
		t.Fatalf("with the file switch engaged: %s", r.body)
	}
}
