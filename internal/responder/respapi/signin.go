package respapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"os"
)

// Verifier checks a presented secret against the configured tokens the
// way the API checks a bearer token: the secret's SHA-256 is compared with
// every token's digest in constant time, without an early exit. The web
// console signs people in with it, so a console session is only ever
// opened by a token the API would accept. It is safe for concurrent use.
type Verifier struct {
	tokens []Token
	ps     []principal
}

// NewVerifier validates tokens as New does (the same errors, naming
// tokens[i].field); getenv reads Token.SecretEnv, nil means os.Getenv.
func NewVerifier(tokens []Token, getenv func(string) string) (*Verifier, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	ps, err := compileTokens(tokens, getenv)
	if err != nil {
		return nil, err
	}
	v := &Verifier{ps: ps, tokens: make([]Token, len(tokens))}
	for i, t := range tokens {
		// Keep the grants, never a secret or where it is.
		v.tokens[i] = Token{Name: t.Name, AllowedPlaybooks: append([]string(nil), t.AllowedPlaybooks...),
			CanReadAudit: t.CanReadAudit, CanSilence: t.CanSilence, CanReadDenylist: t.CanReadDenylist,
			CanKillSwitch: t.CanKillSwitch, CanRepairOutbox: t.CanRepairOutbox, CanReadInventory: t.CanReadInventory}
	}
	return v, nil
}

// Verify returns the token whose secret is secret, with its grants and
// without its secret fields, and true; or false when none matches.
func (v *Verifier) Verify(secret string) (Token, bool) {
	if v == nil || secret == "" {
		return Token{}, false
	}
	d := sha256.Sum256([]byte(secret))
	found := -1
	for i := range v.ps {
		eq := subtle.ConstantTimeCompare(d[:], v.ps[i].digest[:])
		found = subtle.ConstantTimeSelect(eq, i, found)
	}
	if found < 0 {
		return Token{}, false
	}
	return v.tokens[found], true
}
