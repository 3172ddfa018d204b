package evidence

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
)

// A Checkpoint is a signed statement "the evidence chain's record at Seq
// has manifest hash HeadSHA256", made at AtMs with an Ed25519 key. It is
// kept outside the bundle directory and the chain (in the audit trail, and
// its short reference in the incident's alert), so that whoever can
// rewrite the bundles and the chain still cannot cut the chain back or
// rewrite it up to Seq unseen: they would need the private key.
type Checkpoint struct {
	Seq        int64
	HeadSHA256 string
	AtMs       int64
	// KeyID names the signing key: KeyID of its public key.
	KeyID string
	// Sig is the Ed25519 signature of SignedMessage.
	Sig []byte
}

// checkpointPrefix starts a checkpoint's text form (Checkpoint.String).
const checkpointPrefix = "checkpoint v1 "

// SignedMessage is what the key signs: a version tag, so that a signature
// made for anything else never passes for a checkpoint, and the three
// facts.
func (c Checkpoint) SignedMessage() []byte {
	return fmt.Appendf(nil, "agentwatch evidence checkpoint v1\nseq %d\nhead %s\nat_ms %d\n", c.Seq, c.HeadSHA256, c.AtMs)
}

// String is the checkpoint's text form, as the audit trail keeps it in a
// record's detail: one line of space-separated key=value fields.
func (c Checkpoint) String() string {
	return fmt.Sprintf("%sseq=%d head=%s at_ms=%d key=%s sig=%s", checkpointPrefix, c.Seq, c.HeadSHA256, c.AtMs, c.KeyID,
		base64.RawStdEncoding.EncodeToString(c.Sig))
}

// Ref is the short reference posted with an incident: enough for a person
// to compare with `responder verify`'s output, small enough for a Slack
// field.
func (c Checkpoint) Ref() string {
	return fmt.Sprintf("checkpoint seq %d %s key %s", c.Seq, c.HeadSHA256[:12], c.KeyID)
}

// ParseCheckpoint decodes Checkpoint.String's form: exactly its fields in
// its order, seq at least 1, a 64-digit hash, a positive time, a 16-digit
// key id and a 64-byte signature. It checks no signature (Verify does).
func ParseCheckpoint(s string) (Checkpoint, error) {
	rest, ok := strings.CutPrefix(s, checkpointPrefix)
	if !ok {
		return Checkpoint{}, fmt.Errorf("checkpoint: want text starting %q", checkpointPrefix)
	}
	fields := strings.Split(rest, " ")
	keys := []string{"seq", "head", "at_ms", "key", "sig"}
	if len(fields) != len(keys) {
		return Checkpoint{}, fmt.Errorf("checkpoint: want %d fields (%s), got %d", len(keys), strings.Join(keys, " "), len(fields))
	}
	vals := make([]string, len(keys))
	for i, f := range fields {
		k, v, ok := strings.Cut(f, "=")
		if !ok || k != keys[i] {
			return Checkpoint{}, fmt.Errorf("checkpoint: field %d: want %s=…, got %q", i+1, keys[i], clip(f, 80))
		}
		vals[i] = v
	}
	var c Checkpoint
	var errs []error
	var err error
	if c.Seq, err = strconv.ParseInt(vals[0], 10, 64); err != nil || c.Seq < 1 || vals[0] != strconv.FormatInt(c.Seq, 10) {
		errs = append(errs, fmt.Errorf("seq: want a positive integer, got %q", clip(vals[0], 40)))
	}
	if c.HeadSHA256 = vals[1]; !isHash(c.HeadSHA256) {
		errs = append(errs, fmt.Errorf("head: want 64 lowercase hex digits, got %q", clip(vals[1], 80)))
	}
	if c.AtMs, err = strconv.ParseInt(vals[2], 10, 64); err != nil || c.AtMs < 1 || vals[2] != strconv.FormatInt(c.AtMs, 10) {
		errs = append(errs, fmt.Errorf("at_ms: want a positive integer, got %q", clip(vals[2], 40)))
	}
	if c.KeyID = vals[3]; len(c.KeyID) != 16 || !isLowerHex(c.KeyID) {
		errs = append(errs, fmt.Errorf("key: want 16 lowercase hex digits, got %q", clip(vals[3], 40)))
	}
	if c.Sig, err = base64.RawStdEncoding.Strict().DecodeString(vals[4]); err != nil || len(c.Sig) != ed25519.SignatureSize {
		errs = append(errs, fmt.Errorf("sig: want %d bytes in unpadded base64, got %q", ed25519.SignatureSize, clip(vals[4], 100)))
	}
	if err := errors.Join(errs...); err != nil {
		return Checkpoint{}, fmt.Errorf("checkpoint: %w", err)
	}
	return c, nil
}

