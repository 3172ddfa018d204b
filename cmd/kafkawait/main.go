// Command kafkawait waits until a Kafka broker really serves clients: it
// answers a Metadata request listing at least one broker and a controller.
// A listening port is not enough, because a KRaft broker accepts connections
// before it has caught up with the metadata log and is "ready".
// deploy/kafka.sh runs it after starting the local broker.
//
// Usage: kafkawait [-brokers 127.0.0.1:9092] [-timeout 90s]
//
//	[-tls-ca ca.crt] [-sasl plain|scram-sha-256|scram-sha-512 -user NAME -password-file FILE]
//
// With -tls-ca and -sasl it checks a SASL_SSL listener, and so also that
// the user's credentials work (deploy/kafka.sh checks the test users so).
//
// Exit code 0 when ready, 1 when the deadline passed, 2 on bad flags.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
)

func main() {
	brokers := flag.String("brokers", "127.0.0.1:9092", "comma-separated broker addresses")
	timeout := flag.Duration("timeout", 90*time.Second, "give up after this long")
	quiet := flag.Bool("q", false, "print nothing on success")
	caFile := flag.String("tls-ca", "", "connect over TLS, trusting the CAs of this PEM file")
	mech := flag.String("sasl", "", "SASL mechanism: plain, scram-sha-256 or scram-sha-512")
	user := flag.String("user", "", "SASL user")
	pwFile := flag.String("password-file", "", "file holding the SASL password")
	flag.Parse()
	if *brokers == "" || *timeout <= 0 {
		fmt.Fprintln(os.Stderr, "kafkawait: -brokers must be set and -timeout positive")
		os.Exit(2)
	}
	d, err := dialer(*caFile, *mech, *user, *pwFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kafkawait:", err)
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	addrs := strings.Split(*brokers, ",")
	var last error
	for {
		n, err := probe(ctx, d, addrs)
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

// probe sends Metadata requests on a fresh connection and reports how many
// brokers they list. A fresh connection each time, because kafka-go's
// Client answers Metadata from its transport's cache, errors included.
func probe(ctx context.Context, d *kafkago.Dialer, addrs []string) (int, error) {
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	// The same dial-the-first-that-answers loop as kafka.ReadSince, kept
	// here so that this deploy helper imports nothing of ours.
	var conn *kafkago.Conn
	var err error
	for _, a := range addrs {
		if conn, err = d.DialContext(pctx, "tcp", a); err == nil {
			break
		}
	}
	if err != nil {
		return 0, fmt.Errorf("dial: %w", err)
	}
	defer conn.Close()
	dl, _ := pctx.Deadline()
	_ = conn.SetDeadline(dl)
	brokers, err := conn.Brokers()
	if err != nil {
		return 0, fmt.Errorf("metadata: %w", err)
	}
	if len(brokers) == 0 {
		return 0, errors.New("metadata lists no brokers yet")
	}
	if ctrl, err := conn.Controller(); err != nil || ctrl.Host == "" {
		return 0, fmt.Errorf("metadata names no controller yet (%v)", err)
	}
	// The advertised listener must be reachable too, or every client
	// would fail after bootstrap even though the probe succeeded.
	for _, b := range brokers {
		c, err := (&net.Dialer{Timeout: 2 * time.Second}).DialContext(pctx, "tcp", net.JoinHostPort(b.Host, strconv.Itoa(b.Port)))
		if err != nil {
			return 0, fmt.Errorf("advertised broker %d at %s:%d: %w", b.ID, b.Host, b.Port, err)
		}
		_ = c.Close()
	}
	return len(brokers), nil
}

// dialer builds the Dialer of the flags. internal/platform/kafka does the
// same from a config file; this helper stays free of our packages.
func dialer(caFile, mech, user, pwFile string) (*kafkago.Dialer, error) {
	d := &kafkago.Dialer{ClientID: "agentwatch-kafkawait", Timeout: 2 * time.Second}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-tls-ca %s holds no PEM certificate", caFile)
		}
		d.TLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	if mech == "" {
		return d, nil
	}
	b, err := os.ReadFile(pwFile)
	if err != nil {
		return nil, fmt.Errorf("-password-file: %w", err)
	}
	pw := strings.TrimRight(string(b), "\r\n")
	switch mech {
	case "plain":
		d.SASLMechanism = plain.Mechanism{Username: user, Password: pw}
	case "scram-sha-256", "scram-sha-512":
		algo := scram.SHA256
		if mech == "scram-sha-512" {
			algo = scram.SHA512
		}
		if d.SASLMechanism, err = scram.Mechanism(algo, user, pw); err != nil {
			return nil, fmt.Errorf("-sasl %s: %w", mech, err)
		}
	default:
		return nil, fmt.Errorf("-sasl: want plain, scram-sha-256 or scram-sha-512, got %q", mech)
	}
	return d, nil
}
