package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyhole-p2p/keyhole/identity"
	"github.com/keyhole-p2p/keyhole/record"
)

type result struct {
	code           int
	stdout, stderr string
}

// harness runs commands in-process against a private home directory.
type harness struct {
	t      *testing.T
	home   string
	env    map[string]string
	skew   time.Duration // added to the real clock
	prompt func(string) ([]byte, error)
}

// newHarness never lets a test reach the public network: relays are off
// and the DHT bootstrap is a closed loopback port unless a test says otherwise.
func newHarness(t *testing.T) *harness {
	return &harness{t: t, home: t.TempDir(),
		env: map[string]string{relaysEnv: "none", bootstrapEnv: "127.0.0.1:1"}}
}

func (h *harness) run(stdin string, args ...string) result {
	h.t.Helper()
	return h.runCtx(context.Background(), stdin, args...)
}

func (h *harness) runCtx(ctx context.Context, stdin string, args ...string) result {
	h.t.Helper()
	var out, errb bytes.Buffer
	e := &env{
		stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb,
		getenv: func(k string) string { return h.env[k] },
		now:    func() time.Time { return time.Now().Add(h.skew) },
		prompt: h.prompt,
	}
	code := run(ctx, append([]string{"--home", h.home}, args...), e)
	return result{code, out.String(), errb.String()}
}

func (h *harness) ok(stdin string, args ...string) result {
	h.t.Helper()
	r := h.run(stdin, args...)
	if r.code != 0 {
		h.t.Fatalf("keyhole %v: exit %d\nstdout: %s\nstderr: %s", args, r.code, r.stdout, r.stderr)
	}
	return r
}

// fails checks exit code 1 and a single error line mentioning want.
func (h *harness) fails(code int, want string, stdin string, args ...string) result {
	h.t.Helper()
	r := h.run(stdin, args...)
	if r.code != code {
		h.t.Fatalf("keyhole %v: exit %d, want %d\nstderr: %s", args, r.code, code, r.stderr)
	}
	first := strings.SplitN(r.stderr, "\n", 2)[0]
	if !strings.HasPrefix(first, "keyhole: ") || !strings.Contains(first, want) {
		h.t.Fatalf("keyhole %v: error line %q does not mention %q", args, first, want)
	}
	return r
}

func TestIdentityLifecycle(t *testing.T) {
	h := newHarness(t)
	h.env[passphraseEnv] = "s3cret passphrase"
	r := h.ok("", "id", "new", "--json")
	var v idView
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatal(err)
	}
	if v.Name != "default" || !v.Encrypted || len(v.Address) != 52 || !v.Default {
		t.Fatalf("new identity: %+v", v)
	}
	st, err := os.Stat(v.Path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("identity file mode %v %v", st.Mode(), err)
	}
	if !strings.HasPrefix(v.Path, h.home) {
		t.Errorf("file %s outside --home %s", v.Path, h.home)
	}
	data, _ := os.ReadFile(v.Path)
	if bytes.Contains(data, []byte("s3cret")) {
		t.Fatal("passphrase written to disk")
	}

	show := h.ok("", "id", "show")
	if !strings.Contains(show.stdout, v.Address) || !strings.Contains(show.stdout, v.PublicKeyHex) {
		t.Errorf("show: %s", show.stdout)
	}
	words := strings.TrimSpace(h.ok("", "id", "backup").stdout)
	if len(strings.Fields(words)) != 24 {
		t.Fatalf("backup printed %q", words)
	}
	// A second identity is refused without --name; with one it is made.
	h.fails(2, "--name", "", "id", "new")
	h.env[passphraseEnv] = "another"
	r = h.ok(words+"\n", "id", "restore", "--name", "copy", "--json")
	var restored idView
	_ = json.Unmarshal([]byte(r.stdout), &restored)
	if restored.Address != v.Address || restored.Default {
		t.Fatalf("restored %+v, want the same address, not default", restored)
	}
	list := h.ok("", "id", "list").stdout
	if !strings.Contains(list, "* default") || !strings.Contains(list, "  copy") {
		t.Errorf("list: %q", list)
	}
	h.ok("", "id", "use", "copy")
	if !strings.Contains(h.ok("", "id", "list").stdout, "* copy") {
		t.Error("id use did not switch the default")
	}

	// Wrong passphrase: one clear line, exit 1, file untouched.
	h.env[passphraseEnv] = "nope"
	before, _ := os.ReadFile(v.Path)
	h.fails(1, "wrong passphrase", "", "--id", "default", "id", "backup")
	after, _ := os.ReadFile(v.Path)
	if !bytes.Equal(before, after) {
		t.Fatal("failed open changed the file")
	}
	// Wrong permissions.
	os.Chmod(v.Path, 0o644)
	h.env[passphraseEnv] = "s3cret passphrase"
	h.fails(1, "chmod 600", "", "--id", "default", "id", "backup")
	os.Chmod(v.Path, 0o600)
	// Truncated file.
	os.WriteFile(v.Path, before[:len(before)/3], 0o600)
	h.fails(1, "damaged", "", "--id", "default", "id", "backup")
	// Restoring over an existing identity is refused.
	h.fails(1, "already exists", words, "id", "restore", "--name", "copy")
	// Bad words.
	h.fails(1, "expected 24 words", "abandon abandon", "id", "restore", "--name", "x")
}

