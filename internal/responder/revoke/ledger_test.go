package revoke

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
)

const kongKey = "kong-key-7f3a9c1e-very-secret"

// revokeThroughKong revokes cred-1 of consumer bot through a fake Kong
// holding kongKey, with a ledger at path opened with o.
func revokeThroughKong(t *testing.T, path string, o LedgerOptions) (*fakeKong, *Guard, *FileLedger) {
	t.Helper()
	env := newEnv(t)
	l, err := OpenFileLedgerWith(path, o)
	if err != nil {
		t.Fatal(err)
	}
	env.ledger = l
	fk := newFakeKong(t)
	fk.add("bot", "cred-1", kongKey, "team-a")
	g := env.guard(t, env.kong(t, fk), nil, nil)
	if res, err := g.Revoke(t.Context(), manual("cred-1", "bot", "inc-1")); err != nil || res.Status != StatusRevoked {
		t.Fatalf("Revoke = %+v, %v", res, err)
	}
	return fk, g, l
}

// holdsPlain reports whether the ledger file's bytes hold secret in plain
// text: as is, or inside a line's saved field (JSON base64 of the kept
// bytes, which a grep of the file would not find).
func holdsPlain(t *testing.T, raw []byte, secret string) bool {
	t.Helper()
	if bytes.Contains(raw, []byte(secret)) {
		return true
	}
	for _, line := range bytes.Split(raw, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var d struct {
			Saved []byte `json:"saved"`
		}
		if err := json.Unmarshal(line, &d); err != nil {
			t.Fatalf("ledger line %q: %v", line, err)
		}
		if bytes.Contains(d.Saved, []byte(secret)) {
			return true
		}
	}
	return false
}

