package weblisten

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/agentwatch/agentwatch/internal/platform/syncbuf"
)

// pki writes a CA and a server certificate for 127.0.0.1 into dir and
// returns the CA's pool.
func pki(t *testing.T, dir string) *x509.CertPool {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "weblisten test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(dir, "server.crt"), "CERTIFICATE", der)
	writePEM(t, filepath.Join(dir, "server.key"), "PRIVATE KEY", keyDER)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pool
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func hash(t *testing.T, pw string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestInspect(t *testing.T) {
	dir := t.TempDir()
	pki(t, dir)
	h := hash(t, "s3cret")
	tlsBlock := "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
	users := "basic_auth_users:\n  prometheus: " + h + "\n"
	for _, tc := range []struct {
		name, body string
		want       Security
		wantErr    string
	}{
		{name: "empty file", body: "", want: Security{}},
		{name: "tls", body: tlsBlock, want: Security{TLS: true}},
		{name: "basic auth", body: users, want: Security{BasicAuth: true}},
		{name: "both", body: tlsBlock + users, want: Security{TLS: true, BasicAuth: true}},
		{name: "headers only", body: "http_server_config:\n  headers:\n    X-Frame-Options: deny\n", want: Security{}},
		{name: "misspelt key", body: "basic_auth_user:\n  prometheus: " + h + "\n", wantErr: "basic_auth_user"},
		{name: "plain password", body: "basic_auth_users:\n  prometheus: s3cret\n", wantErr: "hash"},
		{name: "missing key file", body: "tls_server_config:\n  cert_file: server.crt\n  key_file: nope.key\n", wantErr: "nope.key"},
		{name: "cert without key", body: "tls_server_config:\n  cert_file: server.crt\n", wantErr: "key"},
		{name: "not yaml", body: "{", wantErr: "parse"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Inspect(writeFile(t, dir, "web.yml", tc.body))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Inspect = %+v, %v; want an error mentioning %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Inspect = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
	if got, err := Inspect(""); err != nil || got.Protected() {
		t.Fatalf("Inspect(\"\") = %+v, %v; want unprotected, no error", got, err)
	}
	if _, err := Inspect(filepath.Join(dir, "absent.yml")); err == nil {
		t.Fatal("Inspect of a missing file: no error")
	}
}

func TestLoopback(t *testing.T) {
	for _, tc := range []struct {
		addr    string
		want    bool
		wantErr bool
	}{
		{addr: "127.0.0.1:9464", want: true},
		{addr: "127.9.9.9:1", want: true},
		{addr: "[::1]:9464", want: true},
		{addr: "localhost:9464", want: true},
		{addr: "0.0.0.0:9464"},
		{addr: ":9464"},
		{addr: "[::]:9464"},
		{addr: "10.0.0.5:9464"},
		{addr: "metrics.example.com:9464"},
		{addr: "127.0.0.1", wantErr: true},
	} {
		got, err := Loopback(tc.addr)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("Loopback(%q) = %v, %v; want %v, error %v", tc.addr, got, err, tc.want, tc.wantErr)
		}
	}
}

// serve runs Serve on a fresh listener at host and returns its address
// and the log it writes.
func serve(t *testing.T, host, webConfig string) (string, *syncbuf.Buffer) {
	t.Helper()
	ln, err := net.Listen("tcp", host+":0")
	if err != nil {
		t.Fatal(err)
	}
	logBuf := &syncbuf.Buffer{}
	log := slog.New(slog.NewTextHandler(logBuf, nil))
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "up 1\n") })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, ln, &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}, webConfig, log)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve after cancel: %v", err)
		}
	})
	return ln.Addr().String(), logBuf
}

