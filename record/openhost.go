package record

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"
	"unicode/utf8"

	"github.com/keyhole-p2p/keyhole/identity"
)

// openhost1 record constants (openhost spec/03 and its code; see
// reference/openhost/IMPLEMENTATION-NOTES.md section 3.2).
const (
	OpenhostName       = "_openhost" // TXT name in the host's zone
	OpenhostTTL        = 300
	OpenhostMaxAge     = 7200 * time.Second // MAX_RECORD_AGE_SECS
	OpenhostMaxDrift   = time.Second        // packet seq vs record ts
	openhostDomain     = "openhost1"
	openhostMaxDisc    = 256
	openhostV2         = 2
	openhostV3         = 3 // v2 plus a TURN trailer
	openhostFixedBytes = 1 + 9 + 1 + 8 + 32 + 1 + 32 + 2
)

// OpenhostRecord is the body of openhost's `_openhost` TXT record: what a
// client needs to start a WebRTC handshake with the host.
type OpenhostRecord struct {
	Version         uint8    // 2, or 3 when TURN is set
	Timestamp       uint64   // Unix seconds
	DTLSFingerprint [32]byte // SHA-256 of the host's DTLS certificate (DER)
	Roles           string   // "server" for a host
	Salt            [32]byte // per-host allowlist salt
	Disc            string   // free-form discovery hints, at most 256 bytes
	// TURN is the host's embedded TURN server (v3 only): IPv4, public.
	TURN netip.AddrPort
}

// CanonicalBytes is the byte string the inner signature covers:
//
//	0x01 | "openhost1" | version | ts u64 | dtls_fp[32] | roles_len u8 | roles
//	| salt[32] | disc_len u16 | disc | (v3) turn_ip[4] | turn_port u16
//
// all integers big endian.
func (r *OpenhostRecord) CanonicalBytes() ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	b := make([]byte, 0, openhostFixedBytes+len(r.Roles)+len(r.Disc)+6)
	b = append(b, 0x01)
	b = append(b, openhostDomain...)
	b = append(b, r.Version)
	b = binary.BigEndian.AppendUint64(b, r.Timestamp)
	b = append(b, r.DTLSFingerprint[:]...)
	b = append(b, byte(len(r.Roles)))
	b = append(b, r.Roles...)
	b = append(b, r.Salt[:]...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(r.Disc)))
	b = append(b, r.Disc...)
	if r.Version == openhostV3 {
		ip := r.TURN.Addr().As4()
		b = append(b, ip[:]...)
		b = binary.BigEndian.AppendUint16(b, r.TURN.Port())
	}
	return b, nil
}

// Validate checks the field rules openhost's decoder enforces.
func (r *OpenhostRecord) Validate() error {
	switch r.Version {
	case openhostV2:
		if r.TURN.IsValid() {
			return fmt.Errorf("%w: openhost v2 record cannot carry TURN; use version 3", ErrInvalid)
		}
	case openhostV3:
		a := r.TURN.Addr()
		if !a.Is4() || a.IsUnspecified() || a.IsLoopback() || r.TURN.Port() == 0 {
			return fmt.Errorf("%w: openhost v3 TURN endpoint %v must be a public IPv4 address and a non-zero port", ErrInvalid, r.TURN)
		}
	default:
		return fmt.Errorf("%w: openhost record version %d is not supported (want 2 or 3)", ErrInvalid, r.Version)
	}
	if len(r.Roles) == 0 || len(r.Roles) > 255 || !utf8.ValidString(r.Roles) {
		return fmt.Errorf("%w: openhost roles must be 1-255 bytes of UTF-8", ErrInvalid)
	}
	if len(r.Disc) > openhostMaxDisc || !utf8.ValidString(r.Disc) {
		return fmt.Errorf("%w: openhost disc must be at most %d bytes of UTF-8", ErrInvalid, openhostMaxDisc)
	}
	return nil
}