func isLowerHex(s string) bool {
	for i := range len(s) {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// SignCheckpoint signs (seq, head, at) with key.
func SignCheckpoint(key ed25519.PrivateKey, seq int64, head string, at time.Time) Checkpoint {
	c := Checkpoint{Seq: seq, HeadSHA256: head, AtMs: at.UnixMilli(), KeyID: KeyID(key.Public().(ed25519.PublicKey))}
	c.Sig = ed25519.Sign(key, c.SignedMessage())
	return c
}

// Verify reports whether pub made c's signature over c's fields. A
// checkpoint signed by another key, or changed after signing, fails.
func (c Checkpoint) Verify(pub ed25519.PublicKey) error {
	if id := KeyID(pub); c.KeyID != id {
		return fmt.Errorf("signed by key %s, not by the verifying key %s: the checkpoint key was replaced, or verify was given the wrong public key", c.KeyID, id)
	}
	if !ed25519.Verify(pub, c.SignedMessage(), c.Sig) {
		return fmt.Errorf("the signature of key %s does not match its fields: the checkpoint was altered after signing", c.KeyID)
	}
	return nil
}

// KeyID names a public key: the first 8 bytes of its SHA-256, in hex.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// PEM block types of the key files: PKCS #8 and PKIX, as `openssl genpkey
// -algorithm ed25519` and `openssl pkey -pubout` write them.
const (
	pemPrivate = "PRIVATE KEY"
	pemPublic  = "PUBLIC KEY"
)

// GenerateKey writes a new Ed25519 checkpoint key to path (mode 0600,
// which must not exist) and its public key to pubPath (mode 0644, which
// must not exist either), both PEM. It returns the public key.
func GenerateKey(path, pubPath string) (ed25519.PublicKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate checkpoint key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("encode checkpoint key: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("encode checkpoint public key: %w", err)
	}
	if err := writeNew(path, pem.EncodeToMemory(&pem.Block{Type: pemPrivate, Bytes: der}), 0o600); err != nil {
		return nil, err
	}
	if err := writeNew(pubPath, pem.EncodeToMemory(&pem.Block{Type: pemPublic, Bytes: pubDER}), 0o644); err != nil {
		return nil, err
	}
	return pub, nil
}

// writeNew writes b to a file that must not exist yet, so that a key is
// never overwritten by mistake.
func writeNew(path string, b []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("write key: %w (keys are never overwritten: move the old one away first)", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write key %s: %w", path, err)
	}
	return nil
}

// LoadPrivateKey reads an Ed25519 private key in PEM (PKCS #8) from path.
// The file must be readable by its owner only: a key file with any group
// or other permission is refused, as anyone who can read it can forge
// checkpoints.
func LoadPrivateKey(path string) (ed25519.PrivateKey, error) {
	b, err := readKeyFile(path, true)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	return parseKey[ed25519.PrivateKey]("checkpoint key", path, blk, pemPrivate,
		"agentwatch responder keygen, or openssl genpkey -algorithm ed25519", x509.ParsePKCS8PrivateKey)
}

// LoadPublicKey reads an Ed25519 public key in PEM (PKIX) from path, or
// derives it from a private key file (then held to LoadPrivateKey's mode
// rule).
func LoadPublicKey(path string) (ed25519.PublicKey, error) {
	b, err := readKeyFile(path, false)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk != nil && blk.Type == pemPrivate {
		priv, err := LoadPrivateKey(path)
		if err != nil {
			return nil, err
		}
		return priv.Public().(ed25519.PublicKey), nil
	}
	return parseKey[ed25519.PublicKey]("public key", path, blk, pemPublic,
		"the .pub file keygen wrote, or openssl pkey -pubout", x509.ParsePKIXPublicKey)
}

// parseKey is the part LoadPrivateKey and LoadPublicKey share: blk must be
// a PEM block of type typ (hint says where to get one) holding, as parse
// decodes it, an Ed25519 key of type K. Errors start with what and path.
func parseKey[K ed25519.PrivateKey | ed25519.PublicKey](what, path string, blk *pem.Block, typ, hint string, parse func([]byte) (any, error)) (K, error) {
	if blk == nil || blk.Type != typ {
		return nil, fmt.Errorf("%s %s: want a PEM %q block (%s)", what, path, typ, hint)
	}
	k, err := parse(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, path, err)
	}
	key, ok := k.(K)
	if !ok {
		return nil, fmt.Errorf("%s %s: a %T, want an Ed25519 key", what, path, k)
	}
	return key, nil
}

// maxKeyFile bounds what is read as a key file.
const maxKeyFile = 64 << 10

func readKeyFile(path string, private bool) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	if !fi.Mode().IsRegular() || fi.Size() > maxKeyFile {
		return nil, fmt.Errorf("key file %s: not a regular file of at most %d bytes", path, maxKeyFile)
	}
	if private && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("checkpoint key %s has mode %04o: group or others may use it, so anyone could forge checkpoints; run `chmod 600 %s`", path, fi.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	return b, nil
}

// Metrics are the evidence metrics an operator watches: checkpoints and
// bundle modes.
type Metrics struct {
	Checkpoints *prometheus.CounterVec
	Seq         prometheus.Gauge
	Time        prometheus.Gauge
	// OpenModePaths is what OpenModes found at start.
	OpenModePaths prometheus.Gauge
}

// NewMetrics registers the evidence metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	return &Metrics{
		Checkpoints: f.NewCounterVec(prometheus.CounterOpts{Namespace: "agentwatch", Subsystem: "responder", Name: "evidence_checkpoints_total",
			Help: "Signed checkpoints of the evidence chain's head, by outcome (ok, failed)."}, []string{"outcome"}),
		Seq: f.NewGauge(prometheus.GaugeOpts{Namespace: "agentwatch", Subsystem: "responder", Name: "evidence_checkpoint_seq",
			Help: "Chain position of the latest signed checkpoint."}),
		Time: f.NewGauge(prometheus.GaugeOpts{Namespace: "agentwatch", Subsystem: "responder", Name: "evidence_checkpoint_timestamp_seconds",
			Help: "When the latest signed checkpoint was made, in Unix seconds; alert if it lags while bundles are written."}),
		OpenModePaths: f.NewGauge(prometheus.GaugeOpts{Namespace: "agentwatch", Subsystem: "responder", Name: "evidence_open_mode_paths",
			Help: "Paths under the evidence root that other users may read, found at start; should be 0 (chmod -R go-rwx the root)."}),
	}
}

