package record

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// KPSAddr is a Key Pinned Streams address, <ip>:<port>:<certhash>: a UDP
// endpoint and the SHA-256 of the certificate the endpoint must present
// (KPS SPEC section 2). Because the whole packet is signed by the device
// key, publishing a KPSAddr binds the certificate to the identity.
type KPSAddr struct {
	AddrPort netip.AddrPort
	CertHash [32]byte // SHA-256 of the certificate's DER bytes
}

// CertHashOf returns the certhash digest of a DER certificate.
func CertHashOf(der []byte) [32]byte { return sha256.Sum256(der) }

// EncodeCertHash writes the KPS certhash: multibase 'u' (unpadded
// base64url) of the multihash 0x12 0x20 || digest.
func EncodeCertHash(d [32]byte) string {
	return "u" + base64.RawURLEncoding.EncodeToString(append([]byte{0x12, 0x20}, d[:]...))
}

// ParseCertHash reads a KPS certhash. Only sha2-256 multihashes exist in KPS v0.
func ParseCertHash(s string) ([32]byte, error) {
	var d [32]byte
	if !strings.HasPrefix(s, "u") {
		return d, fmt.Errorf("%w: certhash %q must start with multibase prefix 'u'", ErrInvalid, s)
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(s[1:])
	if err == nil && strings.ContainsAny(s, "\r\n") {
		err = errors.New("line breaks inside") // the decoder would skip them
	}
	if err != nil {
		return d, fmt.Errorf("%w: certhash %q is not unpadded base64url", ErrInvalid, s)
	}
	if len(b) != 34 || b[0] != 0x12 || b[1] != 0x20 {
		return d, fmt.Errorf("%w: certhash %q is not a sha2-256 multihash (0x12 0x20 + 32 bytes)", ErrInvalid, s)
	}
	copy(d[:], b[2:])
	return d, nil
}

// String gives the canonical address form; IPv6 hosts are bracketed.
func (a KPSAddr) String() string { return a.AddrPort.String() + ":" + EncodeCertHash(a.CertHash) }

// ParseKPSAddr parses <ip>:<port>:<certhash> or [<ipv6>]:<port>:<certhash>.
func ParseKPSAddr(s string) (KPSAddr, error) {
	var a KPSAddr
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return a, fmt.Errorf("%w: KPS address %q is not <ip>:<port>:<certhash>", ErrInvalid, s)
	}
	ap, err := netip.ParseAddrPort(s[:i])
	if err != nil {
		return a, fmt.Errorf("%w: KPS address %q: %v", ErrInvalid, s, err)
	}
	if ap.Port() == 0 || ap.Addr().Zone() != "" || ap.Addr().Is4In6() {
		return a, fmt.Errorf("%w: KPS address %q needs a port 1-65535 and a plain IPv4 or IPv6 address", ErrInvalid, s)
	}
	d, err := ParseCertHash(s[i+1:])
	if err != nil {
		return a, err
	}
	return KPSAddr{AddrPort: ap, CertHash: d}, nil
}
