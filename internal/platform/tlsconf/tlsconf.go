// Package tlsconf builds the client *tls.Config of a config.TLS section and
// turns the handshake failures operators meet into errors that say which
// mistake it was: an untrusted certificate, a name mismatch, or a client
// speaking TLS to a plaintext port (and the reverse).
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"

	"github.com/agentwatch/agentwatch/internal/platform/config"
)

// Client returns the client TLS config of c, or nil when TLS is off. what
// names the connection ("kafka", "clickhouse") in errors.
func Client(c config.TLS, what string) (*tls.Config, error) {
	if !c.Enabled {
		return nil, nil
	}
	tc := &tls.Config{ServerName: c.ServerName, MinVersion: tls.VersionTLS12}
	if c.MinVersion == "1.3" {
		tc.MinVersion = tls.VersionTLS13
	}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%s tls: read ca_file: %w", what, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s tls: ca_file %s holds no PEM certificate", what, c.CAFile)
		}
		tc.RootCAs = pool
	}
	if c.CertFile != "" || c.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("%s tls: load client certificate %s and key %s: %w", what, c.CertFile, c.KeyFile, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// ErrUntrusted, ErrNotTLS and ErrPlaintextToTLS classify handshake
// failures; Explain wraps the original error with one of them.
var (
	ErrUntrusted      = errors.New("server certificate not trusted")
	ErrNotTLS         = errors.New("server does not speak TLS on this port (is it the plaintext listener?)")
	ErrPlaintextToTLS = errors.New("connection closed by the server at once (a plaintext client on a TLS port, or a TLS client the server refused)")
)

// Explain says, in terms an operator can act on, why a connection with
// TLS on (tlsOn) failed. Errors it does not recognise come back as they
// are. A failure is explained only once: the result of Explain is
// returned unchanged.
func Explain(err error, tlsOn bool, what string) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, ErrUntrusted) || errors.Is(err, ErrNotTLS) || errors.Is(err, ErrPlaintextToTLS) {
		return err
	}
	var (
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		verify   *tls.CertificateVerificationError
		record   tls.RecordHeaderError
	)
	switch {
	case errors.As(err, &unknown), errors.As(err, &verify) && errors.As(verify.Err, &unknown):
		return fmt.Errorf("%s: %w: its chain does not end at a CA of tls.ca_file: %v", what, ErrUntrusted, err)
	case errors.As(err, &hostname):
		return fmt.Errorf("%s: %w: it is not valid for %q (set tls.server_name?): %v", what, ErrUntrusted, hostname.Host, err)
	case errors.As(err, &invalid):
		return fmt.Errorf("%s: %w: %v", what, ErrUntrusted, err)
	case errors.As(err, &record):
		return fmt.Errorf("%s: %w: %v", what, ErrNotTLS, err)
	case !tlsOn && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || isClosed(err)):
		return fmt.Errorf("%s: %w: %v", what, ErrPlaintextToTLS, err)
	}
	return err
}

func isClosed(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && strings.Contains(op.Err.Error(), "connection reset")
}
