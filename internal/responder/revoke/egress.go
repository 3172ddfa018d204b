package revoke

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrEgressRefused means the SSRF guard refused an outbound request: its
// address is not on the allow-list, or the server answered with a
// redirect. The error is an *EgressError. It is never retried; fix the
// URL or add the host:port to the allow-list.
var ErrEgressRefused = errors.New("outbound request refused")

// EgressError is the ErrEgressRefused the guard returns.
type EgressError struct {
	// Addr is what was refused: host:port, or the redirect's Location.
	Addr string
	// Reason is "address" or "redirect", as in the metric.
	Reason string
}

// Error implements error; it names the fix.
func (e *EgressError) Error() string {
	if e.Reason == "redirect" {
		return fmt.Sprintf("outbound request refused: redirect to %q not followed; point the URL at the final address", e.Addr)
	}
	return fmt.Sprintf("outbound request refused: %s is not on the allow-list; add its host:port to the allow-list if it is meant", e.Addr)
}

// Unwrap makes errors.Is(err, ErrEgressRefused) true.
func (e *EgressError) Unwrap() error { return ErrEgressRefused }

// EgressOptions configure NewEgress.
type EgressOptions struct {
	// Allow lists the destinations outbound requests may reach, each
	// "host:port" where host is an IP address, a CIDR prefix
	// ("10.1.0.0/16:8001", "[fd00::/8]:443") or a DNS name. A DNS name
	// allows the addresses it resolves to at the moment of each dial.
	// Every destination is checked on the address actually dialled, so a
	// URL whose name resolves (or re-binds) to an address not allowed is
	// refused. Empty allows nothing.
	Allow []string
	// Resolve looks a host up; nil uses the system resolver. Tests set
	// it to map names without DNS.
	Resolve func(ctx context.Context, host string) ([]netip.Addr, error)
	// DialTimeout bounds each connection attempt; default 5s.
	DialTimeout time.Duration
	// Metrics, if set, counts refusals.
	Metrics *Metrics
}

type allowEntry struct {
	prefix netip.Prefix // valid for IP and CIDR entries
	name   string       // lower-case DNS name otherwise
	port   uint16
}

// Egress sends outbound HTTP for the adapters (and for anyone else in the
// responder who calls a configured URL) through the SSRF guard: the
// allow-list is checked on the resolved address at dial time (and again
// on the socket's address just before connect), redirects are never
// followed, and no proxy is taken from the environment. Safe for
// concurrent use.
type Egress struct {
	allow   []allowEntry
	resolve func(ctx context.Context, host string) ([]netip.Addr, error)
	metrics *Metrics
	client  *http.Client
}

// NewEgress checks the allow-list and builds the guarded client.
func NewEgress(o EgressOptions) (*Egress, error) {
	e := &Egress{resolve: o.Resolve, metrics: o.Metrics}
	if e.resolve == nil {
		e.resolve = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
	}
	var errs []error
	for i, a := range o.Allow {
		ent, err := parseAllow(a)
		if err != nil {
			errs = append(errs, fmt.Errorf("allow[%d] %q: %w", i, a, err))
			continue
		}
		e.allow = append(e.allow, ent)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	timeout := o.DialTimeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	tr := &http.Transport{
		Proxy: nil, // never from the environment: a proxy would dial for us, unchecked
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return e.dial(ctx, network, addr, timeout)
		},
		ForceAttemptHTTP2: true,
		// As many idle connections per gateway as actions run at once
		// (the responder's gateway concurrency, 32): with Go's default
		// of 2, a burst of revocations opened and closed a connection
		// (a TLS handshake, against a real gateway) per request.
		MaxIdleConns:          64,
		MaxIdleConnsPerHost:   32,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	e.client = &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse // Do turns the 3xx into an EgressError
		},
	}
	return e, nil
}

func parseAllow(s string) (allowEntry, error) {
	host, portStr, err := net.SplitHostPort(s)
	if err != nil {
		return allowEntry{}, fmt.Errorf("want host:port: %w", err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 {
		return allowEntry{}, fmt.Errorf("port %q: want 1-65535", portStr)
	}
	ent := allowEntry{port: uint16(port)}
	switch {
	case strings.Contains(host, "/"):
		p, err := netip.ParsePrefix(host)
		if err != nil {
			return allowEntry{}, fmt.Errorf("prefix: %w", err)
		}
		ent.prefix = p.Masked()
	default:
		if ip, err := netip.ParseAddr(host); err == nil {
			ip = ip.Unmap()
			ent.prefix = netip.PrefixFrom(ip, ip.BitLen())
		} else if host == "" {
			return allowEntry{}, errors.New("empty host")
		} else {
			ent.name = strings.ToLower(strings.TrimSuffix(host, "."))
		}
	}
	return ent, nil
}

// lookup resolves host; an IP literal is itself.
func (e *Egress) lookup(ctx context.Context, host string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip}, nil
	}
	return e.resolve(ctx, host)
}

// allowed reports whether ip:port is on the allow-list. Names on the list
// are resolved now, with the same resolver.
func (e *Egress) allowed(ctx context.Context, ip netip.Addr, port uint16) bool {
	if ip.IsUnspecified() || ip.IsMulticast() {
		return false
	}
	for _, a := range e.allow {
		if a.port != port {
			continue
		}
		if a.prefix.IsValid() {
			if a.prefix.Contains(ip) {
				return true
			}
			continue
		}
		ips, err := e.lookup(ctx, a.name)
		if err != nil {
			continue
		}
		for _, x := range ips {
			if x.Unmap() == ip {
				return true
			}
		}
	}
	return false
}

func (e *Egress) refuse(addr, reason string) error {
	e.metrics.egressRefusal(reason)
	return &EgressError{Addr: addr, Reason: reason}
}

// dial resolves addr, keeps only allowed addresses and dials those by IP,
// so the address checked is the address connected to. The dialer's
// Control checks the socket's address once more before connect.
func (e *Egress) dial(ctx context.Context, network, addr string, timeout time.Duration) (net.Conn, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, e.refuse(addr, "address")
	}
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	ips, err := e.lookup(ctx, host)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", host, err)
	}
	var permitted []netip.AddrPort
	for _, ip := range ips {
		ip = ip.Unmap()
		if e.allowed(ctx, ip, uint16(port)) {
			permitted = append(permitted, netip.AddrPortFrom(ip, uint16(port)))
		}
	}
	if len(permitted) == 0 {
		return nil, e.refuse(addr, "address")
	}
	d := net.Dialer{
		Timeout: timeout,
		Control: func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil || !slices.Contains(permitted, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())) {
				return e.refuse(address, "address")
			}
			return nil
		},
	}
	var first error
	for _, ap := range permitted {
		conn, err := d.DialContext(ctx, network, ap.String())
		if err == nil {
			return conn, nil
		}
		if first == nil {
			first = err
		}
	}
	return nil, first
}

// Do sends req through the guard. A redirect answer is closed and returned
// as an *EgressError, so a caller never sees a 3xx it might follow. The
// caller closes the response body.
func (e *Egress) Do(req *http.Request) (*http.Response, error) {
	resp, err := e.client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		loc := resp.Header.Get("Location")
		resp.Body.Close()
		return nil, e.refuse(loc, "redirect")
	}
	return resp, nil
}