// ParseOpenhostCanonical is the inverse of CanonicalBytes.
func ParseOpenhostCanonical(b []byte) (*OpenhostRecord, error) {
	bad := func(what string) (*OpenhostRecord, error) {
		return nil, fmt.Errorf("%w: openhost canonical bytes: %s", ErrInvalid, what)
	}
	if len(b) < openhostFixedBytes-2 || b[0] != 0x01 || !bytes.Equal(b[1:10], []byte(openhostDomain)) {
		return bad("missing the 0x01 \"openhost1\" prefix")
	}
	r := &OpenhostRecord{Version: b[10]}
	if r.Version != openhostV2 && r.Version != openhostV3 {
		return bad(fmt.Sprintf("version %d is not supported", r.Version))
	}
	r.Timestamp = binary.BigEndian.Uint64(b[11:19])
	copy(r.DTLSFingerprint[:], b[19:51])
	rest := b[51:]
	n := int(rest[0])
	if len(rest) < 1+n+32+2 {
		return bad("truncated roles or salt")
	}
	r.Roles = string(rest[1 : 1+n])
	rest = rest[1+n:]
	copy(r.Salt[:], rest[:32])
	n = int(binary.BigEndian.Uint16(rest[32:34]))
	rest = rest[34:]
	if len(rest) < n {
		return bad("truncated disc")
	}
	r.Disc = string(rest[:n])
	rest = rest[n:]
	if r.Version == openhostV3 {
		if len(rest) < 6 {
			return bad("truncated TURN trailer")
		}
		r.TURN = netip.AddrPortFrom(netip.AddrFrom4([4]byte(rest[:4])), binary.BigEndian.Uint16(rest[4:6]))
		rest = rest[6:]
	}
	if len(rest) != 0 {
		return bad(fmt.Sprintf("%d trailing bytes", len(rest)))
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return r, nil
}

// SignOpenhost signs the record with the host key and returns the TXT
// value: unpadded base64url of signature(64) | canonical bytes.
func SignOpenhost(key *identity.PrivateKey, r *OpenhostRecord) ([]byte, error) {
	c, err := r.CanonicalBytes()
	if err != nil {
		return nil, err
	}
	blob := append(key.Sign(c), c...)
	out := make([]byte, base64.RawURLEncoding.EncodedLen(len(blob)))
	base64.RawURLEncoding.Encode(out, blob)
	return out, nil
}

// VerifyOpenhost decodes a `_openhost` TXT value and checks it the way
// openhost clients do: structure, then |now-ts| <= 7200 s, then the inner
// signature (strict) under host.
func VerifyOpenhost(host identity.PublicKey, txt []byte, now time.Time) (*OpenhostRecord, error) {
	blob := make([]byte, base64.RawURLEncoding.DecodedLen(len(txt)))
	// One spelling per record: Strict refuses non-zero trailing bits, and
	// CR and LF, which Go's decoder skips, are refused here; otherwise many
	// texts would verify as the same record (found by FuzzVerifyOpenhost).
	n, err := base64.RawURLEncoding.Strict().Decode(blob, txt)
	if err == nil && bytes.ContainsAny(txt, "\r\n") {
		err = errors.New("line breaks inside")
	}
	if err != nil {
		return nil, fmt.Errorf("%w: _openhost value is not unpadded base64url: %v", ErrInvalid, err)
	}
	blob = blob[:n]
	if len(blob) < identity.SignatureSize {
		return nil, fmt.Errorf("%w: _openhost value is %d bytes, shorter than a signature", ErrInvalid, len(blob))
	}
	r, err := ParseOpenhostCanonical(blob[identity.SignatureSize:])
	if err != nil {
		return nil, err
	}
	age := now.Sub(time.Unix(int64(min(r.Timestamp, 1<<62)), 0))
	if age > OpenhostMaxAge || -age > OpenhostMaxAge {
		return nil, fmt.Errorf("%w: openhost record ts %d is %s from now, outside ±%s", ErrStale, r.Timestamp, age.Abs().Round(time.Second), OpenhostMaxAge)
	}
	if err := identity.VerifyStrict(host, blob[identity.SignatureSize:], blob[:identity.SignatureSize]); err != nil {
		return nil, fmt.Errorf("%w: openhost inner signature: %v", ErrBadSignature, err)
	}
	return r, nil
}

// OpenhostFromPacket finds, verifies and returns the host record of a
// verified packet, also requiring the packet timestamp to agree with the
// record's to within a second (openhost's TimestampDrift check).
func OpenhostFromPacket(p *SignedPacket, rrs []RR, now time.Time) (*OpenhostRecord, error) {
	vals := Lookup(rrs, OpenhostName)
	if len(vals) != 1 {
		return nil, fmt.Errorf("%w: want exactly one %s TXT record, found %d", ErrInvalid, OpenhostName, len(vals))
	}
	r, err := VerifyOpenhost(p.PublicKey, vals[0], now)
	if err != nil {
		return nil, err
	}
	drift := p.Time().Sub(time.Unix(int64(r.Timestamp), 0)).Abs()
	if drift > OpenhostMaxDrift {
		return nil, fmt.Errorf("%w: packet timestamp and openhost record ts differ by %s (timestamp drift, at most %s)", ErrStale, drift, OpenhostMaxDrift)
	}
	return r, nil
}
