package kafka

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"syscall"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"

	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/platform/tlsconf"
)

// Security is how a client reaches the brokers: TLS or not, SASL or not.
// The zero value is plaintext and unauthenticated, the PLAINTEXT listener
// of a development broker. Every client this package opens (readers,
// groups, writers, topic creation, ReadSince, Check) takes one, so a
// secured cluster is secured for all of them at once. A Security is
// immutable once built and safe to share between goroutines and clients.
//
// It holds the SASL password: never log it with %v; its LogValue prints
// only the mechanism and whether TLS is on.
type Security struct {
	// TLS, when set, wraps every connection in TLS with this config.
	TLS *tls.Config
	// SASL, when set, authenticates every connection with this mechanism
	// (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512).
	SASL sasl.Mechanism
}

// NewSecurity builds the Security of a kafka.tls and a kafka.sasl
// section, as config.Validate has checked them.
func NewSecurity(t config.TLS, s config.SASL) (Security, error) {
	tc, err := tlsconf.Client(t, "kafka")
	if err != nil {
		return Security{}, err
	}
	sec := Security{TLS: tc}
	switch s.Mechanism {
	case "", "none":
	case "plain":
		sec.SASL = plain.Mechanism{Username: s.Username, Password: s.Password}
	case "scram-sha-256", "scram-sha-512":
		algo := scram.SHA256
		if s.Mechanism == "scram-sha-512" {
			algo = scram.SHA512
		}
		m, err := scram.Mechanism(algo, s.Username, s.Password)
		if err != nil {
			// xdg-go/scram refuses a name or password SASLprep cannot
			// normalise; its message names neither.
			return Security{}, fmt.Errorf("kafka sasl %s: %w", s.Mechanism, err)
		}
		sec.SASL = m
	default:
		return Security{}, fmt.Errorf("kafka sasl: unknown mechanism %q; want none, plain, scram-sha-256 or scram-sha-512", s.Mechanism)
	}
	return sec, nil
}

// SecurityOf is NewSecurity of a whole configuration's kafka section.
func SecurityOf(k config.Kafka) (Security, error) { return NewSecurity(k.TLS, k.SASL) }

// Protocol names the broker listener kind this Security speaks to, in
// Kafka's terms: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.
func (s Security) Protocol() string {
	switch {
	case s.TLS != nil && s.SASL != nil:
		return "SASL_SSL"
	case s.TLS != nil:
		return "SSL"
	case s.SASL != nil:
		return "SASL_PLAINTEXT"
	}
	return "PLAINTEXT"
}

// Mechanism is the SASL mechanism's name, or "none".
func (s Security) Mechanism() string {
	if s.SASL == nil {
		return "none"
	}
	return s.SASL.Name()
}

// LogValue implements slog.LogValuer: the protocol and the mechanism,
// never the credentials.
func (s Security) LogValue() slog.Value {
	return slog.GroupValue(slog.String("protocol", s.Protocol()), slog.String("sasl", s.Mechanism()))
}

// String implements fmt.Stringer for the same reason as LogValue.
func (s Security) String() string { return s.Protocol() + "/" + s.Mechanism() }

// dialer is the one place every kafka-go Dialer of this package is made.
func (s Security) dialer(timeout time.Duration) *kafkago.Dialer {
	return &kafkago.Dialer{ClientID: clientID, Timeout: timeout, DualStack: true, TLS: s.TLS, SASLMechanism: s.SASL}
}

// transport is the one place every kafka-go Transport of this package is
// made; the caller owns it and must CloseIdleConnections.
func (s Security) transport(dialTimeout, metadataTTL time.Duration) *kafkago.Transport {
	return &kafkago.Transport{ClientID: clientID, DialTimeout: dialTimeout, MetadataTTL: metadataTTL, TLS: s.TLS, SASL: s.SASL}
}

// Client returns a kafka-go Client for admin requests (tests delete
// topics and read group offsets with it) and its transport, which the
// caller must CloseIdleConnections when done.
func (s Security) Client(brokers []string, timeout time.Duration) (*kafkago.Client, *kafkago.Transport) {
	tr := s.transport(timeout, 0)
	return &kafkago.Client{Addr: kafkago.TCP(brokers...), Transport: tr, Timeout: timeout}, tr
}

// Dialer returns a kafka-go Dialer with this Security, for callers outside
// this package that need a raw connection (cmd/kafkawait does not import
// us; tests do).
func (s Security) Dialer(timeout time.Duration) *kafkago.Dialer { return s.dialer(timeout) }

// The failures Check tells apart. Each message says what to fix.
var (
	// ErrAuthFailed means the broker refused the SASL user name or
	// password (or the user has no credential for that mechanism).
	ErrAuthFailed = errors.New("SASL authentication failed: check kafka.sasl.username, kafka.sasl.password and kafka.sasl.mechanism against the broker's users")
	// ErrMechanism means the listener does not enable the mechanism.
	ErrMechanism = errors.New("the broker listener does not enable this SASL mechanism (sasl.enabled.mechanisms)")
	// ErrNoAnswer means the broker accepted the connection but never
	// answered, which is what a plaintext client sees on a TLS listener.
	ErrNoAnswer = errors.New("the broker did not answer: is this the TLS/SASL listener? (set kafka.tls.enabled and kafka.sasl to match it)")
	// ErrSASLRequired means the listener wants SASL and the client sent
	// none: the broker drops a request it gets before authentication.
	ErrSASLRequired = errors.New("the broker closed the connection: is this a SASL listener? (set kafka.sasl, or use the listener for your protocol)")
)

