package chstore

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/platform/tlsconf"
	"github.com/agentwatch/agentwatch/internal/testkit/itest"
)

// secure, while TestIntegrationSecureRoundTrips runs, points the test
// helpers at the secure native port, as the restricted user, in the one
// database that user may use. No test here runs in parallel, so a package
// variable is enough.
var secure *itest.SecureClickHouse

// testOptions are the options the test helpers open db with.
func testOptions(t *testing.T, db string) Options {
	if secure != nil {
		return Options{Addr: secure.Addr, Database: db, Username: secure.Username, Password: secure.Password, TLS: secure.TLS()}
	}
	return Options{Addr: testAddr(t), Database: db}
}

// dropSecureDatabase removes what a killed earlier run left in the
// restricted user's database, as that user (it may drop its own).
func dropSecureDatabase(t *testing.T, sc itest.SecureClickHouse) {
	t.Helper()
	// Not t.Context(): this also runs at cleanup, when that is done.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := Open(ctx, Options{Addr: sc.Addr, Database: sc.Database, Username: sc.Username, Password: sc.Password, TLS: sc.TLS()}, testLogger(t))
	if err != nil {
		t.Fatalf("open %s over TLS as %s: %v", sc.Database, sc.Username, err)
	}
	defer st.Close()
	if err := st.conn.Exec(ctx, "DROP DATABASE IF EXISTS "+quoteIdent(sc.Database)); err != nil {
		t.Fatalf("drop %s as %s: %v", sc.Database, sc.Username, err)
	}
}

// TestIntegrationSecureRoundTrips runs the main round-trip tests again over
// TLS, as the password-protected user that may use only its own database:
// every column type byte for byte, the events, the migrations, retention by
// partition, the detector's state and the responder's tables (mutations,
// OPTIMIZE and system.parts included). It is the evidence that
// clickhouse-go's TLS works against 18.16's secure port and that the user's
// rights are enough for the product.
func TestIntegrationSecureRoundTrips(t *testing.T) {
	sc := itest.ClickHouseSecure(t)
	testAddr(t) // the plain port too: some of these tests compare with it
	dropSecureDatabase(t, sc)
	secure = &sc
	t.Cleanup(func() { secure = nil })
	for _, tc := range []struct {
		name string
		run  func(*testing.T)
	}{
		{"TypesRoundTrip", TestIntegrationTypesRoundTrip},
		{"EventsRoundTrip", TestIntegrationEventsRoundTrip},
		{"MigrateIdempotent", TestIntegrationMigrateIdempotent},
		{"MigrateConcurrent", TestIntegrationMigrateConcurrent},
		{"Schema", TestIntegrationSchema},
		{"DropPartitionsBefore", TestIntegrationDropPartitionsBefore},
		{"DetectorStates", TestIntegrationDetectorStates},
		{"DetectorStateCapAndExpire", TestIntegrationDetectorStateCapAndExpire},
		{"DetectorAnomalies", TestIntegrationDetectorAnomalies},
		{"Audit", TestIntegrationAudit},
		{"Seen", TestIntegrationSeen},
		{"ChainTwoWriters", TestIntegrationChainTwoWriters},
		{"Feedback", TestIntegrationFeedback},
	} {
		if !t.Run(tc.name, tc.run) {
			// The next one would find this one's database in its way.
			t.Fatalf("%s failed over TLS; stopping here", tc.name)
		}
	}
}

// openSecure opens the restricted user's database over TLS with o's
// changes applied to the working options.
func openSecure(t *testing.T, sc itest.SecureClickHouse, change func(*Options)) (*Store, error) {
	o := Options{Addr: sc.Addr, Database: sc.Database, Username: sc.Username, Password: sc.Password, TLS: sc.TLS(), DialTimeout: 5 * time.Second}
	change(&o)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	st, err := Open(ctx, o, testLogger(t))
	if st != nil {
		t.Cleanup(func() { st.Close() })
	}
	return st, err
}

// TestIntegrationSecureCredentials: a wrong password or an unknown user is
// refused at once with ErrAuth and a message naming the user, not retried
// until a timeout.
func TestIntegrationSecureCredentials(t *testing.T) {
	sc := itest.ClickHouseSecure(t)
	for _, tc := range []struct {
		name     string
		user, pw string
	}{
		{"wrong password", sc.Username, sc.Password + "x"},
		{"no password", sc.Username, ""},
		{"unknown user", "agentwatch_nobody", sc.Password},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			_, err := openSecure(t, sc, func(o *Options) { o.Username, o.Password = tc.user, tc.pw })
			took := time.Since(start)
			if !errors.Is(err, ErrAuth) {
				t.Fatalf("got %v; want ErrAuth", err)
			}
			if want := `authentication failed for user "` + tc.user + `"`; !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
			if strings.Contains(err.Error(), sc.Password) && tc.pw != "" {
				t.Errorf("error %q shows the password", err)
			}
			// Refused by the server, not by the dial timeout.
			if took >= 5*time.Second {
				t.Errorf("took %s; a refused login must not wait for the 5s dial timeout", took)
			}
			t.Logf("%s after %s: %v", tc.name, took.Round(time.Millisecond), err)
		})
	}
}

