package respctl

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/config"
)

// TestAPIClientSchemeFollowsTheWebConfig: with TLS in
// responder.api_web_config_file the subcommands call https://.
func TestAPIClientSchemeFollowsTheWebConfig(t *testing.T) {
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "responder"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"tls.crt": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		"tls.key": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		"web.yml": []byte("tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n"),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("RESPONDER_API_TOKEN", "x")
	for _, tc := range []struct {
		web, want string
	}{
		{"", "http://127.0.0.1:9465"},
		{filepath.Join(dir, "web.yml"), "https://127.0.0.1:9465"},
	} {
		var cfg config.Config
		cfg.Responder.APIAddr, cfg.Responder.APIWebConfigFile = "127.0.0.1:9465", tc.web
		c, err := newAPIClient(cfg, "", "can_silence")
		if err != nil || c.base != tc.want {
			t.Errorf("web config %q: base %v, %v; want %s", tc.web, c, err, tc.want)
		}
	}
}