// CheckpointerOptions configure a Checkpointer.
type CheckpointerOptions struct {
	Chain ChainStore
	// Audit is where checkpoints are recorded (the audit table, or the
	// audit file in the embedded mode).
	Audit audit.Store
	Key   ed25519.PrivateKey
	// Every is how many new records make AfterAppend sign at once; 1
	// anchors every bundle before its alert is posted.
	Every int64
	// Interval is how often Run signs the head if it moved; 0 means
	// never on a timer.
	Interval time.Duration
	Now      func() time.Time
	Log      *slog.Logger
	Metrics  *Metrics
}

// A Checkpointer signs the evidence chain's head and records the
// checkpoint in the audit trail: at start, every Interval, after every
// Every appended records, and at shutdown. Safe for concurrent use.
type Checkpointer struct {
	o CheckpointerOptions

	mu   sync.Mutex // held while signing and recording, so checkpoints go in order
	last Checkpoint
}

// NewCheckpointer checks o and returns a Checkpointer.
func NewCheckpointer(o CheckpointerOptions) (*Checkpointer, error) {
	if o.Chain == nil || o.Audit == nil || len(o.Key) != ed25519.PrivateKeySize {
		return nil, errors.New("checkpointer: a chain, an audit store and an Ed25519 key are required")
	}
	if o.Every < 1 {
		o.Every = 1
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(prometheus.NewRegistry())
	}
	return &Checkpointer{o: o}, nil
}

