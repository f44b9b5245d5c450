// Package record is how a device says where it can be reached: a Pkarr
// SignedPacket (a small DNS packet signed by the device's key, stored as a
// BEP44 mutable item on the Mainline DHT and on Pkarr relays) and the
// records keyhole and openhost put inside it.
//
// Everything here is pure encoding and verification: no network. A
// decoder accepts only what it can fully verify, and each error says which
// check failed, so that a relay or DHT node that lies is caught, not
// believed.
package record

import "errors"

// Errors returned (wrapped, with detail) by this package. Tests and
// callers use errors.Is; people read the wrapping text.
var (
	// ErrTruncated: fewer bytes than the fixed header needs.
	ErrTruncated = errors.New("signed packet is truncated")
	// ErrTooLarge: the DNS packet exceeds what BEP44 can store.
	ErrTooLarge = errors.New("too large")
	// ErrBadSignature: a signature does not verify.
	ErrBadSignature = errors.New("bad signature")
	// ErrWrongKey: the packet is validly signed, but not by the key asked for.
	ErrWrongKey = errors.New("signed by a different key")
	// ErrStale: a timestamp lies outside the accepted window.
	ErrStale = errors.New("timestamp outside the accepted window")
	// ErrInvalid: the bytes are signed but do not form a valid record.
	ErrInvalid = errors.New("invalid record")
	// ErrSeqRegression: a packet older than one already seen for the key.
	ErrSeqRegression = errors.New("sequence number went backwards")
)
