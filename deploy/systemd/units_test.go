package systemd

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/config"
)

var services = []string{"ingest", "detector", "responder"}

// root lays out a filesystem for `systemd-analyze verify --root`: the
// host's system units (verify resolves sysinit.target and the other
// default dependencies there), the agentwatch units and the secrets
// drop-in in /etc/systemd/system, and an executable at each ExecStart
// path, since verify checks that it exists. This lets verify run without
// systemd as PID 1 and without installing anything on the host.
func root(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	sys := filepath.Join(dir, "usr", "lib", "systemd")
	if err := os.MkdirAll(sys, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-r", "/lib/systemd/system", sys+"/").CombinedOutput(); err != nil {
		t.Fatalf("copy the host's system units: %v\n%s", err, out)
	}
	etc := filepath.Join(dir, "etc", "systemd", "system")
	bin := filepath.Join(dir, "usr", "local", "bin")
	for _, d := range []string{etc, bin} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dropin, err := os.ReadFile("secrets.conf.example")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range services {
		unit, err := os.ReadFile("agentwatch-" + s + ".service")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(etc, "agentwatch-"+s+".service"), unit, 0o644); err != nil {
			t.Fatal(err)
		}
		d := filepath.Join(etc, "agentwatch-"+s+".service.d")
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "secrets.conf"), dropin, 0o644); err != nil {
			t.Fatal(err)
		}
		if s == "responder" {
			listen, err := os.ReadFile("responder-listen.conf.example")
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(d, "listen.conf"), listen, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(bin, s), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func analyze(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not found (Debian package systemd); the units are checked where it is installed, as in make test")
	}
	return p
}

