package keystore

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/keyhole-p2p/keyhole/identity"
)

// fastKDF keeps tests quick; the file records it, so Load uses it too.
var fastKDF = KDFParams{Time: 1, MemoryKiB: 64, Threads: 1}

func newStore(t *testing.T) *Store {
	t.Helper()
	s := Open(t.TempDir())
	s.KDF = fastKDF
	return s
}

func TestCreateLoad(t *testing.T) {
	for _, pass := range []string{"", "correct horse"} {
		s := newStore(t)
		k, _ := identity.Generate()
		e, err := s.Create("laptop", k, []byte(pass))
		if err != nil {
			t.Fatal(err)
		}
		if e.Address != k.Public().String() || e.Encrypted != (pass != "") || !e.Default {
			t.Errorf("entry = %+v", e)
		}
		st, err := os.Stat(e.Path)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("mode = %v, %v", st.Mode(), err)
		}
		data, _ := os.ReadFile(e.Path)
		if bytes.Contains(data, []byte(pass)) && pass != "" {
			t.Error("passphrase stored in the file")
		}
		if pass != "" && bytes.Contains(data, []byte(b64.EncodeToString(k.Seed()))) {
			t.Error("seed stored in clear in an encrypted file")
		}
		got, err := s.Load("laptop", []byte(pass))
		if err != nil || !bytes.Equal(got.Seed(), k.Seed()) {
			t.Fatalf("load: %v", err)
		}
		need, _ := s.NeedsPassphrase("laptop")
		if need != (pass != "") {
			t.Errorf("NeedsPassphrase = %v", need)
		}
		tmps, _ := filepath.Glob(filepath.Join(s.dir(), ".*tmp*"))
		if len(tmps) != 0 {
			t.Errorf("temporary files left behind: %v", tmps)
		}
	}
}

