// Package keystore keeps identities on disk, one file per identity,
// readable only by their owner and encrypted at rest with a passphrase
// (argon2id, then XChaCha20-Poly1305). A file is never half-written: every
// write goes to a temporary file that is synced and then linked or renamed
// into place, and a wrong passphrase or a damaged file is reported without
// touching it.
package keystore

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/keyhole-p2p/keyhole/identity"
	"github.com/keyhole-p2p/keyhole/internal/atomicfile"
	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/chacha20poly1305"
)

// Errors a caller can test for with errors.Is. Every returned error also
// says, in one line, what to do about it.
var (
	ErrNotFound        = errors.New("identity not found")
	ErrExists          = errors.New("identity already exists")
	ErrWrongPassphrase = errors.New("wrong passphrase")
	ErrCorrupt         = errors.New("identity file is damaged")
	ErrPermissions     = errors.New("identity file permissions are too open")
	ErrNeedPassphrase  = errors.New("passphrase required")
	ErrBadName         = errors.New("invalid identity name")
)

// KDFParams are the argon2id cost parameters. They are stored in each file,
// so files written with other parameters still open.
type KDFParams struct {
	Time      uint32 `json:"time"`
	MemoryKiB uint32 `json:"memory_kib"`
	Threads   uint8  `json:"threads"`
}

// DefaultKDF follows RFC 9106's second recommended option (64 MiB, t=3).
var DefaultKDF = KDFParams{Time: 3, MemoryKiB: 64 * 1024, Threads: 4}

// Limits on parameters read from a file, so a crafted file cannot make
// opening it take unbounded memory or time.
const (
	maxMemoryKiB = 4 * 1024 * 1024
	maxTime      = 64
)

const (
	fileVersion   = 1
	encArgon2     = "argon2id+xchacha20poly1305"
	encNone       = "none"
	fileSuffix    = ".key"
	defaultFile   = "default"
	identitiesDir = "identities"
)

// file is the on-disk JSON form of one identity.
type file struct {
	Version    int        `json:"keyhole_keystore"`
	Name       string     `json:"name"`
	PublicKey  string     `json:"public_key"`
	Created    string     `json:"created"`
	Encryption string     `json:"encryption"`
	KDF        *KDFParams `json:"kdf,omitempty"`
	Salt       string     `json:"salt,omitempty"`
	Nonce      string     `json:"nonce,omitempty"`
	Secret     string     `json:"secret"`
}

// Entry is what can be known about an identity without its passphrase.
type Entry struct {
	Name      string             `json:"name"`
	PublicKey identity.PublicKey `json:"-"`
	Address   string             `json:"address"`
	Encrypted bool               `json:"encrypted"`
	Created   time.Time          `json:"created"`
	Default   bool               `json:"default"`
	Path      string             `json:"path"`
}

// Store is a directory of identity files. The zero value is not usable;
// use Open.
type Store struct {
	home string
	// KDF is used for new files; tests lower it to stay fast.
	KDF KDFParams
	// Now is the clock for creation times.
	Now func() time.Time
}

// DefaultHome is $XDG_CONFIG_HOME/keyhole, or ~/.config/keyhole.
func DefaultHome(getenv func(string) string) (string, error) {
	if x := getenv("XDG_CONFIG_HOME"); x != "" {
		return filepath.Join(x, "keyhole"), nil
	}
	h := getenv("HOME")
	if h == "" {
		var err error
		if h, err = os.UserHomeDir(); err != nil {
			return "", fmt.Errorf("keystore: cannot find a home directory; pass --home: %w", err)
		}
	}
	return filepath.Join(h, ".config", "keyhole"), nil
}

// Open returns the store under home (created on first write).
func Open(home string) *Store {
	return &Store{home: home, KDF: DefaultKDF, Now: time.Now}
}

// Home is the store's root directory.
func (s *Store) Home() string { return s.home }

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// CheckName validates an identity name (it becomes a file name).
func CheckName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("%w %q: use 1-64 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit", ErrBadName, name)
	}
	return nil
}

func (s *Store) dir() string             { return filepath.Join(s.home, identitiesDir) }
func (s *Store) path(name string) string { return filepath.Join(s.dir(), name+fileSuffix) }
func (s *Store) defaultPath() string     { return filepath.Join(s.home, defaultFile) }

func (s *Store) exists(name string) bool {
	_, err := os.Lstat(s.path(name))
	return err == nil
}

// b64 encodes binary fields of the file.
var b64 = base64.RawStdEncoding

// additionalData binds the ciphertext to the name and public key in the
// header, so editing either makes decryption fail instead of misleading.
func additionalData(f *file) []byte {
	return []byte("keyhole-keystore-v1\x00" + f.Name + "\x00" + f.PublicKey)
}