// TestVerify runs `systemd-analyze verify` on every unit with its secrets
// drop-in: unknown keys, bad values, missing executables and unknown
// dependencies are all reported, and any output fails the test.
func TestVerify(t *testing.T) {
	sa := analyze(t)
	dir := root(t)
	for _, s := range services {
		t.Run(s, func(t *testing.T) {
			cmd := exec.Command(sa, "verify", "--root="+dir, "--man=no", "--generators=no", "agentwatch-"+s+".service")
			out, err := cmd.CombinedOutput()
			if err != nil || len(bytes.TrimSpace(out)) > 0 {
				t.Fatalf("systemd-analyze verify agentwatch-%s.service: %v\n%s", s, err, out)
			}
		})
	}
	// verify must fail on a bad unit, or the check above proves nothing.
	bad := filepath.Join(dir, "etc", "systemd", "system", "agentwatch-bad.service")
	if err := os.WriteFile(bad, []byte("[Service]\nExecStart=/usr/local/bin/missing run\nProtectSystem=sometimes\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(sa, "verify", "--root="+dir, "--man=no", "--generators=no", "agentwatch-bad.service").CombinedOutput(); err == nil {
		t.Fatalf("verify passed a unit with a missing binary and a bad value:\n%s", out)
	}
}

// exposure matches the last line of `systemd-analyze security`.
var exposure = regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+) (\S+)`)

// TestSecurity runs `systemd-analyze security --offline` and holds every
// unit to at most 2.0 ("OK"); docs/packaging.md shows the scores.
func TestSecurity(t *testing.T) {
	sa := analyze(t)
	dir := root(t)
	for _, s := range services {
		t.Run(s, func(t *testing.T) {
			unit := filepath.Join(dir, "etc", "systemd", "system", "agentwatch-"+s+".service")
			out, err := exec.Command(sa, "security", "--offline=yes", "--root="+dir, "--no-pager", unit).CombinedOutput()
			if err != nil {
				t.Fatalf("systemd-analyze security: %v\n%s", err, out)
			}
			m := exposure.FindSubmatch(out)
			if m == nil {
				t.Fatalf("no overall exposure in:\n%s", out)
			}
			score, _ := strconv.ParseFloat(string(m[1]), 64)
			t.Logf("agentwatch-%s.service: exposure %s %s", s, m[1], m[2])
			if score > 2.0 {
				t.Errorf("agentwatch-%s.service: exposure %.1f %s; want at most 2.0:\n%s", s, score, m[2], failing(out))
			}
		})
	}
}

// failing keeps the lines of security's table that cost points.
func failing(out []byte) string {
	var b strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if strings.HasPrefix(strings.TrimSpace(sc.Text()), "✗") {
			fmt.Fprintln(&b, sc.Text())
		}
	}
	return b.String()
}

// TestUnitsAgree checks what the three units must share: the sandbox
// settings (a setting added to one is added to all) and the binary and
// configuration paths of the image and the docs.
func TestUnitsAgree(t *testing.T) {
	sandbox := map[string][]string{}
	for _, s := range services {
		b, err := os.ReadFile("agentwatch-" + s + ".service")
		if err != nil {
			t.Fatal(err)
		}
		unit := string(b)
		if want := "ExecStart=/usr/local/bin/" + s + " run --config /etc/agentwatch/agentwatch.yaml\n"; !strings.Contains(unit, want) {
			t.Errorf("agentwatch-%s.service: want %q", s, want)
		}
		after := unit[strings.Index(unit, "# Sandbox."):]
		sandbox[s] = strings.Split(after[:strings.Index(after, "[Install]")], "\n")
	}
	for _, s := range services[1:] {
		if strings.Join(sandbox[s], "\n") != strings.Join(sandbox[services[0]], "\n") {
			t.Errorf("agentwatch-%s.service's sandbox differs from agentwatch-%s.service's", s, services[0])
		}
	}
}

// TestUnitEnvironmentIsConfig loads the README's example configuration
// with the AGENTWATCH_* variables each unit sets, through the services'
// own loader: a misspelt key in a unit would stop the service at start
// with exit code 2, which systemd-analyze cannot see.
func TestUnitEnvironmentIsConfig(t *testing.T) {
	for _, s := range services {
		b, err := os.ReadFile("agentwatch-" + s + ".service")
		if err != nil {
			t.Fatal(err)
		}
		var env []string
		for _, line := range strings.Split(string(b), "\n") {
			if kv, ok := strings.CutPrefix(line, "Environment="); ok {
				env = append(env, strings.ReplaceAll(kv, "%S", "/var/lib"))
			}
		}
		if len(env) == 0 {
			t.Fatalf("agentwatch-%s.service sets no variable; the test would check nothing", s)
		}
		// The secrets drop-in's _FILE variables, with %d (the credentials
		// directory) holding one file per LoadCredential.
		creds := t.TempDir()
		dropin, err := os.ReadFile("secrets.conf.example")
		if err != nil {
			t.Fatal(err)
		}
		var files int
		for _, line := range strings.Split(string(dropin), "\n") {
			if v, ok := strings.CutPrefix(line, "LoadCredential="); ok {
				id, _, _ := strings.Cut(v, ":")
				if err := os.WriteFile(filepath.Join(creds, id), []byte("secret-from-credential\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if kv, ok := strings.CutPrefix(line, "Environment="); ok {
				env = append(env, strings.ReplaceAll(kv, "%d", creds))
				files++
			}
		}
		if files == 0 {
			t.Fatal("secrets.conf.example sets no variable")
		}
		cfg, err := config.LoadEnv("../agentwatch.example.yaml", nil, env)
		if err != nil {
			t.Errorf("agentwatch-%s.service: %v", s, err)
			continue
		}
		if cfg.ClickHouse.Password != "secret-from-credential" {
			t.Errorf("agentwatch-%s.service: clickhouse.password not read from the credential", s)
		}
		if s == "responder" && cfg.Responder.StateDir != "/var/lib/agentwatch-responder" {
			t.Errorf("responder state_dir = %q; want the unit's StateDirectory", cfg.Responder.StateDir)
		}
	}
}

// TestResponderListenDropIn loads the example configuration with the
// responder unit's variables and the listen drop-in's, whose web
// configuration is a real TLS one here: the API then listens on every
// address with TLS. Without the web configuration line the same address
// is refused, so the drop-in's second line is what makes the first valid.
func TestResponderListenDropIn(t *testing.T) {
	unit, err := os.ReadFile("agentwatch-responder.service")
	if err != nil {
		t.Fatal(err)
	}
	dropin, err := os.ReadFile("responder-listen.conf.example")
	if err != nil {
		t.Fatal(err)
	}
	web := tlsWebConfig(t)
	var base, listen []string
	for _, line := range strings.Split(string(unit), "\n") {
		if kv, ok := strings.CutPrefix(line, "Environment="); ok {
			base = append(base, strings.ReplaceAll(kv, "%S", "/var/lib"))
		}
	}
	for _, line := range strings.Split(string(dropin), "\n") {
		if kv, ok := strings.CutPrefix(line, "Environment="); ok {
			k, _, _ := strings.Cut(kv, "=")
			if k == "AGENTWATCH_RESPONDER_API_WEB_CONFIG_FILE" {
				kv = k + "=" + web
			}
			listen = append(listen, kv)
		}
	}
	if len(listen) != 2 {
		t.Fatalf("the drop-in sets %d variables; want the API address and its web configuration", len(listen))
	}
	cfg, err := config.LoadEnv("../agentwatch.example.yaml", nil, append(append([]string{}, base...), listen...))
	if err != nil {
		t.Fatalf("the unit with the listen drop-in: %v", err)
	}
	if cfg.Responder.APIAddr != "0.0.0.0:9465" || cfg.Responder.APIWebConfigFile != web {
		t.Errorf("api_addr %q, api_web_config_file %q; want 0.0.0.0:9465 with %s", cfg.Responder.APIAddr, cfg.Responder.APIWebConfigFile, web)
	}
	if _, err := config.LoadEnv("../agentwatch.example.yaml", nil, append(append([]string{}, base...), listen[0])); err == nil {
		t.Error("the API on 0.0.0.0 without a web configuration loaded; the check above proves nothing")
	}
}

// tlsWebConfig writes a web configuration with a self-signed certificate
// and returns its path.
func tlsWebConfig(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "responder"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"responder"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string][]byte{
		"server.crt":  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		"server.key":  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		"api-web.yml": []byte("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), body, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "api-web.yml")
}
