// Package seal encrypts a message to an X25519 public key so that only
// the holder of the matching secret can read it, and nobody, not even
// the sender afterwards, can tell who sealed it. keyhole seals signaling
// (SDP offers and answers) to a peer's transport key before it reaches a
// rendezvous board, so the board relays ciphertext it cannot open.
//
// The construction is ORP's sealed box, in the style of libsodium's
// crypto_box_seal:
//
//	e, E   = fresh X25519 key pair, used for this one message
//	shared = X25519(e, R)                      R: the recipient's public key
//	k | n  = HKDF-SHA256(ikm=shared, salt=E|R, info=Label), 32 + 24 bytes
//	box    = E | XChaCha20-Poly1305(k, n, plaintext)
//
// The key is fresh for every message, so deriving the nonce with it is
// safe, and binding both public keys into the derivation stops a box
// from being re-addressed. A box is Overhead bytes longer than its
// plaintext.
package seal

import (
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/curve25519"

	"github.com/keyhole-p2p/keyhole/identity"
)

// Label is the HKDF info string; a box made for another purpose with
// another label does not open here.
const Label = "keyhole-seal-v1"

// Overhead is what sealing adds: the ephemeral public key and the tag.
const Overhead = 32 + chacha20poly1305.Overhead

// ErrOpen is returned for every box that does not open: truncated,
// tampered with, or sealed to another key. The reasons are not told
// apart, so a prober learns nothing from them.
var ErrOpen = errors.New("seal: the box does not open with this key (tampered, truncated, or sealed to another key)")

// Seal encrypts plaintext to the recipient's X25519 public key.
func Seal(recipient [32]byte, plaintext []byte) ([]byte, error) {
	var e [32]byte
	if _, err := rand.Read(e[:]); err != nil {
		return nil, fmt.Errorf("seal: reading system randomness: %w", err)
	}
	pub, err := curve25519.X25519(e[:], curve25519.Basepoint)
	if err != nil {
		return nil, fmt.Errorf("seal: ephemeral key: %w", err)
	}
	shared, err := curve25519.X25519(e[:], recipient[:])
	if err != nil {
		// Only a low-order recipient key gives an all-zero secret.
		return nil, errors.New("seal: the recipient's transport key is a low-order point; refusing to seal to it")
	}
	aead, nonce, err := derive(shared, pub, recipient[:])
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(pub)+len(plaintext)+chacha20poly1305.Overhead)
	out = append(out, pub...)
	return aead.Seal(out, nonce, plaintext, nil), nil
}

// Open decrypts a box sealed to key's public half.
func Open(key *identity.TransportKey, box []byte) ([]byte, error) {
	if len(box) < Overhead {
		return nil, ErrOpen
	}
	secret, pub := key.Secret(), key.Public()
	shared, err := curve25519.X25519(secret[:], box[:32])
	if err != nil {
		return nil, ErrOpen
	}
	aead, nonce, err := derive(shared, box[:32], pub[:])
	if err != nil {
		return nil, err
	}
	pt, err := aead.Open(nil, nonce, box[32:], nil)
	if err != nil {
		return nil, ErrOpen
	}
	return pt, nil
}

func derive(shared, ephemeral, recipient []byte) (cipher.AEAD, []byte, error) {
	salt := make([]byte, 0, 64)
	salt = append(append(salt, ephemeral...), recipient...)
	okm, err := hkdf.Key(sha256.New, shared, salt, Label, chacha20poly1305.KeySize+chacha20poly1305.NonceSizeX)
	if err != nil {
		return nil, nil, fmt.Errorf("seal: deriving the key: %w", err)
	}
	aead, err := chacha20poly1305.NewX(okm[:chacha20poly1305.KeySize])
	if err != nil {
		return nil, nil, fmt.Errorf("seal: %w", err)
	}
	return aead, okm[chacha20poly1305.KeySize:], nil
}
