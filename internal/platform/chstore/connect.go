package chstore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/agentwatch/agentwatch/internal/platform/tlsconf"
)

// ErrAuth means the server refused the user name or the password, or the
// user may not connect from this address. Retrying cannot help: fix
// clickhouse.username and clickhouse.password (or the user's networks on
// the server).
var ErrAuth = errors.New("authentication failed")

// ErrDatabaseDenied means the user may not use the configured database:
// the server's allow_databases (18.16) or GRANTs (current releases) must
// list it. Retrying cannot help.
var ErrDatabaseDenied = errors.New("access to the database denied")

// Server error codes of a refused login (src/Common/ErrorCodes.cpp; they
// are stable across releases).
const (
	codeUnknownUser          = 192 // UNKNOWN_USER, 18.16
	codeWrongPassword        = 193 // WRONG_PASSWORD, 18.16
	codeRequiredPassword     = 194 // REQUIRED_PASSWORD, 18.16: none given
	codeIPNotAllowed         = 195 // IP_ADDRESS_NOT_ALLOWED
	codeDatabaseAccessDenied = 291 // DATABASE_ACCESS_DENIED
	codeAuthFailed           = 516 // AUTHENTICATION_FAILED, current releases for every refused login
)

// dial opens a pool on database ("" for the server's default) and pings it,
// so that a wrong address, password, certificate or port shows here, once,
// with an explanation, rather than at the first query.
func dial(ctx context.Context, o Options, tc *tls.Config, database string) (driver.Conn, error) {
	conn, err := clickhouse.Open(&clickhouse.Options{
		Protocol: clickhouse.Native,
		Addr:     o.Addr,
		Auth: clickhouse.Auth{
			Database: database,
			Username: o.Username,
			Password: o.Password,
		},
		TLS:         tc,
		DialTimeout: o.DialTimeout,
		ReadTimeout: o.ReadTimeout,
	})
	if err != nil {
		return nil, fmt.Errorf("configure clickhouse client for %v: %w", o.Addr, err)
	}
	if err := conn.Ping(ctx); err != nil {
		conn.Close()
		return nil, explainConnect(err, o, database, tc != nil)
	}
	return conn, nil
}

// explainConnect turns a failed connect into an error that names the
// mistake and its fix: wrong credentials, a database the user may not use,
// an untrusted certificate, or TLS on one side only (which the server
// answers by closing the connection, or not at all until dial_timeout).
func explainConnect(err error, o Options, database string, tlsOn bool) error {
	where := "connect to clickhouse at " + strings.Join(o.Addr, ",")
	if database != "" {
		where += " (database " + database + ")"
	}
	var ex *clickhouse.Exception
	if errors.As(err, &ex) {
		switch ex.Code {
		case codeAuthFailed, codeWrongPassword, codeRequiredPassword, codeUnknownUser:
			return fmt.Errorf("%s: %w for user %q: %v; check clickhouse.username and clickhouse.password", where, ErrAuth, o.Username, err)
		case codeIPNotAllowed:
			return fmt.Errorf("%s: %w for user %q: %v; the user may not connect from this host (its networks on the server)", where, ErrAuth, o.Username, err)
		case codeDatabaseAccessDenied:
			return fmt.Errorf("%s: %w for user %q: %v; allow it on the server (docs/clickhouse-security.md)", where, ErrDatabaseDenied, o.Username, err)
		}
		return fmt.Errorf("%s: %w", where, err)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", where, err)
	}
	err = tlsconf.Explain(err, tlsOn, "clickhouse")
	timeout := isTimeout(err)
	switch {
	case errors.Is(err, tlsconf.ErrUntrusted):
		return fmt.Errorf("%s: %w; check clickhouse.tls.ca_file (the CA that signed the server's certificate) and clickhouse.tls.server_name", where, err)
	case tlsOn && errors.Is(err, tlsconf.ErrNotTLS):
		return fmt.Errorf("%s: the server answered the TLS handshake in plaintext: is this the secure native port? (tcp_port_secure, 9440 by default): %w", where, err)
	case tlsOn && timeout:
		return fmt.Errorf("%s: no TLS handshake within clickhouse.dial_timeout (%s): is this the secure native port? (tcp_port_secure, 9440 by default): %w", where, o.DialTimeout, err)
	case !tlsOn && (errors.Is(err, tlsconf.ErrPlaintextToTLS) || timeout):
		return fmt.Errorf("%s: the server closed the plaintext handshake, or did not answer it within clickhouse.dial_timeout (%s): is this the secure native port? then set clickhouse.tls.enabled: %w", where, o.DialTimeout, err)
	}
	return fmt.Errorf("%s: %w; is it running? locally: deploy/clickhouse.sh up", where, err)
}

func isCode(err error, code int32) bool {
	var ex *clickhouse.Exception
	return errors.As(err, &ex) && ex.Code == code
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
