// Command kafkawait waits until a Kafka broker really serves clients: it
// answers a Metadata request listing at least one broker and a controller.
// A listening port is not enough, because a KRaft broker accepts connections
// before it has caught up with the metadata log and is "ready".
// deploy/kafka.sh runs it after starting the local broker.
//
// Usage: kafkawait [-brokers 127.0.0.1:9092] [-timeout 90s]
//
// Exit code 0 when ready, 1 when the deadline passed, 2 on bad flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	kafkago "github.com/segmentio/kafka-go"
)

func main() {
	brokers := flag.String("brokers", "127.0.0.1:9092", "comma-separated broker addresses")
	timeout := flag.Duration("timeout", 90*time.Second, "give up after this long")
	quiet := flag.Bool("q", false, "print nothing on success")
	flag.Parse()
	if *brokers == "" || *timeout <= 0 {
		fmt.Fprintln(os.Stderr, "kafkawait: -brokers must be set and -timeout positive")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	addrs := strings.Split(*brokers, ",")
	var last error
	for {
		n, err := probe(ctx, addrs)
		if err == nil {
			if !*quiet {
				fmt.Printf("kafkawait: %s ready, %d broker(s) in metadata\n", *brokers, n)
			}
			return
		}
		last = err
		select {
		case <-ctx.Done():
			fmt.Fprintf(os.Stderr, "kafkawait: %s not ready after %s: %v\n", *brokers, *timeout, last)
			os.Exit(1)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// probe sends one Metadata request and reports how many brokers it lists.
func probe(ctx context.Context, addrs []string) (int, error) {
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	c := &kafkago.Client{Addr: kafkago.TCP(addrs...), Timeout: 3 * time.Second}
	md, err := c.Metadata(pctx, &kafkago.MetadataRequest{})
	if err != nil {
		return 0, fmt.Errorf("metadata: %w", err)
	}
	if len(md.Brokers) == 0 {
		return 0, errors.New("metadata lists no brokers yet")
	}
	if md.Controller.Host == "" {
		return 0, errors.New("metadata names no controller yet")
	}
	// The advertised listener must be reachable too, or every client
	// would fail after bootstrap even though the probe succeeded.
	for _, b := range md.Brokers {
		conn, err := (&net.Dialer{Timeout: 2 * time.Second}).DialContext(pctx, "tcp", net.JoinHostPort(b.Host, fmt.Sprint(b.Port)))
		if err != nil {
			return 0, fmt.Errorf("advertised broker %d at %s:%d: %w", b.ID, b.Host, b.Port, err)
		}
		_ = conn.Close()
	}
	return len(md.Brokers), nil
}
