package config

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
	"strings"
	"testing"
	"time"
)

// webConfigs writes exporter-toolkit web configurations into a directory:
// tls.yml (a self-signed certificate), auth.yml (basic auth), both.yml,
// plain.yml (only a header) and bad.yml (a clear-text password).
func webConfigs(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "agentwatch"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"agentwatch"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	// bcrypt of "pw" at cost 4.
	const users = "basic_auth_users:\n  prometheus: $2a$04$4xjs.Lg2Y1Ga69A4yE/UtOZpxDpUyXQKsXOjxOqGikCRTRWa52GgC\n"
	const tlsBlock = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
	for name, body := range map[string]string{
		"server.crt": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		"server.key": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})),
		"tls.yml":    tlsBlock,
		"auth.yml":   users,
		"both.yml":   tlsBlock + users,
		"plain.yml":  "http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n",
		"bad.yml":    "basic_auth_users:\n  prometheus: pw\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestValidateListeners: loopback by default; another address only with
// TLS or basic auth in the web configuration, or an acknowledgement; the
// responder API takes TLS but not basic auth.
func TestValidateListeners(t *testing.T) {
	dir := webConfigs(t)
	web := func(name string) string { return filepath.Join(dir, name) }
	for _, tc := range []struct {
		name string
		set  func(c *Config)
		want []string // substrings of the error, each; none: valid
	}{
		{"defaults", func(c *Config) {}, nil},
		{"loopback without web config", func(c *Config) { c.HTTP.Addr = "127.0.0.1:9464" }, nil},
		{"localhost", func(c *Config) { c.HTTP.Addr = "localhost:9464" }, nil},
		{"disabled", func(c *Config) { c.HTTP.Addr = "" }, nil},
		{"not host:port", func(c *Config) { c.HTTP.Addr = "9464" }, []string{"http.addr", "host:port"}},
		{"public unprotected", func(c *Config) { c.HTTP.Addr = "0.0.0.0:9464" },
			[]string{"http.addr", "http.web_config_file", "http.insecure_listen_ack"}},
		{"all interfaces unprotected", func(c *Config) { c.HTTP.Addr = ":9464" }, []string{"http.addr", "http.insecure_listen_ack"}},
		{"public with a web config that protects nothing", func(c *Config) { c.HTTP.Addr, c.HTTP.WebConfigFile = "0.0.0.0:9464", web("plain.yml") },
			[]string{"http.addr", "neither TLS nor basic auth", "http.insecure_listen_ack"}},
		{"public acknowledged", func(c *Config) { c.HTTP.Addr, c.HTTP.InsecureListenAck = "0.0.0.0:9464", true }, nil},
		{"public with tls", func(c *Config) { c.HTTP.Addr, c.HTTP.WebConfigFile = "0.0.0.0:9464", web("tls.yml") }, nil},
		{"public with basic auth", func(c *Config) { c.HTTP.Addr, c.HTTP.WebConfigFile = "10.1.2.3:9464", web("auth.yml") }, nil},
		{"public with both", func(c *Config) { c.HTTP.Addr, c.HTTP.WebConfigFile = "[::]:9464", web("both.yml") }, nil},
		{"missing web config", func(c *Config) { c.HTTP.WebConfigFile = web("absent.yml") }, []string{"http.web_config_file", "absent.yml"}},
		{"clear-text password", func(c *Config) { c.HTTP.Addr, c.HTTP.WebConfigFile = "0.0.0.0:9464", web("bad.yml") },
			[]string{"http.web_config_file", "exporter-toolkit"}},
		{"api public unprotected", func(c *Config) { c.Responder.APIAddr = "0.0.0.0:9465" },
			[]string{"responder.api_addr", "responder.api_web_config_file", "responder.api_insecure_listen_ack"}},
		{"api public with tls", func(c *Config) { c.Responder.APIAddr, c.Responder.APIWebConfigFile = "0.0.0.0:9465", web("tls.yml") }, nil},
		{"api public acknowledged", func(c *Config) { c.Responder.APIAddr, c.Responder.APIInsecureListenAck = "0.0.0.0:9465", true }, nil},
		{"api basic auth refused", func(c *Config) { c.Responder.APIWebConfigFile = web("both.yml") },
			[]string{"responder.api_web_config_file", "basic_auth_users", "Authorization"}},
		{"http ack does not open the api", func(c *Config) { c.HTTP.InsecureListenAck, c.Responder.APIAddr = true, "0.0.0.0:9465" },
			[]string{"responder.api_addr"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := defaultConfig()
			if err != nil {
				t.Fatal(err)
			}
			tc.set(&cfg)
			err = cfg.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate accepted it")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestListenerKeysFromEnv(t *testing.T) {
	dir := webConfigs(t)
	cfg, err := load("", nil, []string{"AGENTWATCH_HTTP_ADDR=0.0.0.0:9464", "AGENTWATCH_HTTP_WEB_CONFIG_FILE=" + filepath.Join(dir, "both.yml"),
		"AGENTWATCH_RESPONDER_API_ADDR=0.0.0.0:9465", "AGENTWATCH_RESPONDER_API_INSECURE_LISTEN_ACK=true"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTP.WebConfigFile == "" || !cfg.Responder.APIInsecureListenAck {
		t.Fatalf("listener keys not applied: %+v %+v", cfg.HTTP, cfg.Responder.APIInsecureListenAck)
	}
}
