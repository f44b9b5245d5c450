package record

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/keyhole-p2p/keyhole/identity"
	"golang.org/x/net/dns/dnsmessage"
)

// RR types keyhole reads and writes. Others are kept as raw data.
const (
	TypeA    = uint16(dnsmessage.TypeA)
	TypeAAAA = uint16(dnsmessage.TypeAAAA)
	TypeTXT  = uint16(dnsmessage.TypeTXT)
)

// Apex is the name of the zone's own node (the key itself).
const Apex = "@"

// maxTXTString is the DNS limit on one character-string.
const maxTXTString = 255

// RR is one resource record of a key's zone.
type RR struct {
	// Name is relative to the zone origin: "@" for the key itself,
	// "_openhost" for "_openhost.<key>". A name outside the zone (which a
	// foreign publisher could include) is kept fully qualified, ending in
	// "."; keyhole ignores such records.
	Name string
	TTL  uint32
	Type uint16
	// Text is a TXT record's value: its character-strings concatenated.
	Text []byte
	// Addr is an A or AAAA record's address.
	Addr netip.Addr
	// Raw is the record data of any other type, as received.
	Raw []byte
}

// InZone reports whether the record belongs to the signing key's zone.
func (r RR) InZone() bool { return !strings.HasSuffix(r.Name, ".") }

// TXT makes a TXT record.
func TXT(name string, ttl uint32, value []byte) RR {
	return RR{Name: name, TTL: ttl, Type: TypeTXT, Text: value}
}

// EncodeZone builds the DNS packet Pkarr signs: a response (flags 0x8000,
// id 0) with every record in the answer section, names fully qualified
// under origin and compressed.
func EncodeZone(origin identity.PublicKey, rrs []RR) ([]byte, error) {
	b := dnsmessage.NewBuilder(make([]byte, 0, 512), dnsmessage.Header{Response: true})
	b.EnableCompression()
	if err := b.StartAnswers(); err != nil {
		return nil, err
	}
	for _, r := range rrs {
		if !r.InZone() {
			return nil, fmt.Errorf("%w: record name %q is outside the zone", ErrInvalid, r.Name)
		}
		fq := origin.String() + "."
		if r.Name != Apex && r.Name != "" {
			fq = r.Name + "." + fq
		}
		name, err := dnsmessage.NewName(fq)
		if err != nil {
			return nil, fmt.Errorf("%w: record name %q: %v", ErrInvalid, r.Name, err)
		}
		h := dnsmessage.ResourceHeader{Name: name, Class: dnsmessage.ClassINET, TTL: r.TTL}
		switch r.Type {
		case TypeTXT:
			err = b.TXTResource(h, dnsmessage.TXTResource{TXT: splitTXT(r.Text)})
		case TypeA:
			if !r.Addr.Is4() {
				return nil, fmt.Errorf("%w: A record %q needs an IPv4 address, got %v", ErrInvalid, r.Name, r.Addr)
			}
			err = b.AResource(h, dnsmessage.AResource{A: r.Addr.As4()})
		case TypeAAAA:
			if !r.Addr.Is6() || r.Addr.Is4In6() {
				return nil, fmt.Errorf("%w: AAAA record %q needs an IPv6 address, got %v", ErrInvalid, r.Name, r.Addr)
			}
			err = b.AAAAResource(h, dnsmessage.AAAAResource{AAAA: r.Addr.As16()})
		default:
			h.Type = dnsmessage.Type(r.Type)
			err = b.UnknownResource(h, dnsmessage.UnknownResource{Type: dnsmessage.Type(r.Type), Data: r.Raw})
		}
		if err != nil {
			return nil, fmt.Errorf("%w: record %q: %v", ErrInvalid, r.Name, err)
		}
	}
	out, err := b.Finish()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if len(out) > MaxDNSSize {
		return nil, fmt.Errorf("%w: the records need %d bytes of DNS, a Pkarr packet holds at most %d; publish fewer addresses", ErrTooLarge, len(out), MaxDNSSize)
	}
	return out, nil
}

// splitTXT cuts a value into the 255-byte character-strings DNS allows.
func splitTXT(v []byte) []string {
	if len(v) == 0 {
		return []string{""}
	}
	var out []string
	for len(v) > maxTXTString {
		out = append(out, string(v[:maxTXTString]))
		v = v[maxTXTString:]
	}
	return append(out, string(v))
}

// DecodeZone parses a DNS packet (following compression pointers) and
// returns its answer records with names made relative to origin.
func DecodeZone(origin identity.PublicKey, dns []byte) ([]RR, error) {
	var p dnsmessage.Parser
	if _, err := p.Start(dns); err != nil {
		return nil, fmt.Errorf("%w: DNS header: %v", ErrInvalid, err)
	}
	if err := p.SkipAllQuestions(); err != nil {
		return nil, fmt.Errorf("%w: DNS question section: %v", ErrInvalid, err)
	}
	suffix := "." + origin.String() + "."
	var out []RR
	for {
		h, err := p.AnswerHeader()
		if errors.Is(err, dnsmessage.ErrSectionDone) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: DNS answer %d: %v", ErrInvalid, len(out)+1, err)
		}
		rr := RR{Name: relativeName(h.Name.String(), suffix), TTL: h.TTL, Type: uint16(h.Type)}
		switch h.Type {
		case dnsmessage.TypeTXT:
			r, err := p.TXTResource()
			if err != nil {
				return nil, fmt.Errorf("%w: TXT record %q: %v", ErrInvalid, rr.Name, err)
			}
			rr.Text = []byte(strings.Join(r.TXT, ""))
		case dnsmessage.TypeA:
			r, err := p.AResource()
			if err != nil {
				return nil, fmt.Errorf("%w: A record %q: %v", ErrInvalid, rr.Name, err)
			}
			rr.Addr = netip.AddrFrom4(r.A)
		case dnsmessage.TypeAAAA:
			r, err := p.AAAAResource()
			if err != nil {
				return nil, fmt.Errorf("%w: AAAA record %q: %v", ErrInvalid, rr.Name, err)
			}
			rr.Addr = netip.AddrFrom16(r.AAAA)
		default:
			r, err := p.UnknownResource()
			if err != nil {
				return nil, fmt.Errorf("%w: record %q: %v", ErrInvalid, rr.Name, err)
			}
			rr.Raw = r.Data
		}
		out = append(out, rr)
	}
	return out, nil
}

// relativeName strips the zone suffix (case-insensitively, as DNS does).
func relativeName(fq, suffix string) string {
	if strings.EqualFold(fq, suffix[1:]) {
		return Apex
	}
	if len(fq) > len(suffix) && strings.EqualFold(fq[len(fq)-len(suffix):], suffix) {
		return fq[:len(fq)-len(suffix)]
	}
	return fq
}

// Lookup returns the TXT values named name, in packet order.
func Lookup(rrs []RR, name string) [][]byte {
	var out [][]byte
	for _, r := range rrs {
		if r.Type == TypeTXT && r.InZone() && strings.EqualFold(r.Name, name) {
			out = append(out, r.Text)
		}
	}
	return out
}
