package respapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
)

// Token is one configured API token: who it is (Name, the actor in audit
// records) and what it may do. The secret is given in exactly one of
// SHA256, Secret, SecretEnv and SecretFile; prefer SHA256, SecretEnv or
// SecretFile, so that the configuration file holds no usable secret.
type Token struct {
	// Name identifies the token in audit records, logs and errors:
	// letters, digits, '.', '_' and '-', at most 64 bytes, unique.
	Name string `mapstructure:"name"`
	// SHA256 is the hex SHA-256 of the secret (HashSecret, or
	// `printf %s "$SECRET" | sha256sum`).
	SHA256 string `mapstructure:"sha256"`
	// Secret is the secret itself: at least 32 bytes.
	Secret string `mapstructure:"secret"`
	// SecretEnv names an environment variable that holds the secret (at
	// least 32 bytes), read once by New.
	SecretEnv string `mapstructure:"secret_env"`
	// SecretFile names a file that holds the secret (at least 32 bytes,
	// the trailing newline trimmed), read once by New: a mounted
	// Kubernetes secret.
	SecretFile string `mapstructure:"secret_file"`
	// AllowedPlaybooks are the playbooks the token may run; "*" (alone)
	// means every playbook, empty means none.
	AllowedPlaybooks []string `mapstructure:"allowed_playbooks"`
	// CanReadAudit lets the token read GET /v1/audit.
	CanReadAudit bool `mapstructure:"can_read_audit"`
	// CanSilence lets the token list, add and expire silences
	// (/v1/silences).
	CanSilence bool `mapstructure:"can_silence"`
	// CanReadDenylist lets the token read GET /v1/denylist: give a
	// gateway a token with this alone.
	CanReadDenylist bool `mapstructure:"can_read_denylist"`
	// CanKillSwitch lets the token read and set the kill switch
	// (/v1/kill-switch).
	CanKillSwitch bool `mapstructure:"can_kill_switch"`
	// CanRepairOutbox lets the token requeue and dismiss outbox entries
	// (/v1/outbox/requeue, /v1/outbox/dismiss).
	CanRepairOutbox bool `mapstructure:"can_repair_outbox"`
	// CanReadInventory lets the token ask the visibility questions: the
	// inventory, the findings, access, an agent's or a route's profile
	// and the events (/v1/inventory/…, /v1/findings, /v1/access,
	// /v1/agents/{id}, /v1/routes, /v1/events). Each question is
	// audited under the token's name.
	CanReadInventory bool `mapstructure:"can_read_inventory"`
}

// MinSecretLen is the shortest secret New accepts, in bytes: a 32-byte
// secret from `openssl rand -hex 32` (64 characters) is well above it.
const MinSecretLen = 32

// HashSecret returns the hex SHA-256 of secret: the value for
// Token.SHA256.
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

var (
	tokenNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	// playbookRE is pkg/playbooks' rule for a playbook name.
	playbookRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)
)

// principal is a validated token: the digest of its secret and what it
// may do.
type principal struct {
	name         string
	digest       [sha256.Size]byte
	all          bool
	playbooks    []string
	canReadAudit bool
	canSilence   bool
	// canReadDenylist and canKillSwitch: Token's fields of those names.
	canReadDenylist bool
	canKillSwitch   bool
	canRepairOutbox bool
	// canReadInventory: Token.CanReadInventory.
	canReadInventory bool
}

func (p *principal) mayRun(playbook string) bool {
	return p.all || slices.Contains(p.playbooks, playbook)
}