func TestDefaultAndList(t *testing.T) {
	s := newStore(t)
	if _, err := s.Default(); !errors.Is(err, ErrNotFound) {
		t.Fatalf("empty store default: %v", err)
	}
	a, _ := identity.Generate()
	b, _ := identity.Generate()
	if _, err := s.Create("b", b, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create("a", a, nil); err != nil {
		t.Fatal(err)
	}
	if d, _ := s.Default(); d != "b" {
		t.Errorf("default = %q, want the first one created", d)
	}
	if err := s.SetDefault("a"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetDefault("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetDefault(missing) = %v", err)
	}
	list, errs := s.List()
	if len(errs) != 0 || len(list) != 2 || list[0].Name != "a" || !list[0].Default || list[1].Default {
		t.Errorf("list = %+v %v", list, errs)
	}
}

// Every failure leaves the file exactly as it was.
func TestFailuresNeverTouchTheFile(t *testing.T) {
	s := newStore(t)
	k, _ := identity.Generate()
	e, err := s.Create("id", k, []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	orig, _ := os.ReadFile(e.Path)
	check := func(name string) {
		t.Helper()
		now, _ := os.ReadFile(e.Path)
		if !bytes.Equal(now, orig) {
			t.Fatalf("%s: file changed", name)
		}
	}
	if _, err := s.Load("id", []byte("wrong")); !errors.Is(err, ErrWrongPassphrase) || !strings.Contains(err.Error(), "backup words") {
		t.Errorf("wrong passphrase: %v", err)
	}
	check("wrong passphrase")
	if _, err := s.Load("id", nil); !errors.Is(err, ErrNeedPassphrase) || !strings.Contains(err.Error(), "KEYHOLE_PASSPHRASE") {
		t.Errorf("no passphrase: %v", err)
	}
	other, _ := identity.Generate()
	if _, err := s.Create("id", other, nil); !errors.Is(err, ErrExists) {
		t.Errorf("overwrite: %v", err)
	}
	check("create over existing")

	// Wrong permissions.
	os.Chmod(e.Path, 0o644)
	if _, err := s.Load("id", []byte("pw")); !errors.Is(err, ErrPermissions) || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("0644: %v", err)
	}
	os.Chmod(e.Path, 0o600)
	check("permissions")

	// Damaged copies, each in a file of its own so the original stays intact.
	damage := map[string]func([]byte) []byte{
		"truncated":   func(b []byte) []byte { return b[:len(b)/2] },
		"empty":       func([]byte) []byte { return nil },
		"not json":    func([]byte) []byte { return []byte("hello") },
		"extra field": func(b []byte) []byte { return bytes.Replace(b, []byte("{"), []byte(`{"x":1,`), 1) },
		"huge memory": func(b []byte) []byte {
			return bytes.Replace(b, []byte(`"memory_kib": 64`), []byte(`"memory_kib": 999999999`), 1)
		},
		"short nonce": func(b []byte) []byte { return bytes.Replace(b, []byte(`"nonce": "`), []byte(`"nonce": "AAAA`), 1) },
		"bad version": func(b []byte) []byte {
			return bytes.Replace(b, []byte(`"keyhole_keystore": 1`), []byte(`"keyhole_keystore": 7`), 1)
		},
		"unknown cipher": func(b []byte) []byte {
			return bytes.Replace(b, []byte(encArgon2), []byte("rot13"), 1)
		},
	}
	for name, f := range damage {
		p := s.path("broken")
		if err := os.WriteFile(p, f(append([]byte(nil), orig...)), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := s.Load("broken", []byte("pw"))
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v", name, err)
		}
		os.Remove(p)
	}
	// A flipped bit inside the ciphertext or a swapped public key fails authentication.
	for name, f := range map[string]func([]byte) []byte{
		"secret bit": func(b []byte) []byte {
			i := bytes.Index(b, []byte(`"secret": "`)) + 12
			if b[i] == 'A' {
				b[i] = 'B'
			} else {
				b[i] = 'A'
			}
			return b
		},
		"public key swapped": func(b []byte) []byte {
			return bytes.Replace(b, []byte(k.Public().String()), []byte(other.Public().String()), 1)
		},
	} {
		dmg := f(append([]byte(nil), orig...))
		dmg = bytes.Replace(dmg, []byte(`"name": "id"`), []byte(`"name": "broken"`), 1)
		os.WriteFile(s.path("broken"), dmg, 0o600)
		if _, err := s.Load("broken", []byte("pw")); err == nil {
			t.Errorf("%s: loaded", name)
		}
		os.Remove(s.path("broken"))
	}
	check("damage")
	if got, err := s.Load("id", []byte("pw")); err != nil || got.Public() != k.Public() {
		t.Fatalf("original no longer loads: %v", err)
	}
}

func TestUnencryptedMismatchIsCorrupt(t *testing.T) {
	s := newStore(t)
	k, _ := identity.Generate()
	other, _ := identity.Generate()
	e, _ := s.Create("srv", k, nil)
	data, _ := os.ReadFile(e.Path)
	os.WriteFile(e.Path, bytes.Replace(data, []byte(k.Public().String()), []byte(other.Public().String()), 1), 0o600)
	if _, err := s.Load("srv", nil); !errors.Is(err, ErrCorrupt) {
		t.Errorf("mismatched public key: %v", err)
	}
}

func TestBadNames(t *testing.T) {
	s := newStore(t)
	k, _ := identity.Generate()
	for _, n := range []string{"", "../x", "A", "a/b", ".hidden", strings.Repeat("a", 65)} {
		if _, err := s.Create(n, k, nil); !errors.Is(err, ErrBadName) {
			t.Errorf("%q: %v", n, err)
		}
	}
}

// Two processes racing to create the same name: one wins, one gets ErrExists.
func TestConcurrentCreate(t *testing.T) {
	s := newStore(t)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, _ := identity.Generate()
			_, errs[i] = s.Create("same", k, nil)
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
		} else if !errors.Is(err, ErrExists) {
			t.Errorf("unexpected error %v", err)
		}
	}
	if ok != 1 {
		t.Errorf("%d creators succeeded", ok)
	}
}

func FuzzParseFile(f *testing.F) {
	s := Open(f.TempDir())
	s.KDF = fastKDF
	k, _ := identity.NewPrivateKey(make([]byte, 32))
	e, _ := s.Create("x", k, []byte("p"))
	data, _ := os.ReadFile(e.Path)
	f.Add(data)
	f.Add([]byte(`{"keyhole_keystore":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		fl, err := parseFile(b)
		if err != nil {
			return
		}
		// Anything accepted must carry in-range parameters.
		if fl.KDF != nil && (fl.KDF.MemoryKiB > maxMemoryKiB || fl.KDF.Time > maxTime) {
			t.Fatalf("accepted out-of-range KDF %+v", fl.KDF)
		}
	})
}
