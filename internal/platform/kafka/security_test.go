package kafka

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/platform/tlsconf"
)

const testPassword = "pw-that-must-never-show"

func TestNewSecurity(t *testing.T) {
	for _, tc := range []struct {
		mech, wantProto, wantName string
		tls                       bool
	}{
		{"none", "PLAINTEXT", "none", false},
		{"", "PLAINTEXT", "none", false},
		{"plain", "SASL_PLAINTEXT", "PLAIN", false},
		{"scram-sha-256", "SASL_SSL", "SCRAM-SHA-256", true},
		{"scram-sha-512", "SASL_SSL", "SCRAM-SHA-512", true},
		{"none", "SSL", "none", true},
	} {
		t.Run(tc.mech+"/"+tc.wantProto, func(t *testing.T) {
			sec, err := NewSecurity(config.TLS{Enabled: tc.tls, MinVersion: "1.2"}, config.SASL{Mechanism: tc.mech, Username: "u", Password: testPassword})
			if err != nil {
				t.Fatal(err)
			}
			if sec.Protocol() != tc.wantProto || sec.Mechanism() != tc.wantName {
				t.Fatalf("got %s/%s, want %s/%s", sec.Protocol(), sec.Mechanism(), tc.wantProto, tc.wantName)
			}
			// The password must not reach a log line or a formatted error.
			var b strings.Builder
			slog.New(slog.NewTextHandler(&b, nil)).Info("x", "security", sec)
			b.WriteString(fmt.Sprintf("%v %s %+v", sec, sec, sec.LogValue()))
			if strings.Contains(b.String(), testPassword) {
				t.Fatalf("password printed: %s", b.String())
			}
		})
	}
	if _, err := NewSecurity(config.TLS{}, config.SASL{Mechanism: "gssapi"}); err == nil {
		t.Error("unknown mechanism: no error")
	}
	if _, err := NewSecurity(config.TLS{Enabled: true, CAFile: "/nonexistent/ca.pem"}, config.SASL{}); err == nil {
		t.Error("missing CA file: no error")
	}
}

// listen serves loopback connections with handle and returns the address.
func listen(t *testing.T, handle func(net.Conn)) string {
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
			go handle(c)
		}
	}()
	return ln.Addr().String()
}

// TestCheckExplains runs Check against listeners that misbehave the way a
// wrong Kafka listener does, and wants the error that names the mistake,
// within the check's own deadline.
func TestCheckExplains(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(ca, []byte(testCA), 0o600); err != nil {
		t.Fatal(err)
	}
	hang := listen(t, func(c net.Conn) { // a TLS listener waiting for a ClientHello
		defer c.Close()
		time.Sleep(10 * time.Second)
	})
	drop := listen(t, func(c net.Conn) { // a listener that reads one request and hangs up
		buf := make([]byte, 512)
		_, _ = c.Read(buf)
		c.Close()
	})
	plainReply := listen(t, func(c net.Conn) { // not TLS: answers bytes that are no TLS record
		defer c.Close()
		buf := make([]byte, 512)
		_, _ = c.Read(buf)
		_, _ = c.Write([]byte("\x00\x00\x00\x08not-tls!"))
	})
	for _, tc := range []struct {
		name   string
		addr   string
		sec    config.TLS
		sasl   config.SASL
		want   error
		wantIn string
	}{
		{"plaintext client on a silent TLS port", hang, config.TLS{MinVersion: "1.2"}, config.SASL{Mechanism: "none"}, ErrNoAnswer, "TLS/SASL listener"},
		{"plaintext SASL client on a silent TLS port", hang, config.TLS{MinVersion: "1.2"}, config.SASL{Mechanism: "scram-sha-512", Username: "u", Password: testPassword}, ErrNoAnswer, "TLS/SASL listener"},
		{"plaintext client dropped", drop, config.TLS{MinVersion: "1.2"}, config.SASL{Mechanism: "none"}, tlsconf.ErrPlaintextToTLS, "TLS/SASL listener"},
		{"TLS client dropped in the handshake", drop, config.TLS{Enabled: true, CAFile: ca, MinVersion: "1.2"}, config.SASL{Mechanism: "none"}, tlsconf.ErrNotTLS, "plaintext listener"},
		{"TLS client answered in plaintext", plainReply, config.TLS{Enabled: true, CAFile: ca, MinVersion: "1.2"}, config.SASL{Mechanism: "none"}, tlsconf.ErrNotTLS, "plaintext listener"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sec, err := NewSecurity(tc.sec, tc.sasl)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			defer cancel()
			err = Check(ctx, []string{tc.addr}, sec)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.wantIn) {
				t.Fatalf("got %v, want %v mentioning %q", err, tc.want, tc.wantIn)
			}
			if strings.Contains(err.Error(), testPassword) {
				t.Fatalf("the error shows the password: %v", err)
			}
		})
	}
}

// testCA is any valid CA certificate: the checks above fail before a
// certificate is looked at.
var testCA = func() string {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "unit test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}()
