package tlsconf

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/config"
)

type pki struct {
	caFile, otherCAFile string
	server              tls.Certificate
}

func newCA(t *testing.T, cn string) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func newPKI(t *testing.T) pki {
	dir := t.TempDir()
	ca, caKey, caPEM := newCA(t, "test CA")
	_, _, otherPEM := newCA(t, "other CA")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	p := pki{caFile: filepath.Join(dir, "ca.crt"), otherCAFile: filepath.Join(dir, "other.crt"),
		server: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}}
	for f, b := range map[string][]byte{p.caFile: caPEM, p.otherCAFile: otherPEM} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// serve accepts connections on loopback, answering with TLS or, when
// plain, with a few bytes of a non-TLS protocol.
func serve(t *testing.T, cert *tls.Certificate) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if cert == nil {
					c.Write([]byte("HTTP/1.0 400 Bad Request\r\n\r\n"))
					return
				}
				tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{*cert}})
				_ = tc.Handshake()
				buf := make([]byte, 1)
				tc.Read(buf)
			}()
		}
	}()
	return ln.Addr().String()
}

func TestClientAndExplain(t *testing.T) {
	p := newPKI(t)
	tlsAddr, plainAddr := serve(t, &p.server), serve(t, nil)
	for _, tc := range []struct {
		name    string
		conf    config.TLS
		addr    string
		wantErr error
	}{
		{"trusted", config.TLS{Enabled: true, CAFile: p.caFile, MinVersion: "1.2"}, tlsAddr, nil},
		{"tls 1.3 only", config.TLS{Enabled: true, CAFile: p.caFile, MinVersion: "1.3"}, tlsAddr, nil},
		{"untrusted CA", config.TLS{Enabled: true, CAFile: p.otherCAFile, MinVersion: "1.2"}, tlsAddr, ErrUntrusted},
		{"wrong name", config.TLS{Enabled: true, CAFile: p.caFile, ServerName: "kafka.example", MinVersion: "1.2"}, tlsAddr, ErrUntrusted},
		{"plaintext port", config.TLS{Enabled: true, CAFile: p.caFile, MinVersion: "1.2"}, plainAddr, ErrNotTLS},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Client(tc.conf, "kafka")
			if err != nil {
				t.Fatal(err)
			}
			d := &net.Dialer{Timeout: 5 * time.Second}
			conn, err := tls.DialWithDialer(d, "tcp", tc.addr, cfg)
			if conn != nil {
				conn.Close()
			}
			err = Explain(err, true, "kafka")
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("got %v, want %v", err, tc.wantErr)
			}
			if again := Explain(err, true, "kafka"); again != err {
				t.Fatalf("explaining twice changed the error: %v", again)
			}
		})
	}
}

func TestClientOffAndBadFiles(t *testing.T) {
	if c, err := Client(config.TLS{}, "kafka"); c != nil || err != nil {
		t.Fatalf("TLS off: got %v, %v", c, err)
	}
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.pem")
	os.WriteFile(junk, []byte("not a certificate"), 0o600)
	for name, c := range map[string]config.TLS{
		"missing ca":   {Enabled: true, CAFile: filepath.Join(dir, "none")},
		"junk ca":      {Enabled: true, CAFile: junk},
		"junk keypair": {Enabled: true, CertFile: junk, KeyFile: junk},
	} {
		if _, err := Client(c, "clickhouse"); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
