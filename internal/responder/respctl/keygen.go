package respctl

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/responder/evidence"
	"github.com/agentwatch/agentwatch/internal/responder/outbox"
	"github.com/agentwatch/agentwatch/internal/responder/respond"
	"github.com/agentwatch/agentwatch/internal/responder/revoke"
)

// KeygenOptions say where to write a new checkpoint key.
type KeygenOptions struct {
	// Out is the private key's file; the public key goes to Out+".pub".
	// Neither may exist.
	Out string
}

// Keygen writes a new Ed25519 checkpoint key (mode 0600) and its public
// key, and tells the operator what to do with each.
func Keygen(o KeygenOptions, w io.Writer) error {
	if o.Out == "" {
		return &UsageError{Err: errors.New("--out: the private key's file is required")}
	}
	pub, err := evidence.GenerateKey(o.Out, o.Out+".pub")
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "checkpoint key %s written: private key %s (mode 0600), public key %s.pub\n", evidence.KeyID(pub), o.Out, o.Out)
	fmt.Fprintf(w, "set responder.evidence.checkpoint_key_file: %s, and keep a copy of %s.pub off this host for `responder verify --public-key`\n", o.Out, o.Out)
	return nil
}

// LedgerKeygen writes a new age X25519 identity to o.Out (mode 0600,
// age-keygen's format, never overwriting a file): the key that encrypts
// the revocation ledger's restore material (responder.ledger_key_file).
func LedgerKeygen(o KeygenOptions, w io.Writer) (err error) {
	if o.Out == "" {
		return &UsageError{Err: errors.New("--out: the key's file is required")}
	}
	f, err := os.OpenFile(o.Out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s exists; a key is never overwritten (the ledger's records need the key they were written with)", o.Out)
	}
	if err != nil {
		return fmt.Errorf("create ledger key: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("write ledger key: %w", cerr)
		}
		if err != nil {
			os.Remove(o.Out)
		}
	}()
	rcp, err := revoke.GenerateLedgerKey(f, time.Now())
	if err != nil {
		return fmt.Errorf("write ledger key: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write ledger key: %w", err)
	}
	fmt.Fprintf(w, "ledger key written to %s (mode 0600), public key %s\n", o.Out, rcp)
	fmt.Fprintf(w, "set responder.ledger_key_file: %s, and back it up: without it the ledger's kept credentials cannot be restored\n", o.Out)
	return nil
}

// LedgerReseal encrypts, with responder.ledger_key, the Kong keys that a
// revocation ledger written before encryption holds in plain text. The
// responder must be stopped: LedgerReseal holds its outbox to be sure, and
// refuses while a responder holds it.
func LedgerReseal(cfg config.Config, w io.Writer) error {
	rc := cfg.Responder
	if rc.LedgerKey == "" {
		return &UsageError{Err: errors.New("responder.ledger_key (or responder.ledger_key_file) must be set: it is the key the ledger is resealed with")}
	}
	key, err := revoke.ParseLedgerKey(rc.LedgerKey)
	if err != nil {
		return &UsageError{Err: fmt.Errorf("responder.ledger_key: %w", err)}
	}
	ob, err := outbox.OpenFile(filepath.Join(rc.StateDir, respond.OutboxFile), outbox.FileOptions{})
	if errors.Is(err, outbox.ErrInUse) {
		return fmt.Errorf("a responder is running on %s: stop it (and any responder restore) before resealing its ledger", rc.StateDir)
	}
	if err != nil {
		return err
	}
	defer ob.Close()
	path := filepath.Join(rc.StateDir, respond.LedgerFile)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(w, "%s: no ledger, nothing to reseal\n", path)
		return nil
	}
	n, err := revoke.ResealFileLedger(path, key)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%s: %d records with a plain-text key encrypted\n", path, n)
	return nil
}