// Latest returns the last checkpoint this Checkpointer recorded; ok is
// false before the first.
func (c *Checkpointer) Latest() (cp Checkpoint, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last, c.last.Seq > 0
}

// Checkpoint signs the chain's head and records it, unless the last
// checkpoint already covers it or the chain is empty. It returns the
// latest checkpoint (ok false if there is none).
func (c *Checkpointer) Checkpoint(ctx context.Context) (Checkpoint, bool, error) {
	return c.checkpoint(ctx, 1)
}

// AfterAppend is called after a record was appended: it signs the head if
// Every records were appended since the last checkpoint, and returns the
// latest checkpoint, which covers the new record when Every is 1.
func (c *Checkpointer) AfterAppend(ctx context.Context) (Checkpoint, bool, error) {
	return c.checkpoint(ctx, c.o.Every)
}

func (c *Checkpointer) checkpoint(ctx context.Context, every int64) (Checkpoint, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	head, seq, err := c.o.Chain.Head(ctx)
	if err != nil {
		return c.last, c.last.Seq > 0, fmt.Errorf("checkpoint: read the evidence chain head: %w", err)
	}
	if seq == 0 || seq-c.last.Seq < every {
		return c.last, c.last.Seq > 0, nil
	}
	cp := SignCheckpoint(c.o.Key, seq, head, c.o.Now())
	rec := audit.Record{AtMs: cp.AtMs, Actor: audit.Actor{Kind: audit.ActorAutomatic}, Action: audit.ActionCheckpoint,
		Why: "anchor the evidence chain's head outside the bundle directory", Result: audit.ResultOK, Detail: cp.String()}
	rec.ID = rec.ContentID()
	if err := c.o.Audit.Append(ctx, rec); err != nil {
		c.o.Metrics.Checkpoints.WithLabelValues("failed").Inc()
		return c.last, c.last.Seq > 0, fmt.Errorf("checkpoint seq %d: record in the audit trail: %w", seq, err)
	}
	c.last = cp
	c.o.Metrics.Checkpoints.WithLabelValues("ok").Inc()
	c.o.Metrics.Seq.Set(float64(cp.Seq))
	c.o.Metrics.Time.Set(float64(cp.AtMs) / 1000)
	c.o.Log.Info("evidence checkpoint", "seq", cp.Seq, "head", cp.HeadSHA256, "key", cp.KeyID)
	return cp, true, nil
}

// shutdownTimeout bounds the checkpoint Run makes when it stops.
const shutdownTimeout = 10 * time.Second

// Run signs the head at start, every Interval, and once more when ctx
// ends, so that a clean shutdown leaves the whole chain anchored. A
// failure is counted, logged and retried at the next tick: the chain is
// no less safe than without checkpoints meanwhile. It returns nil.
func (c *Checkpointer) Run(ctx context.Context) error {
	log := func(err error) {
		if err != nil {
			c.o.Log.Warn("evidence checkpoint failed; retrying at the next tick", "err", err)
		}
	}
	_, _, err := c.Checkpoint(ctx)
	log(err)
	var tick <-chan time.Time
	if c.o.Interval > 0 {
		t := time.NewTicker(c.o.Interval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
			_, _, err := c.Checkpoint(sctx)
			cancel()
			if err != nil {
				c.o.Log.Error("evidence checkpoint at shutdown failed: the newest bundles are anchored only by the audit rows", "err", err)
			}
			return nil
		case <-tick:
			_, _, err := c.Checkpoint(ctx)
			log(err)
		}
	}
}
