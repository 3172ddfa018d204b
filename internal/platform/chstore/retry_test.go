package chstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2"
)

func TestRetryable(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("insert 10 rows into db.events: %w", err) }
	check := func(name string, err error, want bool) {
		t.Helper()
		if got := Retryable(err); got != want {
			t.Errorf("Retryable(%s: %v) = %v; want %v", name, err, got, want)
		}
	}
	check("nil", nil, false)
	check("canceled", wrap(context.Canceled), false)
	check("deadline", wrap(context.DeadlineExceeded), true)
	check("too many parts", wrap(&clickhouse.Exception{Code: 252, Message: "Too many parts (300)"}), true)
	check("memory", wrap(&clickhouse.Exception{Code: 241}), true)
	check("unknown table", wrap(&clickhouse.Exception{Code: 60, Message: "Table db.x doesn't exist"}), false)
	check("type mismatch", wrap(&clickhouse.Exception{Code: 53}), false)
	check("refused", wrap(&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}), true)
	check("reset", wrap(syscall.ECONNRESET), true)
	check("eof", wrap(io.EOF), true)
	check("acquire", wrap(clickhouse.ErrAcquireConnTimeout), true)
	check("plain", errors.New("insert into events: 25 column names but 24 columns"), false)
}
