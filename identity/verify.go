package identity

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"

	"filippo.io/edwards25519"
)

// ErrSignature is wrapped by every signature verification failure; the
// wrapping text says which check failed.
var ErrSignature = errors.New("invalid signature")

// VerifyStrict verifies an Ed25519 signature the way ed25519-dalek's
// verify_strict does, and a little stricter:
//   - S must be canonical (S < L), so a signature has one encoding;
//   - A and R must be canonical encodings of points on the curve;
//   - A and R must not be of small order, which would let one signature
//     verify for many messages or keys;
//   - the cofactorless equation [S]B = R + [k]A must hold exactly.
func VerifyStrict(pub PublicKey, msg, sig []byte) error {
	if len(sig) != SignatureSize {
		return fmt.Errorf("%w: must be %d bytes, got %d", ErrSignature, SignatureSize, len(sig))
	}
	if _, err := new(edwards25519.Scalar).SetCanonicalBytes(sig[32:]); err != nil {
		return fmt.Errorf("%w: S is not canonical (S >= L)", ErrSignature)
	}
	if _, err := strictPoint(pub[:]); err != nil {
		return fmt.Errorf("%w: public key %v", ErrSignature, err)
	}
	if _, err := strictPoint(sig[:32]); err != nil {
		return fmt.Errorf("%w: R %v", ErrSignature, err)
	}
	if !ed25519.Verify(pub[:], msg, sig) {
		return fmt.Errorf("%w: does not match the message and key", ErrSignature)
	}
	return nil
}

var identityPoint = edwards25519.NewIdentityPoint()

// strictPoint decodes a point, refusing non-canonical encodings (which
// edwards25519.SetBytes accepts) and points of small order.
func strictPoint(b []byte) (*edwards25519.Point, error) {
	p, err := new(edwards25519.Point).SetBytes(b)
	if err != nil {
		return nil, errors.New("is not a point on the curve")
	}
	if !bytes.Equal(p.Bytes(), b) {
		return nil, errors.New("is not canonically encoded")
	}
	if new(edwards25519.Point).MultByCofactor(p).Equal(identityPoint) == 1 {
		return nil, errors.New("is a small-order point")
	}
	return p, nil
}