func TestPassphraseSources(t *testing.T) {
	h := newHarness(t)
	// No terminal and no environment: refuse, and say what to do.
	h.fails(1, "KEYHOLE_PASSPHRASE", "", "id", "new")
	h.fails(1, "--no-passphrase", "", "id", "new")
	// A typed passphrase must be repeated identically.
	answers := [][]byte{[]byte("one"), []byte("two")}
	h.prompt = func(string) ([]byte, error) { a := answers[0]; answers = answers[1:]; return a, nil }
	h.fails(1, "differ", "", "id", "new")
	answers = [][]byte{[]byte("same"), []byte("same")}
	h.ok("", "id", "new")
	answers = [][]byte{[]byte("same")}
	h.ok("", "id", "backup")
	// An unencrypted server key needs no passphrase at all.
	h.prompt = func(string) ([]byte, error) { return nil, errors.New("must not prompt") }
	h.ok("", "id", "new", "--name", "server", "--no-passphrase")
	h.ok("", "--id", "server", "id", "backup")
}

func TestRecordBuildVerify(t *testing.T) {
	h := newHarness(t)
	h.ok("", "id", "new", "--no-passphrase")
	cert := record.EncodeCertHash(record.CertHashOf([]byte("c")))
	out := filepath.Join(t.TempDir(), "pkt.bin")
	r := h.ok("", "record", "build", "--json", "--kps", "192.0.2.1:4242:"+cert, "--board", "wss://b.example/", "--out", out)
	var v packetView
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatal(err)
	}
	if v.Content == nil || len(v.Content.Direct) != 1 || v.Size != len(mustB64(t, v.Base64)) {
		t.Fatalf("build: %+v", v)
	}
	raw, _ := os.ReadFile(out)
	if !bytes.Equal(raw, mustB64(t, v.Base64)) {
		t.Fatal("--out differs from the printed packet")
	}
	// Every accepted input form.
	for name, in := range map[string]string{"json": r.stdout, "base64": v.Base64, "hex": v.Hex, "raw": string(raw)} {
		if r := h.run(in, "record", "verify"); r.code != 0 || !strings.Contains(r.stdout, "valid      yes") {
			t.Errorf("%s: exit %d %s", name, r.code, r.stderr)
		}
	}
	h.ok("", "record", "verify", out, "--key", "keyhole://"+v.Address)

	// Each rejection says which check failed.
	other, _ := identity.Generate()
	flipped := append([]byte(nil), raw...)
	flipped[len(flipped)/2] ^= 0x10
	oversize := append(append([]byte(nil), raw...), make([]byte, 1200)...)
	tests := []struct {
		name, in, want string
		args           []string
	}{
		{"truncated", string(raw[:60]), "truncated", nil},
		{"flipped bit", string(flipped), "bad signature", nil},
		{"wrong key", string(raw), "signed by a different key", []string{"--key", other.Public().String()}},
		{"oversize", string(oversize), "too large", nil},
		{"empty", "", "no input", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h.fails(1, tc.want, tc.in, append([]string{"record", "verify"}, tc.args...)...)
		})
	}
	// Outside the time window.
	h.skew = 3 * time.Hour
	h.fails(1, "timestamp outside the accepted window", string(raw), "record", "verify")
	r = h.run(string(raw), "record", "verify", "--json")
	if r.code != 1 || !strings.Contains(r.stdout, `"valid": false`) {
		t.Errorf("--json failure output: %s", r.stdout)
	}
	h.ok(string(raw), "record", "verify", "--window", "4h")
	h.skew = 0

	// Usage errors exit 2.
	h.fails(2, "--kps", "", "record", "build", "--kps", "nonsense")
	h.fails(2, "unknown flag", "", "record", "build", "--frobnicate")
	h.fails(2, "unknown command", "", "frobnicate")
	h.fails(2, "at most 1", "", "record", "verify", "a", "b")
	h.fails(1, "no such file", "", "record", "verify", filepath.Join(t.TempDir(), "missing"))
}

func TestDemo(t *testing.T) {
	h := newHarness(t)
	r := h.ok("", "demo")
	for _, want := range []string{"same key: true", "verified", "valid    signed by", "bad signature", "signed by a different key", "outside the accepted window",
		"DHT nodes and 1 relay", "via DHT   verified", "via relay verified"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("demo output lacks %q:\n%s", want, r.stdout)
		}
	}
	if ents, _ := os.ReadDir(h.home); len(ents) != 0 {
		t.Errorf("demo wrote to the home directory: %v", ents)
	}
}

func mustB64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
