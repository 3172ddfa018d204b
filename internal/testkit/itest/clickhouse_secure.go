package itest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/config"
)

// SecureDatabase is the one database the restricted test user may use
// besides agentwatch (allow_databases in deploy/clickhouse/users.xml).
// Tests that use it run one at a time, as every integration test does, and
// drop it when they end.
const SecureDatabase = "agentwatch_it"

// SecureClickHouse is how the TLS tests reach ClickHouse: the secure native
// port, the test CA of deploy/tls.sh, and the password-protected user of
// deploy/clickhouse/users.xml, restricted to SecureDatabase.
type SecureClickHouse struct {
	Addr               []string
	Username, Password string
	// CAFile signed the server's certificate; OtherCAFile signed nothing
	// the server holds (a wrong trust anchor).
	CAFile, OtherCAFile string
	Database            string
}

// ClickHouseSecure reads TEST_CLICKHOUSE_SECURE_ADDR, TEST_CLICKHOUSE_CA,
// TEST_CLICKHOUSE_USER and TEST_CLICKHOUSE_PASSWORD_FILE (the Makefile
// exports all four), failing under REQUIRE_INTEGRATION when one is missing.
func ClickHouseSecure(t testing.TB) SecureClickHouse {
	t.Helper()
	fix := "deploy/clickhouse.sh up, which opens the TLS port and makes the test CA"
	addr := RequireEnv(t, "TEST_CLICKHOUSE_SECURE_ADDR", fix)
	ca := RequireEnv(t, "TEST_CLICKHOUSE_CA", fix)[0]
	user := RequireEnv(t, "TEST_CLICKHOUSE_USER", fix)[0]
	pwFile := RequireEnv(t, "TEST_CLICKHOUSE_PASSWORD_FILE", fix)[0]
	pw, err := os.ReadFile(pwFile)
	if err != nil {
		t.Fatalf("TEST_CLICKHOUSE_PASSWORD_FILE: %v", err)
	}
	s := SecureClickHouse{
		Addr: addr, Username: user, Password: strings.TrimRight(string(pw), "\r\n"),
		CAFile: ca, OtherCAFile: filepath.Join(filepath.Dir(ca), "other-ca.crt"), Database: SecureDatabase,
	}
	for _, f := range []string{s.CAFile, s.OtherCAFile} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("test CA: %v (deploy/tls.sh makes it)", err)
		}
	}
	return s
}

// Config is the clickhouse section that reaches s over TLS.
func (s SecureClickHouse) Config() config.ClickHouse {
	return config.ClickHouse{
		Addr: s.Addr, Database: s.Database, Username: s.Username, Password: s.Password,
		DialTimeout: 10 * time.Second, RetentionDays: 30, TLS: s.TLS(),
	}
}

// TLS is the client TLS section that trusts the test CA.
func (s SecureClickHouse) TLS() config.TLS {
	return config.TLS{Enabled: true, CAFile: s.CAFile, MinVersion: "1.2"}
}

// Settings are the configuration keys, with their values, that point a
// service at s (for tests that configure services through AGENTWATCH_*
// variables).
func (s SecureClickHouse) Settings() map[string]string {
	return map[string]string{
		"clickhouse.addr":            strings.Join(s.Addr, ","),
		"clickhouse.database":        s.Database,
		"clickhouse.username":        s.Username,
		"clickhouse.password":        s.Password,
		"clickhouse.tls.enabled":     "true",
		"clickhouse.tls.ca_file":     s.CAFile,
		"clickhouse.tls.min_version": "1.2",
	}
}