// Create stores key under name. An empty passphrase stores the seed
// unencrypted, which callers must only allow when the user asked for it.
// Create never replaces an existing identity.
func (s *Store) Create(name string, key *identity.PrivateKey, passphrase []byte) (Entry, error) {
	if err := CheckName(name); err != nil {
		return Entry{}, err
	}
	if s.exists(name) {
		return Entry{}, fmt.Errorf("%w: %q (%s); choose another --name or remove the file first", ErrExists, name, s.path(name))
	}
	f := &file{
		Version:   fileVersion,
		Name:      name,
		PublicKey: key.Public().String(),
		Created:   s.Now().UTC().Format(time.RFC3339),
	}
	seed := key.Seed()
	defer clear(seed)
	if len(passphrase) == 0 {
		f.Encryption = encNone
		f.Secret = b64.EncodeToString(seed)
	} else {
		kdf := s.KDF
		salt := make([]byte, 16)
		nonce := make([]byte, chacha20poly1305.NonceSizeX)
		if _, err := rand.Read(salt); err != nil {
			return Entry{}, fmt.Errorf("keystore: reading system randomness: %w", err)
		}
		if _, err := rand.Read(nonce); err != nil {
			return Entry{}, fmt.Errorf("keystore: reading system randomness: %w", err)
		}
		f.Encryption, f.KDF = encArgon2, &kdf
		f.Salt, f.Nonce = b64.EncodeToString(salt), b64.EncodeToString(nonce)
		k := argon2.IDKey(passphrase, salt, kdf.Time, kdf.MemoryKiB, kdf.Threads, chacha20poly1305.KeySize)
		aead, err := chacha20poly1305.NewX(k)
		clear(k)
		if err != nil {
			return Entry{}, fmt.Errorf("keystore: %w", err)
		}
		f.Secret = b64.EncodeToString(aead.Seal(nil, nonce, seed, additionalData(f)))
	}
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return Entry{}, fmt.Errorf("keystore: %w", err)
	}
	if err := os.MkdirAll(s.dir(), 0o700); err != nil {
		return Entry{}, fmt.Errorf("keystore: creating %s: %w", s.dir(), err)
	}
	if err := atomicfile.Create(s.path(name), append(data, '\n'), 0o600); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return Entry{}, fmt.Errorf("%w: %q (%s); choose another --name", ErrExists, name, s.path(name))
		}
		return Entry{}, fmt.Errorf("keystore: writing %s: %w", s.path(name), err)
	}
	if _, err := s.Default(); errors.Is(err, ErrNotFound) {
		if err := s.SetDefault(name); err != nil {
			return Entry{}, err
		}
	}
	return s.Info(name)
}

// read loads and sanity-checks an identity file without decrypting it.
func (s *Store) read(name string) (*file, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	p := s.path(name)
	st, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %q (no %s); create it with 'keyhole id new --name %s' or list them with 'keyhole id list'", ErrNotFound, name, p, name)
	}
	if err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file; replace it with the real identity file", ErrCorrupt, p)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %04o, others could read it; run 'chmod 600 %s'", ErrPermissions, p, perm, p)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	f, err := parseFile(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v; restore it with 'keyhole id restore' from your backup words", ErrCorrupt, p, err)
	}
	if f.Name != name {
		return nil, fmt.Errorf("%w: %s: it names identity %q; rename the file back to %s%s", ErrCorrupt, p, f.Name, f.Name, fileSuffix)
	}
	return f, nil
}

// parseFile decodes and validates the JSON form (everything that can be
// checked without the passphrase).
func parseFile(data []byte) (*file, error) {
	var f file
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("not valid keystore JSON (truncated or edited?): %v", err)
	}
	if f.Version != fileVersion {
		return nil, fmt.Errorf("unsupported keystore version %d", f.Version)
	}
	if _, err := identity.ParseKey(f.PublicKey); err != nil {
		return nil, fmt.Errorf("public_key: %v", err)
	}
	secret, err := b64.DecodeString(f.Secret)
	if err != nil {
		return nil, errors.New("secret is not base64")
	}
	switch f.Encryption {
	case encNone:
		if len(secret) != identity.SeedSize || f.KDF != nil || f.Salt != "" || f.Nonce != "" {
			return nil, errors.New("unencrypted secret has the wrong shape")
		}
	case encArgon2:
		if f.KDF == nil || f.KDF.Time == 0 || f.KDF.Time > maxTime || f.KDF.MemoryKiB < 8 || f.KDF.MemoryKiB > maxMemoryKiB || f.KDF.Threads == 0 {
			return nil, errors.New("argon2id parameters are missing or out of range")
		}
		if salt, err := b64.DecodeString(f.Salt); err != nil || len(salt) < 8 {
			return nil, errors.New("salt is missing or too short")
		}
		if nonce, err := b64.DecodeString(f.Nonce); err != nil || len(nonce) != chacha20poly1305.NonceSizeX {
			return nil, errors.New("nonce is not 24 bytes")
		}
		if len(secret) != identity.SeedSize+chacha20poly1305.Overhead {
			return nil, errors.New("encrypted secret has the wrong length")
		}
	default:
		return nil, fmt.Errorf("unknown encryption %q", f.Encryption)
	}
	return &f, nil
}

