package identity

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
)

// PublicKeySize and SeedSize are the Ed25519 sizes keyhole uses on the wire.
const (
	PublicKeySize = ed25519.PublicKeySize
	SeedSize      = ed25519.SeedSize
	SignatureSize = ed25519.SignatureSize
)

// PublicKey is a device's address. Its zero value is not a valid key.
type PublicKey [PublicKeySize]byte

// ErrPublicKey is wrapped by errors about malformed public keys.
var ErrPublicKey = errors.New("invalid public key")

// PublicKeyFromBytes copies a 32-byte key and checks that it is a
// canonical, non-small-order Edwards point, so that a key that could
// never verify a strict signature is refused where it enters.
func PublicKeyFromBytes(b []byte) (PublicKey, error) {
	var k PublicKey
	if len(b) != PublicKeySize {
		return k, fmt.Errorf("%w: must be %d bytes, got %d", ErrPublicKey, PublicKeySize, len(b))
	}
	copy(k[:], b)
	if _, err := strictPoint(b); err != nil {
		return k, fmt.Errorf("%w: %v", ErrPublicKey, err)
	}
	return k, nil
}

// String returns the 52-character z-base-32 address.
func (k PublicKey) String() string { return EncodeZBase32(k[:]) }

// Hex returns the lower-case hex form, as openhost's tools print it.
func (k PublicKey) Hex() string { return hex.EncodeToString(k[:]) }

// IsZero reports whether k is the zero value.
func (k PublicKey) IsZero() bool { return k == PublicKey{} }

// Verify checks sig over msg under strict RFC 8032 rules (see VerifyStrict).
func (k PublicKey) Verify(msg, sig []byte) error { return VerifyStrict(k, msg, sig) }

// PrivateKey is an Ed25519 signing key. Its fields are private and it
// formats and logs as "[redacted]", so it cannot leak through a %v or a
// structured log line by accident.
type PrivateKey struct {
	seed [SeedSize]byte
	priv ed25519.PrivateKey
	pub  PublicKey
}

// Generate makes a new key from the system CSPRNG.
func Generate() (*PrivateKey, error) {
	var seed [SeedSize]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return nil, fmt.Errorf("identity: reading system randomness: %w", err)
	}
	return NewPrivateKey(seed[:])
}

// NewPrivateKey rebuilds a key from its 32-byte RFC 8032 seed.
func NewPrivateKey(seed []byte) (*PrivateKey, error) {
	if len(seed) != SeedSize {
		return nil, fmt.Errorf("identity: seed must be %d bytes, got %d", SeedSize, len(seed))
	}
	k := &PrivateKey{priv: ed25519.NewKeyFromSeed(seed)}
	copy(k.seed[:], seed)
	copy(k.pub[:], k.priv[SeedSize:])
	return k, nil
}

// Public returns the key's address.
func (k *PrivateKey) Public() PublicKey { return k.pub }

// Sign signs msg (pure Ed25519, deterministic).
func (k *PrivateKey) Sign(msg []byte) []byte { return ed25519.Sign(k.priv, msg) }

// Seed returns a copy of the 32-byte seed. Only the keystore and the
// backup words need it; nothing else should hold it.
func (k *PrivateKey) Seed() []byte {
	s := make([]byte, SeedSize)
	copy(s, k.seed[:])
	return s
}

// String never reveals key material.
func (k *PrivateKey) String() string { return "[redacted private key " + k.pub.String() + "]" }

// GoString keeps %#v as safe as %v.
func (k *PrivateKey) GoString() string { return k.String() }

// LogValue keeps the key out of slog output.
func (k *PrivateKey) LogValue() slog.Value { return slog.StringValue("[redacted]") }