func TestServeTLSAndBasicAuth(t *testing.T) {
	dir := t.TempDir()
	pool := pki(t, dir)
	cfg := writeFile(t, dir, "web.yml", "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\nbasic_auth_users:\n  prometheus: "+hash(t, "s3cret")+"\n")
	addr, _ := serve(t, "127.0.0.1", cfg)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	get := func(url, user, pass string) (int, error) {
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			return 0, err
		}
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, nil
	}
	for _, tc := range []struct {
		name, user, pass string
		want             int
	}{
		{"no credentials", "", "", http.StatusUnauthorized},
		{"wrong password", "prometheus", "guess", http.StatusUnauthorized},
		{"unknown user", "root", "s3cret", http.StatusUnauthorized},
		{"right credentials", "prometheus", "s3cret", http.StatusOK},
	} {
		if code, err := get("https://"+addr+"/metrics", tc.user, tc.pass); err != nil || code != tc.want {
			t.Errorf("%s: GET = %d, %v; want %d", tc.name, code, err, tc.want)
		}
	}
	// Plain HTTP to the TLS port gets no metrics: Go's TLS server answers
	// a plaintext request with a 400 that says so, never the page.
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + addr + "/metrics")
	if err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK || strings.Contains(string(body), "up 1") {
			t.Fatalf("plaintext request to the TLS listener answered %d %q", resp.StatusCode, body)
		}
	}
	// A client that does not trust the CA is refused at the handshake.
	_, err = (&http.Client{Timeout: 10 * time.Second}).Get("https://" + addr + "/metrics")
	var uerr x509.UnknownAuthorityError
	if !errors.As(err, &uerr) {
		t.Fatalf("untrusted client: err %v, want an unknown-authority error", err)
	}
}

func TestServeWarnsWhenExposedWithoutProtection(t *testing.T) {
	for _, tc := range []struct {
		name, host string
		protect    bool
		warn       bool
	}{
		{"loopback plain", "127.0.0.1", false, false},
		{"all interfaces plain", "0.0.0.0", false, true},
		{"all interfaces basic auth", "0.0.0.0", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ""
			if tc.protect {
				cfg = writeFile(t, t.TempDir(), "web.yml", "basic_auth_users:\n  prometheus: "+hash(t, "pw")+"\n")
			}
			addr, logBuf := serve(t, tc.host, cfg)
			_, port, _ := net.SplitHostPort(addr)
			resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://127.0.0.1:" + port + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := strings.Contains(logBuf.String(), "without tls or authentication"); got != tc.warn {
				t.Fatalf("warning logged = %v, want %v; log:\n%s", got, tc.warn, logBuf)
			}
		})
	}
}

func TestServeRefusesABadWebConfig(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := writeFile(t, t.TempDir(), "web.yml", "basic_auth_users:\n  prometheus: plaintext\n")
	err = Serve(context.Background(), ln, &http.Server{ReadHeaderTimeout: time.Second}, cfg, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "hash") {
		t.Fatalf("Serve with a plaintext password: %v, want a bcrypt error", err)
	}
}

// FuzzInspect feeds arbitrary files to Inspect: it must answer a value or
// an error, never panic, and say basic auth is on only for a file that
// names basic_auth_users.
func FuzzInspect(f *testing.F) {
	f.Add([]byte("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"))
	f.Add([]byte("basic_auth_users:\n  prometheus: $2a$04$4xjs.Lg2Y1Ga69A4yE/UtOZpxDpUyXQKsXOjxOqGikCRTRWa52GgC\n"))
	f.Add([]byte("http_server_config:\n  http2: false\n"))
	f.Add([]byte("{"))
	f.Fuzz(func(t *testing.T, body []byte) {
		p := filepath.Join(t.TempDir(), "web.yml")
		if err := os.WriteFile(p, body, 0o600); err != nil {
			t.Fatal(err)
		}
		sec, err := Inspect(p)
		if err != nil {
			if sec != (Security{}) {
				t.Fatalf("Inspect returned %+v with error %v", sec, err)
			}
			return
		}
		if sec.BasicAuth && !bytes.Contains(body, []byte("basic_auth_users")) {
			t.Fatalf("basic auth on for a file without basic_auth_users: %q", body)
		}
	})
}