// DefaultCheckTimeout bounds Check when ctx has no earlier deadline.
const DefaultCheckTimeout = 10 * time.Second

// Check connects to the first of brokers that answers, with sec, and
// reads the cluster metadata: the TCP connection, the TLS handshake, the
// SASL exchange and one request, each bounded by ctx or
// DefaultCheckTimeout. Services call it once at start, because kafka-go's
// readers and writers retry a refused handshake for ever, logging only;
// Check turns that into one error that says which mistake it is: a wrong
// password (ErrAuthFailed), an untrusted certificate
// (tlsconf.ErrUntrusted), a TLS client on a plaintext port
// (tlsconf.ErrNotTLS), a plaintext client on a TLS port (ErrNoAnswer or
// tlsconf.ErrPlaintextToTLS) or an unreachable broker.
func Check(ctx context.Context, brokers []string, sec Security) error {
	if len(brokers) == 0 {
		return errors.New("kafka check: need at least one broker")
	}
	ctx, cancel := context.WithTimeout(ctx, DefaultCheckTimeout)
	defer cancel()
	var errs []error
	for _, b := range brokers {
		err := checkOne(ctx, b, sec)
		if err == nil {
			return nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return fmt.Errorf("kafka check (%s): %w", sec, errors.Join(errs...))
}

func checkOne(ctx context.Context, broker string, sec Security) error {
	d := sec.dialer(0)
	deadline, _ := ctx.Deadline()
	// kafka-go bounds the TCP dial and the TLS handshake by ctx but runs
	// the SASL exchange on the bare connection and resets its deadlines:
	// without closing it when ctx ends, a listener that never answers
	// would hang the check for ever.
	d.DialFunc = func(dctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(dctx, network, addr)
		if err == nil {
			context.AfterFunc(ctx, func() { c.Close() })
		}
		return c, err
	}
	conn, err := d.DialContext(ctx, "tcp", broker)
	if err == nil {
		_ = conn.SetDeadline(deadline)
		_, err = conn.Brokers()
		conn.Close()
	}
	if err != nil {
		return fmt.Errorf("%s: %w", broker, explain(err, ctx.Err() != nil, sec))
	}
	return nil
}

// explain classifies a failed connection or request of a client with sec.
// timedOut says the check's deadline cut it short.
func explain(err error, timedOut bool, sec Security) error {
	var ne net.Error
	switch {
	case errors.Is(err, kafkago.SASLAuthenticationFailed):
		return fmt.Errorf("%w: %v", ErrAuthFailed, err)
	case errors.Is(err, kafkago.UnsupportedSASLMechanism):
		return fmt.Errorf("%w: %s: %v", ErrMechanism, sec.Mechanism(), err)
	case timedOut, errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		if sec.TLS == nil {
			return fmt.Errorf("%w: %v", ErrNoAnswer, err)
		}
		return fmt.Errorf("no answer to the TLS handshake or the first request in time; check the address and that the broker is up: %w", err)
	}
	if e := tlsconf.Explain(err, sec.TLS != nil, "kafka"); e != err {
		if errors.Is(e, tlsconf.ErrPlaintextToTLS) {
			return fmt.Errorf("%w; is this the TLS/SASL listener? (set kafka.tls.enabled and kafka.sasl to match it)", e)
		}
		return e
	}
	closed := errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
	switch {
	case closed && sec.TLS != nil:
		// A Kafka plaintext listener reads a TLS ClientHello as a request
		// of absurd size and drops the connection without a word.
		return fmt.Errorf("kafka: %w (closed during the TLS handshake): %v", tlsconf.ErrNotTLS, err)
	case closed && sec.SASL == nil:
		return fmt.Errorf("%w: %v", ErrSASLRequired, err)
	}
	return err
}

// Connect builds the Security of a configuration's kafka section and
// proves it with Check, so that a service exits at start with an error
// naming the mistake instead of retrying in the background for ever. It
// warns when SASL runs without TLS, which sends a PLAIN password in clear.
func Connect(ctx context.Context, k config.Kafka, log *slog.Logger) (Security, error) {
	sec, err := SecurityOf(k)
	if err != nil {
		return Security{}, err
	}
	log = orDiscard(log)
	if sec.SASL != nil && sec.TLS == nil {
		log.Warn("kafka SASL without TLS: credentials and data cross the network unencrypted; set kafka.tls.enabled and use the broker's SASL_SSL listener",
			"sasl", sec.Mechanism())
	}
	if err := Check(ctx, k.Brokers, sec); err != nil {
		return Security{}, err
	}
	log.Info("kafka reachable", "brokers", k.Brokers, "security", sec)
	return sec, nil
}