func newKey(t *testing.T) *age.X25519Identity {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// The kept Kong key is encrypted: the file never holds it, a reopened
// ledger with the key gives it back, and Restore re-creates the same key.
func TestLedgerEncryptsRestoreMaterial(t *testing.T) {
	key := newKey(t)
	path := filepath.Join(t.TempDir(), "revocations.jsonl")
	fk, _, _ := revokeThroughKong(t, path, LedgerOptions{Key: key})

	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if holdsPlain(t, raw, kongKey) {
		t.Fatalf("the ledger file holds the Kong key in plain text:\n%s", raw)
	}
	if !bytes.Contains(raw, []byte(`"saved_age":`)) {
		t.Fatalf("no encrypted material in the ledger:\n%s", raw)
	}

	// A second process (responder restore) with the same key.
	l2, err := OpenFileLedgerWith(path, LedgerOptions{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	rec, found, err := l2.Get(t.Context(), Key{Adapter: "kong", CredentialID: "cred-1", IncidentID: "inc-1"})
	if err != nil || !found || !bytes.Contains(rec.Saved, []byte(kongKey)) {
		t.Fatalf("Get = %+v, %v, %v; want the kept credential decrypted", rec, found, err)
	}
	env := newEnv(t)
	env.ledger = l2
	g2 := env.guard(t, env.kong(t, fk), nil, nil)
	if res, err := g2.Restore(t.Context(), manual("cred-1", "bot", "inc-1")); err != nil || res.Status != StatusRestored {
		t.Fatalf("Restore = %+v, %v", res, err)
	}
	if c, ok := fk.has("cred-1"); !ok || c.Key != kongKey {
		t.Fatalf("kong has %+v, %v after restore; want the same key", c, ok)
	}
	if enc, undec, plain, err := l2.Sealed(t.Context()); err != nil || enc != 1 || undec != 0 || plain != 0 {
		t.Fatalf("Sealed = %d, %d, %d, %v; want 1 encrypted, 0 undecryptable, 0 plain", enc, undec, plain, err)
	}
	raw, _ = os.ReadFile(path)
	if holdsPlain(t, raw, kongKey) {
		t.Fatal("the restore wrote the key in plain text")
	}
}

func TestLedgerWrongOrMissingKeyIsAClearError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "revocations.jsonl")
	revokeThroughKong(t, path, LedgerOptions{Key: newKey(t)})
	k := Key{Adapter: "kong", CredentialID: "cred-1", IncidentID: "inc-1"}
	for name, o := range map[string]LedgerOptions{"wrong key": {Key: newKey(t)}, "no key": {}} {
		t.Run(name, func(t *testing.T) {
			l, err := OpenFileLedgerWith(path, o)
			if err != nil {
				t.Fatalf("open: %v; a key problem must not stop the whole ledger", err)
			}
			_, _, err = l.Get(t.Context(), k)
			if !errors.Is(err, ErrLedgerKey) || !strings.Contains(err.Error(), "responder.ledger_key") || !strings.Contains(err.Error(), "cred-1") {
				t.Fatalf("Get = %v; want ErrLedgerKey naming responder.ledger_key and the credential", err)
			}
			if _, undec, _, err := l.Sealed(t.Context()); err != nil || undec != 1 {
				t.Fatalf("Sealed: %d undecryptable, %v; want 1", undec, err)
			}
			// Other records are unaffected.
			if _, found, err := l.Get(t.Context(), Key{Adapter: "kong", CredentialID: "other", IncidentID: "inc-1"}); err != nil || found {
				t.Fatalf("Get of another key = %v, %v", found, err)
			}
		})
	}
}

// Without a key the credential is not kept at all: revocation works,
// restore says to issue a new key by hand.
func TestLedgerWithoutKeyWithholdsRestoreMaterial(t *testing.T) {
	path := filepath.Join(t.TempDir(), "revocations.jsonl")
	fk, g, l := revokeThroughKong(t, path, LedgerOptions{})
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if holdsPlain(t, raw, kongKey) || bytes.Contains(raw, []byte(`"saved"`)) || !bytes.Contains(raw, []byte(`"saved_withheld":true`)) {
		t.Fatalf("ledger without a key:\n%s", raw)
	}
	rec, _, err := l.Get(t.Context(), Key{Adapter: "kong", CredentialID: "cred-1", IncidentID: "inc-1"})
	if err != nil || !rec.Withheld || rec.Saved != nil || rec.State != StateRevoked {
		t.Fatalf("Get = %+v, %v; want revoked and withheld", rec, err)
	}
	_, err = g.Restore(t.Context(), manual("cred-1", "bot", "inc-1"))
	if err == nil || !strings.Contains(err.Error(), "issue a new key by hand") || !strings.Contains(err.Error(), "responder.ledger_key") {
		t.Fatalf("Restore = %v; want the advice to issue a new key", err)
	}
	if _, ok := fk.has("cred-1"); ok {
		t.Fatal("restored without the key")
	}
}

// A ledger written before encryption, with the key in plain text, is still
// read, and restore works from it.
func TestLedgerReadsPlainTextLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "revocations.jsonl")
	saved, _ := json.Marshal(kongCredential{ID: "cred-1", Key: kongKey, Consumer: &kongConsumer{ID: "uuid-bot"}})
	old := Record{Key: Key{Adapter: "kong", CredentialID: "cred-1", IncidentID: "inc-1"}, State: StateRevoked, Status: StatusRevoked,
		Origin: Manual, Saved: saved, StartedAt: time.Unix(1700000000, 0).UTC(), RevokedAt: time.Unix(1700000001, 0).UTC()}
	line, _ := json.Marshal(old)
	if err := os.WriteFile(path, append(line, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, key := range []*age.X25519Identity{nil, newKey(t)} {
		l, err := OpenFileLedgerWith(path, LedgerOptions{Key: key})
		if err != nil {
			t.Fatal(err)
		}
		rec, found, err := l.Get(t.Context(), old.Key)
		if err != nil || !found || !bytes.Equal(rec.Saved, saved) {
			t.Fatalf("key %v: Get = %+v, %v, %v; want the plain-text record", key != nil, rec, found, err)
		}
		if _, _, plain, err := l.Sealed(t.Context()); err != nil || plain != 1 {
			t.Fatalf("Sealed: %d plain, %v; want 1", plain, err)
		}
	}
	env := newEnv(t)
	l, _ := OpenFileLedgerWith(path, LedgerOptions{Key: newKey(t)})
	env.ledger = l
	fk := newFakeKong(t)
	g := env.guard(t, env.kong(t, fk), nil, nil)
	if res, err := g.Restore(t.Context(), manual("cred-1", "bot", "inc-1")); err != nil || res.Status != StatusRestored {
		t.Fatalf("Restore from a plain-text line = %+v, %v", res, err)
	}
	if c, ok := fk.has("cred-1"); !ok || c.Key != kongKey {
		t.Fatalf("kong has %+v after restore", c)
	}
}

func TestLedgerKeyGenerateAndParse(t *testing.T) {
	var buf bytes.Buffer
	rcp, err := GenerateLedgerKey(&buf, time.Unix(1700000000, 0))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(buf.String(), "# created: 2023-11-14T22:13:20Z\n# public key: "+rcp+"\nAGE-SECRET-KEY-1") {
		t.Fatalf("not age-keygen's format:\n%s", buf.String())
	}
	id, err := ParseLedgerKey(buf.String())
	if err != nil || id.Recipient().String() != rcp {
		t.Fatalf("ParseLedgerKey = %v, %v", id, err)
	}
	secretLine := strings.TrimSpace(buf.String()[strings.Index(buf.String(), "AGE-SECRET"):])
	for _, bad := range []string{"", "hello", secretLine + "\n" + secretLine, "age1qqqq"} {
		if _, err := ParseLedgerKey(bad); err == nil {
			t.Errorf("ParseLedgerKey(%q) accepted", bad)
		} else if strings.Contains(err.Error(), "AGE-SECRET-KEY-1Q") || (len(bad) > 20 && strings.Contains(err.Error(), bad[20:])) {
			t.Errorf("error shows the key: %v", err)
		}
	}
}

func FuzzParseLedgerKey(f *testing.F) {
	f.Add("# created: x\nAGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX\n")
	f.Add("AGE-SECRET-KEY-1")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseLedgerKey(s)
		if err == nil && id == nil {
			t.Fatal("nil identity without an error")
		}
	})
}

