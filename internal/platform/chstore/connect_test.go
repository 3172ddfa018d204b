package chstore

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/agentwatch/agentwatch/internal/platform/tlsconf"
)

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

var _ net.Error = timeoutErr{}

// TestExplainConnect: each way a connect fails gets its sentinel (when
// callers branch on it), a message that names the fix, and stays
// non-retryable when retrying cannot help.
func TestExplainConnect(t *testing.T) {
	o := Options{Addr: []string{"ch:9440"}, Username: "agentwatch", Password: "hunter2", DialTimeout: 3 * time.Second}
	ex := func(code int32, msg string) error {
		return fmt.Errorf("handshake: %w", &clickhouse.Exception{Code: code, Message: msg})
	}
	for _, tc := range []struct {
		name      string
		err       error
		tlsOn     bool
		sentinel  error
		want      string
		retryable bool
	}{
		{"wrong password, 18.16", ex(193, "Wrong password for user agentwatch"), true, ErrAuth, `authentication failed for user "agentwatch"`, false},
		{"no password, 18.16", ex(194, "Password required for user agentwatch"), true, ErrAuth, `authentication failed for user "agentwatch"`, false},
		{"unknown user, 18.16", ex(192, "Unknown user agentwatch"), true, ErrAuth, "check clickhouse.username and clickhouse.password", false},
		{"refused login, current", ex(516, "agentwatch: Authentication failed"), true, ErrAuth, `authentication failed for user "agentwatch"`, false},
		{"address not allowed", ex(195, "User agentwatch is not allowed to connect from address 10.0.0.1"), false, ErrAuth, "networks", false},
		{"database denied", ex(291, "Access denied to database x for user agentwatch"), true, ErrDatabaseDenied, "allow it on the server", false},
		{"other exception", ex(60, "Table t doesn't exist"), true, nil, "Table t doesn't exist", false},
		{"untrusted", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, true, tlsconf.ErrUntrusted, "clickhouse.tls.ca_file", false},
		{"tls client, plain port", tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, true, tlsconf.ErrNotTLS, "is this the secure native port?", false},
		{"tls client, silent port", &net.OpError{Op: "read", Err: timeoutErr{}}, true, nil, "no TLS handshake within clickhouse.dial_timeout (3s): is this the secure native port?", true},
		{"plain client, tls port", fmt.Errorf("handshake: %w", io.EOF), false, tlsconf.ErrPlaintextToTLS, "then set clickhouse.tls.enabled", false},
		{"plain client, tls port, reset", fmt.Errorf("read: %w", &net.OpError{Op: "read", Err: syscall.ECONNRESET}), false, tlsconf.ErrPlaintextToTLS, "is this the secure native port?", false},
		{"plain client, silent port", &net.OpError{Op: "read", Err: timeoutErr{}}, false, nil, "is this the secure native port?", true},
		{"nothing listening", &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, true, nil, "is it running?", true},
		{"cancelled", context.Canceled, true, context.Canceled, "connect to clickhouse at ch:9440 (database db)", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := explainConnect(tc.err, o, "db", tc.tlsOn)
			if tc.sentinel != nil && !errors.Is(got, tc.sentinel) {
				t.Errorf("%v: not %v", got, tc.sentinel)
			}
			if !strings.Contains(got.Error(), tc.want) {
				t.Errorf("%q does not say %q", got, tc.want)
			}
			if !strings.HasPrefix(got.Error(), "connect to clickhouse at ch:9440 (database db): ") {
				t.Errorf("%q does not say where", got)
			}
			if strings.Contains(got.Error(), o.Password) {
				t.Errorf("%q shows the password", got)
			}
			if r := Retryable(got); r != tc.retryable {
				t.Errorf("Retryable(%v) = %v, want %v", got, r, tc.retryable)
			}
		})
	}
}