// compileTokens validates the tokens and reports every problem at once,
// each prefixed with "tokens[i]".
func compileTokens(tokens []Token, getenv func(string) string) ([]principal, error) {
	if len(tokens) == 0 {
		return nil, errors.New("tokens: none configured, so every request would be refused; add a token or do not serve the API")
	}
	var errs []error
	out := make([]principal, 0, len(tokens))
	names := map[string]int{}
	digests := map[[sha256.Size]byte]int{}
	for i, t := range tokens {
		key := fmt.Sprintf("tokens[%d]", i)
		bad := func(field, format string, a ...any) {
			errs = append(errs, fmt.Errorf("%s.%s: %s", key, field, fmt.Sprintf(format, a...)))
		}
		p := principal{name: t.Name, canReadAudit: t.CanReadAudit, canSilence: t.CanSilence,
			canReadDenylist: t.CanReadDenylist, canKillSwitch: t.CanKillSwitch, canRepairOutbox: t.CanRepairOutbox, canReadInventory: t.CanReadInventory}
		if !tokenNameRE.MatchString(t.Name) {
			bad("name", "%.80q must be letters, digits, '.', '_' or '-', at most 64 bytes", t.Name)
		} else if j, dup := names[t.Name]; dup {
			bad("name", "%q is also tokens[%d]'s name; names must be unique", t.Name, j)
		} else {
			names[t.Name] = i
		}
		n := 0
		for _, s := range []string{t.SHA256, t.Secret, t.SecretEnv, t.SecretFile} {
			if s != "" {
				n++
			}
		}
		ok := true
		switch {
		case n != 1:
			bad("sha256", "give exactly one of sha256, secret, secret_env and secret_file (got %d)", n)
			ok = false
		case t.SHA256 != "":
			b, err := hex.DecodeString(t.SHA256)
			if err != nil || len(b) != sha256.Size {
				bad("sha256", "must be 64 hex digits (the SHA-256 of the secret, e.g. from `printf %%s \"$SECRET\" | sha256sum`)")
				ok = false
			} else {
				copy(p.digest[:], b)
			}
		case t.Secret != "":
			if len(t.Secret) < MinSecretLen {
				bad("secret", "%d bytes is too short; use at least %d, e.g. from `openssl rand -hex 32`", len(t.Secret), MinSecretLen)
				ok = false
			}
			p.digest = sha256.Sum256([]byte(t.Secret))
		case t.SecretFile != "":
			b, err := os.ReadFile(t.SecretFile)
			v := strings.TrimRight(string(b), "\r\n")
			switch {
			case err != nil:
				bad("secret_file", "cannot read the secret: %v", err)
				ok = false
			case len(v) < MinSecretLen:
				bad("secret_file", "the secret in %s is %d bytes; use at least %d, e.g. from `openssl rand -hex 32`", t.SecretFile, len(v), MinSecretLen)
				ok = false
			}
			p.digest = sha256.Sum256([]byte(v))
		default:
			v := getenv(t.SecretEnv)
			switch {
			case v == "":
				bad("secret_env", "environment variable %q is not set or empty; export it before starting the responder", t.SecretEnv)
				ok = false
			case len(v) < MinSecretLen:
				bad("secret_env", "the secret in %q is %d bytes; use at least %d, e.g. from `openssl rand -hex 32`", t.SecretEnv, len(v), MinSecretLen)
				ok = false
			}
			p.digest = sha256.Sum256([]byte(v))
		}
		if ok {
			if j, dup := digests[p.digest]; dup {
				bad("sha256", "same secret as tokens[%d]; give each token its own secret, so that the audit names the right caller", j)
			} else {
				digests[p.digest] = i
			}
		}
		for j, pb := range t.AllowedPlaybooks {
			switch {
			case pb == "*" && len(t.AllowedPlaybooks) == 1:
				p.all = true
			case pb == "*":
				bad(fmt.Sprintf("allowed_playbooks[%d]", j), `"*" must stand alone: it already allows every playbook`)
			case !playbookRE.MatchString(pb):
				bad(fmt.Sprintf("allowed_playbooks[%d]", j), "%.80q is not a playbook name (lowercase letters, digits, '-', '_')", pb)
			default:
				p.playbooks = append(p.playbooks, pb)
			}
		}
		out = append(out, p)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// Reasons a request is not authenticated, for the audit record and log;
// the client sees only "invalid_token" or nothing.
var (
	errNoToken  = errors.New("no bearer token")
	errBadToken = errors.New("unknown bearer token")
)

// authenticate finds the token the request presents. The presented secret
// is hashed and its SHA-256 compared with every configured digest by
// h.equal (crypto/subtle.ConstantTimeCompare), without an early exit, so
// neither the secret's length nor which token matched shows in the time
// taken.
func (h *Handler) authenticate(r *http.Request) (*principal, error) {
	if a, ok := r.Context().Value(authKey{}).(authResult); ok {
		return a.p, a.err // ServeHTTP has done it for the rate limit
	}
	vals := r.Header.Values("Authorization")
	if len(vals) == 0 {
		return nil, errNoToken
	}
	if len(vals) > 1 {
		return nil, errBadToken
	}
	scheme, secret, ok := strings.Cut(vals[0], " ")
	secret = strings.TrimLeft(secret, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || secret == "" {
		return nil, errNoToken
	}
	d := sha256.Sum256([]byte(secret))
	found := -1
	for i := range h.tokens {
		eq := h.equal(d[:], h.tokens[i].digest[:])
		found = subtle.ConstantTimeSelect(eq, i, found)
	}
	if found < 0 {
		return nil, errBadToken
	}
	return &h.tokens[found], nil
}

// authKey is the context key of the authentication ServeHTTP did.
type authKey struct{}

type authResult struct {
	p   *principal
	err error
}
