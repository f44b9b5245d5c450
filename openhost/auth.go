package openhost

import (
	"crypto/hmac"
	"crypto/sha256"
	"io"

	"github.com/keyhole-p2p/keyhole/identity"
	"golang.org/x/crypto/hkdf"
)

// Labels fixed by openhost.
const (
	authLabel      = "openhost-auth-v1"
	allowSaltLabel = "openhost-allow-salt-v1"
	// ExporterLabel is the RFC 5705 label for the DTLS keying-material
	// exporter (used with no context, 32 bytes).
	ExporterLabel = "EXPORTER-openhost-auth-v1"
	// AllowlistHashLen is the length of an allowlist entry.
	AllowlistHashLen = 16
)

// AllowlistHash is HMAC-SHA256(salt, client key) cut to 16 bytes: the
// form in which a host remembers a paired client, so that a leaked
// allowlist does not list the client keys.
func AllowlistHash(salt []byte, client identity.PublicKey) [AllowlistHashLen]byte {
	m := hmac.New(sha256.New, salt)
	m.Write(client[:])
	var out [AllowlistHashLen]byte
	copy(out[:], m.Sum(nil))
	return out
}

// AllowSalt derives a host's stable allowlist salt from its identity seed.
func AllowSalt(host *identity.PrivateKey) [32]byte {
	seed := host.Seed()
	defer clear(seed)
	return hkdf32(seed, []byte(allowSaltLabel), nil)
}

// AuthBytes is the unbound form of the channel-binding digest (info is
// the label alone); openhost's crypto vectors test it.
func AuthBytes(secret [32]byte) [32]byte {
	return hkdf32(secret[:], []byte(authLabel), []byte(authLabel))
}

// AuthBytesBound is what AUTH_CLIENT and AUTH_HOST sign on the wire:
// HKDF-SHA256(salt "openhost-auth-v1", ikm secret, info
// "openhost-auth-v1" || host || client || nonce). secret is the DTLS
// exporter output, or SHA-256 of the host's certificate in CertFp mode.
func AuthBytesBound(secret [32]byte, host, client identity.PublicKey, nonce [32]byte) [32]byte {
	info := make([]byte, 0, len(authLabel)+96)
	info = append(info, authLabel...)
	info = append(info, host[:]...)
	info = append(info, client[:]...)
	info = append(info, nonce[:]...)
	return hkdf32(secret[:], []byte(authLabel), info)
}

func hkdf32(ikm, salt, info []byte) [32]byte {
	var out [32]byte
	if _, err := io.ReadFull(hkdf.New(sha256.New, ikm, salt, info), out[:]); err != nil {
		panic("openhost: hkdf cannot fail for 32 bytes: " + err.Error())
	}
	return out
}