// A ledger from before encryption is resealed in place: its plain-text
// key encrypted, its other lines untouched, and restore still works.
func TestResealFileLedger(t *testing.T) {
	path := filepath.Join(t.TempDir(), "revocations.jsonl")
	saved, _ := json.Marshal(kongCredential{ID: "cred-1", Key: kongKey, Consumer: &kongConsumer{ID: "uuid-bot"}})
	plain := Record{Key: Key{Adapter: "kong", CredentialID: "cred-1", IncidentID: "inc-1"}, State: StateRevoked, Status: StatusRevoked,
		Origin: Manual, Saved: saved, StartedAt: time.Unix(1700000000, 0).UTC()}
	marker := Record{Key: Key{Adapter: "denylist", CredentialID: "cred-2", IncidentID: "inc-1"}, State: StateRevoked, Status: StatusRevoked,
		Saved: changeMarker, StartedAt: time.Unix(1700000000, 0).UTC()}
	var file []byte
	for _, r := range []Record{marker, plain} {
		line, _ := json.Marshal(r)
		file = append(append(file, line...), '\n')
	}
	if err := os.WriteFile(path, file, 0o600); err != nil {
		t.Fatal(err)
	}
	if !holdsPlain(t, file, kongKey) {
		t.Fatal("holdsPlain misses the plain-text key of a legacy line")
	}
	key := newKey(t)
	n, err := ResealFileLedger(path, key)
	if err != nil || n != 1 {
		t.Fatalf("ResealFileLedger = %d, %v; want 1 line resealed", n, err)
	}
	raw, _ := os.ReadFile(path)
	if holdsPlain(t, raw, kongKey) {
		t.Fatalf("the kong key is still in plain text:\n%s", raw)
	}
	first, _, _ := bytes.Cut(raw, []byte("\n"))
	if want, _ := json.Marshal(marker); !bytes.Equal(first, want) {
		t.Fatalf("the marker line changed:\n%s\nwant\n%s", first, want)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v after reseal", fi.Mode().Perm())
	}
	l, err := OpenFileLedgerWith(path, LedgerOptions{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	rec, _, err := l.Get(t.Context(), plain.Key)
	if err != nil || !bytes.Equal(rec.Saved, saved) {
		t.Fatalf("Get after reseal = %+v, %v", rec, err)
	}
	if enc, undec, pl, err := l.Sealed(t.Context()); err != nil || enc != 1 || undec != 0 || pl != 0 {
		t.Fatalf("Sealed = %d, %d, %d, %v", enc, undec, pl, err)
	}
	if n, err := ResealFileLedger(path, key); err != nil || n != 0 {
		t.Fatalf("second reseal = %d, %v; want nothing to do", n, err)
	}
	if _, err := ResealFileLedger(filepath.Join(t.TempDir(), "none.jsonl"), key); err == nil {
		t.Fatal("resealed a missing ledger")
	}
}
