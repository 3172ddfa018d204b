package weblisten_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/agentwatch/agentwatch/internal/platform/bus"
	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/platform/kafka"
	"github.com/agentwatch/agentwatch/internal/testkit/itest"
	"github.com/agentwatch/agentwatch/internal/tools/sim"
)

var boundAddr = regexp.MustCompile(`addr=(\S+)`)

// TestIntegrationPrometheusScrapesOverTLS runs ingest, detector and
// responder in distributed mode on the real Kafka and ClickHouse, each
// with http.addr behind TLS and basic auth (the exporter-toolkit web
// configuration), and a real Prometheus (Debian's package) scraping all
// three with tls_config.ca_file and basic_auth. Prometheus must see every
// target up, ready, and one product metric of each, and, after a minute of
// simulated traffic, the events counted and both input-lag gauges set; a
// request without credentials gets 401 and a plaintext one gets no
// metrics.
func TestIntegrationPrometheusScrapesOverTLS(t *testing.T) {
	started := time.Now()
	brokers, chAddr := itest.KafkaBrokers(t), itest.ClickHouseAddr(t)
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatalf("prometheus not on PATH (deploy/test-tools.sh installs it): %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()

	dir := t.TempDir()
	tlsDir := filepath.Join(dir, "tls")
	if out, err := exec.CommandContext(ctx, filepath.Join(itest.ModuleRoot(t), "deploy", "tls.sh"), tlsDir).CombinedOutput(); err != nil {
		t.Fatalf("deploy/tls.sh: %v\n%s", err, out)
	}
	const user, password = "prometheus", "scrape-secret-of-the-test"
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		t.Fatal(err)
	}
	webConfig := filepath.Join(dir, "web.yml")
	writeFile(t, webConfig, fmt.Sprintf("tls_server_config:\n  cert_file: %s\n  key_file: %s\nbasic_auth_users:\n  %s: %s\n",
		filepath.Join(tlsDir, "server.crt"), filepath.Join(tlsDir, "server.key"), user, hash))
	apiWebConfig := filepath.Join(dir, "api-web.yml")
	writeFile(t, apiWebConfig, fmt.Sprintf("tls_server_config:\n  cert_file: %s\n  key_file: %s\n",
		filepath.Join(tlsDir, "server.crt"), filepath.Join(tlsDir, "server.key")))

	suffix := itest.RandHex(4)
	raw, events, dlq, anomalies := "it-scrape-"+suffix+".raw", "it-scrape-"+suffix+".events", "it-scrape-"+suffix+".dlq", "it-scrape-"+suffix+".anomalies"
	db := "it_scrape_" + suffix
	if err := kafka.EnsureTopics(ctx, brokers, kafka.Security{},
		kafka.TopicSpec{Name: raw, Partitions: 1, ReplicationFactor: 1}, kafka.TopicSpec{Name: events, Partitions: 1, ReplicationFactor: 1},
		kafka.TopicSpec{Name: dlq, Partitions: 1, ReplicationFactor: 1}, kafka.TopicSpec{Name: anomalies, Partitions: 1, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	state, global := "it-scrape-"+suffix+".state", "it-scrape-"+suffix+".responder-global" // the responder creates them
	itest.DeleteTopicsAfter(t, brokers, raw, events, dlq, anomalies, state, global)
	itest.DropDatabaseAfter(t, chAddr, db)
	settings := map[string]string{
		"kafka.brokers": strings.Join(brokers, ","), "kafka.raw_topics": raw, "kafka.events_topic": events, "kafka.dead_letter_topic": dlq,
		"kafka.anomalies_topic": anomalies, "kafka.partitions": "1", "kafka.responder_state_topic": state,
		"kafka.ingest_group": "it-scrape-ingest-" + suffix, "kafka.detector_group": "it-scrape-det-" + suffix, "kafka.responder_group": "it-scrape-resp-" + suffix,
		"kafka.responder_global_topic": global,
		"clickhouse.addr":              strings.Join(chAddr, ","), "clickhouse.database": db, "detector.session_timeout": "6s",
		"detector.snapshot_every": "2s",
		"log.format":              "text",
		// Every interface, as in a pod: allowed because the web config
		// has TLS and basic auth. Port 0; the log says which port.
		"http.addr": "0.0.0.0:0", "http.web_config_file": webConfig,
		"responder.api_addr": "0.0.0.0:0", "responder.api_web_config_file": apiWebConfig,
		"responder.state_dir": filepath.Join(dir, "responder"),
	}
	// An API token is a structured key, so it comes from a file; the
	// secret itself from the variable the token names.
	apiToken := "scrape-test-" + itest.RandHex(16) // 43 bytes: the API wants 32 or more
	cfgFile := filepath.Join(dir, "agentwatch.yaml")
	writeFile(t, cfgFile, "responder:\n  tokens:\n    - {name: ci, secret_env: AW_SCRAPE_TEST_TOKEN, can_read_audit: true}\n")
	env := []string{config.EnvConfigFile + "=" + cfgFile, "AW_SCRAPE_TEST_TOKEN=" + apiToken}
	for k, v := range settings {
		env = append(env, config.EnvPrefix+"_"+strings.ToUpper(strings.ReplaceAll(k, ".", "_"))+"="+v)
	}

	jobs := []struct{ name, metric string }{
		{"ingest", "agentwatch_ingest_records_total"},
		{"detector", "agentwatch_detector_events_total"},
		{"responder", "agentwatch_responder_alert_latency_seconds_count"},
	}
	targets := map[string]string{}
	var respProc *itest.Proc
	for _, j := range jobs {
		p := itest.Start(t, itest.BuildBinary(t, j.name), env)
		line, ok := p.WaitLine(90*time.Second, 0, `msg="serving metrics"`)
		if !ok {
			t.Fatalf("%s did not serve metrics:\n%s", j.name, p.Tail(30))
		}
		port := portOf(t, line)
		targets[j.name] = "127.0.0.1:" + port
		if p.Lines("without tls or authentication") != nil {
			t.Errorf("%s warned of an unprotected listener though TLS and basic auth are on", j.name)
		}
		if j.name == "responder" {
			respProc = p
		}
	}

	// The endpoints themselves: TLS with the test CA, basic auth required.
	pool := x509.NewCertPool()
	caPEM, err := os.ReadFile(filepath.Join(tlsDir, "ca.crt"))
	if err != nil || !pool.AppendCertsFromPEM(caPEM) {
		t.Fatalf("read test CA: %v", err)
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	for name, target := range targets {
		if code := status(t, client, "https://"+target+"/metrics", "", ""); code != http.StatusUnauthorized {
			t.Errorf("%s: /metrics without credentials answered %d, want 401", name, code)
		}
		if code := status(t, client, "https://"+target+"/readyz", user, "wrong"); code != http.StatusUnauthorized {
			t.Errorf("%s: /readyz with a wrong password answered %d, want 401", name, code)
		}
		if code := status(t, client, "https://"+target+"/healthz", user, password); code != http.StatusOK {
			t.Errorf("%s: /healthz with credentials answered %d, want 200", name, code)
		}
		plaintextRefused(t, name+" /metrics", "http://"+target+"/metrics")
	}
	apiLine, ok := respProc.WaitLine(30*time.Second, 0, `msg="responder api listening"`)
	if !ok {
		t.Fatalf("responder api did not listen:\n%s", respProc.Tail(30))
	}
	api := "127.0.0.1:" + portOf(t, apiLine)
	// The API is TLS without basic auth: its own bearer tokens answer.
	if code := status(t, client, "https://"+api+"/v1/audit", "", ""); code != http.StatusUnauthorized {
		t.Errorf("responder api over TLS without a token answered %d, want 401 from the API", code)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+api+"/v1/audit", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+apiToken)
	if resp, err := client.Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("responder api over TLS with its token: %v %v, want 200", resp, err)
	} else {
		resp.Body.Close()
	}
	plaintextRefused(t, "responder api", "http://"+api+"/v1/audit")

	// A minute of simulated gateway traffic, so that the counters and
	// both input-lag gauges move and Prometheus sees them move.
	simRun, err := sim.New(sim.Config{Seed: 3, Agents: 3, Start: time.Now().UTC().Add(-2 * time.Minute), Duration: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	var lines []bus.Message
	for line := range simRun.All() {
		lines = append(lines, bus.Message{Value: line.Raw})
	}
	w, err := kafka.NewWriter(kafka.WriterConfig{Brokers: brokers, Topic: raw}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(ctx, lines...); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	promDir := filepath.Join(dir, "prometheus")
	if err := os.MkdirAll(promDir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(promDir, "password"), password)
	var sc strings.Builder
	sc.WriteString("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n")
	for _, j := range jobs {
		fmt.Fprintf(&sc, "  - job_name: agentwatch-%s\n    scheme: https\n    tls_config:\n      ca_file: %s\n    basic_auth:\n      username: %s\n      password_file: %s\n    static_configs:\n      - targets: [%q]\n",
			j.name, filepath.Join(tlsDir, "ca.crt"), user, filepath.Join(promDir, "password"), targets[j.name])
	}
	promCfg := filepath.Join(promDir, "prometheus.yml")
	writeFile(t, promCfg, sc.String())
	promAddr := freeAddr(t)
	prom := itest.Start(t, promBin, nil, "--config.file="+promCfg, "--storage.tsdb.path="+filepath.Join(promDir, "data"),
		"--web.listen-address="+promAddr, "--log.level=warn")

	query := func(q string) (int, error) {
		u := "http://" + promAddr + "/api/v1/query?query=" + url.QueryEscape(q)
		resp, err := http.Get(u)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		var r struct {
			Status string
			Data   struct {
				Result []json.RawMessage
			}
		}
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			return 0, err
		}
		if r.Status != "success" {
			return 0, fmt.Errorf("query %s: status %s", q, r.Status)
		}
		return len(r.Data.Result), nil
	}
	want := []string{
		`agentwatch_ingest_events_total{job="agentwatch-ingest"} > 0`,
		`agentwatch_ingest_input_lag_seconds{job="agentwatch-ingest"} > 0`,
		`agentwatch_detector_events_total{job="agentwatch-detector"} > 0`,
		`agentwatch_detector_input_lag_seconds{job="agentwatch-detector"} > 0`,
		// Exported from start; above 0 only once anomalies flow.
		`agentwatch_responder_input_lag_seconds{job="agentwatch-responder"}`,
	}
	for _, j := range jobs {
		want = append(want,
			fmt.Sprintf(`up{job="agentwatch-%s"} == 1`, j.name),
			fmt.Sprintf(`%s{job="agentwatch-%s"}`, j.metric, j.name),
			fmt.Sprintf(`agentwatch_ready{job="agentwatch-%s"}`, j.name))
	}
	deadline := time.Now().Add(60 * time.Second)
	var missing []string
	for {
		missing = missing[:0]
		for _, q := range want {
			if n, err := query(q); err != nil || n == 0 {
				missing = append(missing, q)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		select {
		case <-prom.Done:
			t.Fatalf("prometheus exited: %v\n%s", prom.Err, prom.Tail(30))
		case <-time.After(time.Second):
		}
	}
	if len(missing) > 0 {
		t.Fatalf("prometheus has no result for %q\nprometheus log:\n%s", missing, prom.Tail(30))
	}
	t.Logf("prometheus scraped ingest, detector and responder over TLS with basic auth; test took %s", time.Since(started).Round(time.Second))
}

// plaintextRefused checks that plain HTTP to a TLS listener reaches no
// handler: the connection fails, or Go's TLS server answers its own 400.
func plaintextRefused(t *testing.T, what, u string) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(u)
	if err != nil {
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "HTTPS") {
		t.Errorf("%s: plaintext request answered %d %q; want the TLS server's 400", what, resp.StatusCode, body)
	}
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

func portOf(t *testing.T, line string) string {
	t.Helper()
	m := boundAddr.FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("no addr= in %q", line)
	}
	i := strings.LastIndex(m[1], ":")
	return m[1][i+1:]
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func status(t *testing.T, c *http.Client, u, user, pass string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Errorf("GET %s: %v", u, err)
		return 0
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}
