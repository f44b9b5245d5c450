package identity

import (
	"crypto/sha512"
	"fmt"

	"golang.org/x/crypto/curve25519"
)

// X25519 converts the identity key to the Montgomery form used for
// Diffie-Hellman, as openhost does to seal offers to a host's address
// (the birational map u = (1+y)/(1-y)).
func (k PublicKey) X25519() ([32]byte, error) {
	var out [32]byte
	p, err := strictPoint(k[:])
	if err != nil {
		return out, fmt.Errorf("%w: %v", ErrPublicKey, err)
	}
	copy(out[:], p.BytesMontgomery())
	return out, nil
}

// X25519 returns the Montgomery secret matching PublicKey.X25519: the
// clamped first half of SHA-512(seed), the same scalar Ed25519 signs with.
func (k *PrivateKey) X25519() [32]byte {
	h := sha512.Sum512(k.seed[:])
	var s [32]byte
	copy(s[:], h[:32])
	s[0] &= 248
	s[31] &= 127
	s[31] |= 64
	return s
}

// x25519Public is the X25519 public key of a secret scalar.
func x25519Public(secret [32]byte) ([32]byte, error) {
	var out [32]byte
	pub, err := curve25519.X25519(secret[:], curve25519.Basepoint)
	if err != nil {
		return out, err
	}
	copy(out[:], pub)
	return out, nil
}
