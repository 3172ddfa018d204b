package main

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/console"
	"github.com/agentwatch/agentwatch/internal/detector/detstate"
	"github.com/agentwatch/agentwatch/internal/platform/cli"
	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/testkit/clitest"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestConsoleCommand(t *testing.T) {
	dir, _ := visDataDir(t)
	// The embedded detector's window scores of cs-1, for the agent page's plots.
	ds, err := detstate.OpenFileStore(filepath.Join(dir, "detector"))
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now().UTC().Truncate(24 * time.Hour).Add(-14 * time.Hour).UnixMilli()
	var ss []anomaly.Score
	for i := range 10 {
		ss = append(ss, anomaly.Score{AgentID: "cs-1", WindowStartMs: at + int64(i)*60000, WindowEndMs: at + int64(i+1)*60000, Severity: "none", Trained: true,
			Values: []float64{float64(3 + i%2)}, Expected: []float64{3}, Surprise: []float64{0}})
	}
	if err := ds.InsertScores(t.Context(), ss); err != nil {
		t.Fatal(err)
	}
	ds.Close()
	t.Setenv("AGENTWATCH_CONFIG_FILE", "")
	ctx, cancel := context.WithCancel(t.Context())
	var out, errb syncBuf
	done := make(chan int, 1)
	go func() {
		done <- cli.Run(ctx, newRoot(), []string{"console", "--embedded.data_dir=" + dir, "--addr=127.0.0.1:0"}, &out, &errb)
	}()
	var base, token string
	re := regexp.MustCompile(`console: (http://\S+)/console/\nsign in with this one-time token[^:]*: ([0-9a-f]+)`)
	for deadline := time.Now().Add(20 * time.Second); base == ""; {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			base, token = m[1], m[2]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no address and token printed; stdout %q stderr %q", out.String(), errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	get := func(p string) (int, string) {
		resp, err := c.Get(base + p)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	_, page := get("/console/signin")
	csrf := regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`).FindStringSubmatch(page)
	if csrf == nil {
		t.Fatalf("sign-in page:\n%s", page)
	}
	resp, err := c.PostForm(base+"/console/signin", url.Values{"csrf": {csrf[1]}, "token": {token}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for p, want := range map[string]string{
		"/console/":              "agents seen",
		"/console/agents":        "cs-1",
		"/console/findings":      "never_seen",
		"/console/agent?id=cs-1": `<figure class="plot"><figcaption>calls`,
		"/console/access?tag=pii&from=" + time.Now().UTC().Add(-48*time.Hour).Format(time.DateOnly): "cs-1",
	} {
		code, body := get(p)
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("GET %s: %d, %q not in:\n%.400s", p, code, want, body)
		}
		if strings.Contains(body, "/actions/") {
			t.Errorf("GET %s: the read-only console shows an action form", p)
		}
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit code %d; stderr %s", code, errb.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("console did not stop")
	}
}

func TestConsoleCommandRefusals(t *testing.T) {
	dir, _ := visDataDir(t)
	d := "--embedded.data_dir=" + dir
	clitest.Run(t, newRoot, []clitest.Case{
		{Args: []string{"console", d, "--addr", "0.0.0.0:8090"}, Code: 2, Err: "must be a loopback address"},
		{Args: []string{"console", d, "--lookback-days", "0"}, Code: 2, Err: "--lookback-days"},
	})
}

// TestConsoleTokensKeepGrants: the embedded console takes each token's
// own grants, so a deny-list-only or audit-only token cannot sign in.
func TestConsoleTokensKeepGrants(t *testing.T) {
	toks := consoleTokens([]config.APIToken{
		{Name: "gateway", SecretEnv: "G", CanReadDenylist: true},
		{Name: "auditlog", SecretEnv: "A", CanReadAudit: true},
		{Name: "reader", SecretEnv: "R", CanReadInventory: true},
		{Name: "oncall", SecretEnv: "O", CanReadInventory: true, CanSilence: true},
	})
	want := map[string]string{"gateway": "none", "auditlog": "none", "reader": "read", "oncall": "act"}
	if len(toks) != len(want) {
		t.Fatalf("%d tokens, want %d", len(toks), len(want))
	}
	for _, tok := range toks {
		if got := console.TokenScope(tok); got != want[tok.Name] {
			t.Errorf("token %s: scope %q, want %q", tok.Name, got, want[tok.Name])
		}
	}
	if !toks[0].CanReadDenylist || toks[0].SecretEnv != "G" {
		t.Errorf("gateway token lost its grants or secret: %+v", toks[0])
	}
}