// Info describes an identity without decrypting it.
func (s *Store) Info(name string) (Entry, error) {
	f, err := s.read(name)
	if err != nil {
		return Entry{}, err
	}
	return s.entry(f), nil
}

func (s *Store) entry(f *file) Entry {
	pub, _ := identity.ParseKey(f.PublicKey)
	created, _ := time.Parse(time.RFC3339, f.Created)
	def, _ := s.Default()
	return Entry{Name: f.Name, PublicKey: pub, Address: pub.String(), Encrypted: f.Encryption != encNone,
		Created: created, Default: def == f.Name, Path: s.path(f.Name)}
}

// NeedsPassphrase reports whether opening name needs a passphrase.
func (s *Store) NeedsPassphrase(name string) (bool, error) {
	f, err := s.read(name)
	if err != nil {
		return false, err
	}
	return f.Encryption != encNone, nil
}

// Load decrypts and returns the identity.
func (s *Store) Load(name string, passphrase []byte) (*identity.PrivateKey, error) {
	f, err := s.read(name)
	if err != nil {
		return nil, err
	}
	secret, _ := b64.DecodeString(f.Secret)
	var seed []byte
	if f.Encryption == encNone {
		seed = secret
	} else {
		if len(passphrase) == 0 {
			return nil, fmt.Errorf("%w: identity %q is encrypted; type it at the prompt or set KEYHOLE_PASSPHRASE", ErrNeedPassphrase, name)
		}
		salt, _ := b64.DecodeString(f.Salt)
		nonce, _ := b64.DecodeString(f.Nonce)
		k := argon2.IDKey(passphrase, salt, f.KDF.Time, f.KDF.MemoryKiB, f.KDF.Threads, chacha20poly1305.KeySize)
		aead, err := chacha20poly1305.NewX(k)
		clear(k)
		if err != nil {
			return nil, fmt.Errorf("keystore: %w", err)
		}
		seed, err = aead.Open(nil, nonce, secret, additionalData(f))
		if err != nil {
			return nil, fmt.Errorf("%w for identity %q (or its file was altered); try again, or restore from your backup words", ErrWrongPassphrase, name)
		}
		defer clear(seed)
	}
	key, err := identity.NewPrivateKey(seed)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, s.path(name), err)
	}
	if key.Public().String() != f.PublicKey {
		return nil, fmt.Errorf("%w: %s: the secret does not match public_key %s; restore it from your backup words", ErrCorrupt, s.path(name), f.PublicKey)
	}
	return key, nil
}

// List returns every identity in name order. Damaged files are listed
// with their error rather than hidden.
func (s *Store) List() ([]Entry, []error) {
	ents, err := os.ReadDir(s.dir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, []error{fmt.Errorf("keystore: %w", err)}
	}
	var out []Entry
	var errs []error
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), fileSuffix)
		if !ok || CheckName(name) != nil {
			continue
		}
		info, err := s.Info(name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, errs
}

// Default returns the name of the identity commands use when none is named.
func (s *Store) Default() (string, error) {
	b, err := os.ReadFile(s.defaultPath())
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("%w: no default identity; create one with 'keyhole id new'", ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("keystore: %w", err)
	}
	name := strings.TrimSpace(string(b))
	if err := CheckName(name); err != nil {
		return "", fmt.Errorf("%w: %s: %v", ErrCorrupt, s.defaultPath(), err)
	}
	return name, nil
}

// SetDefault makes name the default identity.
func (s *Store) SetDefault(name string) error {
	if !s.exists(name) {
		_, err := s.read(name)
		return err
	}
	if err := os.MkdirAll(s.home, 0o700); err != nil {
		return fmt.Errorf("keystore: %w", err)
	}
	if err := atomicfile.Write(s.defaultPath(), []byte(name+"\n"), 0o600); err != nil {
		return fmt.Errorf("keystore: writing %s: %w", s.defaultPath(), err)
	}
	return nil
}
