package identity

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/keyhole-p2p/keyhole/canonjson"
	"golang.org/x/crypto/curve25519"
)

// TransportKey is an X25519 key pair used only to seal signaling and
// messages. It is kept apart from the identity key (ORP section 3.1) and
// tied to it by a Binding.
type TransportKey struct {
	secret [32]byte
	public [32]byte
}

// NewTransportKey makes a fresh X25519 key pair from the system CSPRNG.
func NewTransportKey() (*TransportKey, error) {
	var s [32]byte
	if _, err := rand.Read(s[:]); err != nil {
		return nil, fmt.Errorf("identity: reading system randomness: %w", err)
	}
	return TransportKeyFromSecret(s)
}

// TransportKeyFromSecret rebuilds a transport key from its 32-byte secret.
func TransportKeyFromSecret(secret [32]byte) (*TransportKey, error) {
	pub, err := x25519Public(secret)
	if err != nil {
		return nil, fmt.Errorf("identity: transport key: %w", err)
	}
	return &TransportKey{secret: secret, public: pub}, nil
}

// Public returns the X25519 public key.
func (t *TransportKey) Public() [32]byte { return t.public }

// Secret returns a copy of the X25519 secret, for sealing code only.
func (t *TransportKey) Secret() [32]byte { return t.secret }

// String never reveals the secret.
func (t *TransportKey) String() string { return "[redacted transport key]" }

// Binding is the signed statement "this X25519 key belongs to this
// Ed25519 identity" of ORP section 3.2. A peer must verify it before
// sealing anything to the transport key; without it a man in the middle
// could substitute its own key.
//
// The signature covers the canonical JSON (canonjson) of the object with
// the three other fields; all keys are unpadded base64url and created_utc
// is an ISO-8601 UTC time as JavaScript's Date#toISOString writes it.
type Binding struct {
	IdentityKey  string `json:"identity_key"`
	TransportKey string `json:"transport_key"`
	CreatedUTC   string `json:"created_utc"`
	BindingSig   string `json:"binding_sig"`
}

// ErrBinding is wrapped by every binding verification failure.
var ErrBinding = errors.New("invalid transport key binding")

// isoMillis is JavaScript's Date#toISOString layout.
const isoMillis = "2006-01-02T15:04:05.000Z"

var b64u = base64.RawURLEncoding

// NewBinding signs a binding of tk to id, dated now.
func NewBinding(id *PrivateKey, tk [32]byte, now time.Time) (Binding, error) {
	pub := id.Public()
	b := Binding{
		IdentityKey:  b64u.EncodeToString(pub[:]),
		TransportKey: b64u.EncodeToString(tk[:]),
		CreatedUTC:   now.UTC().Format(isoMillis),
	}
	msg, err := b.signedBytes()
	if err != nil {
		return Binding{}, err
	}
	b.BindingSig = b64u.EncodeToString(id.Sign(msg))
	return b, nil
}

func (b Binding) signedBytes() ([]byte, error) {
	return canonjson.Marshal(map[string]string{
		"identity_key":  b.IdentityKey,
		"transport_key": b.TransportKey,
		"created_utc":   b.CreatedUTC,
	})
}

// BindingMaxSkew is how far in the future a binding's creation time may
// lie before it is refused (clocks differ; signatures from the future are
// a sign of a replay prepared in advance or a broken clock).
const BindingMaxSkew = 5 * time.Minute

// Verify checks the binding's signature and fields and returns the two
// keys it binds. If want is non-zero, the binding must name that identity.
func (b Binding) Verify(want PublicKey, now time.Time) (PublicKey, [32]byte, error) {
	var id PublicKey
	var tk [32]byte
	idb, err := b64u.DecodeString(b.IdentityKey)
	if err != nil || len(idb) != PublicKeySize {
		return id, tk, fmt.Errorf("%w: identity_key is not 32 bytes of unpadded base64url", ErrBinding)
	}
	copy(id[:], idb)
	if !want.IsZero() && id != want {
		return id, tk, fmt.Errorf("%w: it binds identity %s, expected %s", ErrBinding, id, want)
	}
	tkb, err := b64u.DecodeString(b.TransportKey)
	if err != nil || len(tkb) != 32 {
		return id, tk, fmt.Errorf("%w: transport_key is not 32 bytes of unpadded base64url", ErrBinding)
	}
	copy(tk[:], tkb)
	if err := checkX25519Public(tk); err != nil {
		return id, tk, fmt.Errorf("%w: transport_key %v", ErrBinding, err)
	}
	created, err := time.Parse(time.RFC3339Nano, b.CreatedUTC)
	if err != nil {
		return id, tk, fmt.Errorf("%w: created_utc %q is not an ISO-8601 time", ErrBinding, b.CreatedUTC)
	}
	if created.After(now.Add(BindingMaxSkew)) {
		return id, tk, fmt.Errorf("%w: created_utc %s is in the future", ErrBinding, b.CreatedUTC)
	}
	sig, err := b64u.DecodeString(b.BindingSig)
	if err != nil {
		return id, tk, fmt.Errorf("%w: binding_sig is not unpadded base64url", ErrBinding)
	}
	msg, err := b.signedBytes()
	if err != nil {
		return id, tk, fmt.Errorf("%w: %v", ErrBinding, err)
	}
	if err := VerifyStrict(id, msg, sig); err != nil {
		return id, tk, fmt.Errorf("%w: %v", ErrBinding, err)
	}
	return id, tk, nil
}

// checkX25519Public refuses low-order public keys, with which every
// shared secret is zero and sealing would protect nothing.
func checkX25519Public(pub [32]byte) error {
	probe := [32]byte{9} // any fixed scalar works; the result is discarded
	if _, err := curve25519.X25519(probe[:], pub[:]); err != nil {
		return errors.New("is a low-order point")
	}
	return nil
}
