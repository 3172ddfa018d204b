package respctl

import (
	"errors"
	"fmt"
	"io"

	"github.com/agentwatch/agentwatch/internal/responder/evidence"
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
