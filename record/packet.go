package record

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"time"

	"github.com/keyhole-p2p/keyhole/identity"
)

// Sizes of the SignedPacket encoding (Pkarr's SignedPacket::as_bytes):
// public key 32 | signature 64 | timestamp (µs, big endian) 8 | DNS packet.
const (
	headerSize    = identity.PublicKeySize + identity.SignatureSize + 8
	MaxDNSSize    = 1000 // BEP44's limit on v
	MaxPacketSize = headerSize + MaxDNSSize
)

// DefaultWindow is how far a packet's timestamp may be from now, either
// way, before it is refused. It matches openhost's MAX_RECORD_AGE_SECS:
// publishers re-sign at least hourly, so anything older is abandoned.
const DefaultWindow = 2 * time.Hour

// SignedPacket is a DNS packet signed by the zone's key. Timestamp is in
// microseconds since the Unix epoch and doubles as the BEP44 seq, so a
// newer packet always wins a compare-and-swap.
type SignedPacket struct {
	PublicKey identity.PublicKey
	Signature [identity.SignatureSize]byte
	Timestamp uint64
	DNS       []byte
}

// Signable returns the bytes a BEP44 mutable item's signature covers
// when there is no salt: the bencoded "3:seqi<seq>e1:v<len>:<v>".
func Signable(seq uint64, v []byte) []byte {
	b := make([]byte, 0, 32+len(v))
	b = append(b, "3:seqi"...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, "e1:v"...)
	b = strconv.AppendInt(b, int64(len(v)), 10)
	b = append(b, ':')
	return append(b, v...)
}

// Micros converts a time to a packet timestamp.
func Micros(t time.Time) uint64 { return uint64(t.UnixMicro()) }

// Sign signs a DNS packet with key at timestamp ts (µs).
func Sign(key *identity.PrivateKey, dns []byte, ts uint64) (*SignedPacket, error) {
	if len(dns) > MaxDNSSize {
		return nil, fmt.Errorf("%w: the DNS packet is %d bytes, a Pkarr record holds at most %d; publish fewer records", ErrTooLarge, len(dns), MaxDNSSize)
	}
	p := &SignedPacket{PublicKey: key.Public(), Timestamp: ts, DNS: append([]byte(nil), dns...)}
	copy(p.Signature[:], key.Sign(Signable(ts, dns)))
	return p, nil
}

// ParsePacket splits the wire form into its fields. It checks sizes only;
// call Verify before believing anything in it.
func ParsePacket(b []byte) (*SignedPacket, error) {
	if len(b) < headerSize {
		return nil, fmt.Errorf("%w: %d bytes, a signed packet has at least %d (key, signature, timestamp)", ErrTruncated, len(b), headerSize)
	}
	if len(b) > MaxPacketSize {
		return nil, fmt.Errorf("%w: signed packet is %d bytes, at most %d are allowed (DNS part %d > %d)", ErrTooLarge, len(b), MaxPacketSize, len(b)-headerSize, MaxDNSSize)
	}
	p := &SignedPacket{}
	copy(p.PublicKey[:], b[:32])
	copy(p.Signature[:], b[32:96])
	p.Timestamp = binary.BigEndian.Uint64(b[96:104])
	p.DNS = append([]byte(nil), b[104:]...)
	return p, nil
}

// ParseRelayPayload parses the body of a Pkarr relay GET or PUT: the same
// fields without the key, which the URL carries.
func ParseRelayPayload(key identity.PublicKey, b []byte) (*SignedPacket, error) {
	full := make([]byte, 0, len(b)+32)
	full = append(full, key[:]...)
	return ParsePacket(append(full, b...))
}

// Bytes is the wire form (Pkarr's as_bytes).
func (p *SignedPacket) Bytes() []byte {
	b := make([]byte, headerSize, headerSize+len(p.DNS))
	copy(b, p.PublicKey[:])
	copy(b[32:], p.Signature[:])
	binary.BigEndian.PutUint64(b[96:], p.Timestamp)
	return append(b, p.DNS...)
}

// RelayPayload is the relay body: signature | timestamp | DNS packet.
func (p *SignedPacket) RelayPayload() []byte { return p.Bytes()[32:] }

// Time is the timestamp as a time.
func (p *SignedPacket) Time() time.Time { return time.UnixMicro(int64(p.Timestamp)) }

// VerifySignature checks the BEP44 signature strictly.
func (p *SignedPacket) VerifySignature() error {
	if len(p.DNS) > MaxDNSSize {
		return fmt.Errorf("%w: DNS packet is %d bytes, at most %d are allowed", ErrTooLarge, len(p.DNS), MaxDNSSize)
	}
	if err := identity.VerifyStrict(p.PublicKey, Signable(p.Timestamp, p.DNS), p.Signature[:]); err != nil {
		return fmt.Errorf("%w: the packet was altered or not signed by %s (%v)", ErrBadSignature, p.PublicKey, err)
	}
	return nil
}

// VerifyOptions tune Verify. The zero value checks the signature, the
// default window around the current time and the DNS encoding.
type VerifyOptions struct {
	// Key, if set, is the key the packet must be signed by.
	Key identity.PublicKey
	// Now is the reference time; zero means time.Now().
	Now time.Time
	// Window is how far the timestamp may be from Now; zero means
	// DefaultWindow, negative disables the check.
	Window time.Duration
}

// Verify checks, in order: the expected key, the signature, the
// timestamp window, and that the DNS packet parses. It returns the
// packet's resource records.
func (p *SignedPacket) Verify(o VerifyOptions) ([]RR, error) {
	if !o.Key.IsZero() && o.Key != p.PublicKey {
		return nil, fmt.Errorf("%w: signed by %s, expected %s", ErrWrongKey, p.PublicKey, o.Key)
	}
	if err := p.VerifySignature(); err != nil {
		return nil, err
	}
	if err := p.CheckWindow(o.Now, o.Window); err != nil {
		return nil, err
	}
	return DecodeZone(p.PublicKey, p.DNS)
}

// CheckWindow refuses timestamps further than window from now (zero
// values mean time.Now and DefaultWindow; a negative window disables it).
func (p *SignedPacket) CheckWindow(now time.Time, window time.Duration) error {
	if window < 0 {
		return nil
	}
	if window == 0 {
		window = DefaultWindow
	}
	if now.IsZero() {
		now = time.Now()
	}
	if p.Timestamp > uint64(1)<<62 {
		return fmt.Errorf("%w: timestamp %d µs is not a plausible time", ErrStale, p.Timestamp)
	}
	d := now.Sub(p.Time())
	switch {
	case d > window:
		return fmt.Errorf("%w: signed %s ago at %s, older than %s; the publisher has stopped republishing", ErrStale, d.Round(time.Second), p.Time().UTC().Format(time.RFC3339), window)
	case -d > window:
		return fmt.Errorf("%w: signed %s in the future at %s, more than %s ahead; check the publisher's clock", ErrStale, (-d).Round(time.Second), p.Time().UTC().Format(time.RFC3339), window)
	}
	return nil
}

// CheckSeq refuses a packet older than the newest one already accepted
// for the same key (openhost's SeqRegression).
func (p *SignedPacket) CheckSeq(lastSeen uint64) error {
	if p.Timestamp < lastSeen {
		return fmt.Errorf("%w: got seq %d, already have %d", ErrSeqRegression, p.Timestamp, lastSeen)
	}
	return nil
}