// TestIntegrationSecureCertificates: the server's certificate is checked
// against clickhouse.tls.ca_file and its name; TLS 1.3 works too.
func TestIntegrationSecureCertificates(t *testing.T) {
	sc := itest.ClickHouseSecure(t)
	for _, tc := range []struct {
		name    string
		tls     config.TLS
		wantErr error
	}{
		{"test CA, TLS 1.2", config.TLS{Enabled: true, CAFile: sc.CAFile, MinVersion: "1.2"}, nil},
		{"test CA, TLS 1.3 only", config.TLS{Enabled: true, CAFile: sc.CAFile, MinVersion: "1.3"}, nil},
		{"test CA, name localhost", config.TLS{Enabled: true, CAFile: sc.CAFile, ServerName: "localhost", MinVersion: "1.2"}, nil},
		{"another CA", config.TLS{Enabled: true, CAFile: sc.OtherCAFile, MinVersion: "1.2"}, tlsconf.ErrUntrusted},
		{"system roots", config.TLS{Enabled: true, MinVersion: "1.2"}, tlsconf.ErrUntrusted},
		{"wrong name", config.TLS{Enabled: true, CAFile: sc.CAFile, ServerName: "clickhouse.example", MinVersion: "1.2"}, tlsconf.ErrUntrusted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := openSecure(t, sc, func(o *Options) { o.TLS = tc.tls })
			if tc.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				if err := st.Ping(t.Context()); err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("got %v; want %v", err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), "clickhouse.tls.ca_file") {
				t.Errorf("error %q does not name the key to fix", err)
			}
			t.Logf("%v", err)
		})
	}
}

// TestIntegrationSecureWrongPort: TLS to the plain port and plaintext to
// the TLS port each fail within the dial timeout with an error that asks
// whether this is the secure native port.
func TestIntegrationSecureWrongPort(t *testing.T) {
	sc := itest.ClickHouseSecure(t)
	plain := testAddr(t)
	const dialTimeout = 3 * time.Second
	for _, tc := range []struct {
		name   string
		change func(*Options)
	}{
		{"tls client on the plain port", func(o *Options) { o.Addr = plain }},
		{"plain client on the tls port", func(o *Options) { o.TLS = config.TLS{} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			_, err := openSecure(t, sc, func(o *Options) { tc.change(o); o.DialTimeout = dialTimeout })
			took := time.Since(start)
			if err == nil {
				t.Fatal("connected")
			}
			if !strings.Contains(err.Error(), "is this the secure native port?") {
				t.Errorf("error %q does not ask whether this is the secure native port", err)
			}
			if errors.Is(err, ErrAuth) {
				t.Errorf("error %v claims a refused login", err)
			}
			// The dial timeout bounds the dial and the handshake; the
			// margin is for a loaded machine, not for a retry.
			if took > dialTimeout+2*time.Second {
				t.Errorf("took %s; want at most the %s dial timeout", took, dialTimeout)
			}
			t.Logf("%s after %s: %v", tc.name, took.Round(time.Millisecond), err)
		})
	}
}

// TestIntegrationSecureUserConfined: the restricted user can neither open,
// read, write, create nor drop another database; 18.16's allow_databases
// is what stops it.
func TestIntegrationSecureUserConfined(t *testing.T) {
	sc := itest.ClickHouseSecure(t)
	ctx := t.Context()
	// Another database, made by the unrestricted default user.
	other := testDatabase(t)
	admin, err := Open(ctx, Options{Addr: testAddr(t), Database: other}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	dropAtCleanup(t, admin)
	if err := admin.conn.Exec(ctx, "CREATE TABLE secrets (v String) ENGINE = MergeTree ORDER BY v"); err != nil {
		t.Fatal(err)
	}
	if err := admin.conn.Exec(ctx, "INSERT INTO secrets (v) SELECT 'kept'"); err != nil {
		t.Fatal(err)
	}

	dropSecureDatabase(t, sc)
	t.Cleanup(func() { dropSecureDatabase(t, sc) })
	if _, err := openSecure(t, sc, func(o *Options) { o.Database = other }); !errors.Is(err, ErrDatabaseDenied) {
		t.Errorf("open %s as %s: got %v; want ErrDatabaseDenied", other, sc.Username, err)
	}
	st, err := openSecure(t, sc, func(*Options) {})
	if err != nil {
		t.Fatal(err)
	}
	q := quoteIdent(other)
	for _, stmt := range []string{
		"SELECT v FROM " + q + ".secrets",
		"INSERT INTO " + q + ".secrets (v) SELECT 'planted'",
		"CREATE TABLE " + q + ".planted (v String) ENGINE = Memory",
		"ALTER TABLE " + q + ".secrets DELETE WHERE 1",
		"DROP TABLE " + q + ".secrets",
		"DROP DATABASE " + q,
		"CREATE DATABASE IF NOT EXISTS " + quoteIdent(other+"_2"),
	} {
		if err := st.conn.Exec(ctx, stmt); !isCode(err, codeDatabaseAccessDenied) {
			t.Errorf("%s as %s: got %v; want code %d (access denied)", stmt, sc.Username, err, codeDatabaseAccessDenied)
		}
	}
	var n uint64
	if err := st.conn.QueryRow(ctx, "SELECT count() FROM system.databases WHERE name = ?", other).Scan(&n); err != nil || n != 0 {
		t.Errorf("system.databases shows %s to %s: %d, %v", other, sc.Username, n, err)
	}
	var v []string
	rows, err := admin.conn.Query(ctx, "SELECT v FROM secrets")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		v = append(v, s)
	}
	if rows.Close(); len(v) != 1 || v[0] != "kept" {
		t.Errorf("the other database now holds %q; want only \"kept\"", v)
	}
}
