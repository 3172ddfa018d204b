package chstore

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/agentwatch/agentwatch/internal/platform/config"
)

// OpenMigrated opens ClickHouse as the clickhouse.* configuration says and
// applies the migrations: what every service does first.
func OpenMigrated(ctx context.Context, c config.ClickHouse, log *slog.Logger) (*Store, error) {
	st, err := Open(ctx, Options{
		Addr: c.Addr, Database: c.Database, Username: c.Username, Password: c.Password,
		DialTimeout: c.DialTimeout, TLS: c.TLS,
	}, log)
	if err != nil {
		return nil, err // Open names the address and the fix
	}
	if err := st.Migrate(ctx); err != nil {
		_ = st.Close()
		return nil, fmt.Errorf("migrate clickhouse: %w", err)
	}
	return st, nil
}
