package kps

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"
)

// icePwdLabel prefixes the ufrag in the ICE password derivation.
const icePwdLabel = "kps-ice-pwd-v1:"

// icePassword derives the ICE password both sides compute from the
// certhash (SPEC section 5.2): only a holder of the address passes STUN
// MESSAGE-INTEGRITY, so probers never reach DTLS.
func icePassword(digest [32]byte, ufrag string) string {
	m := hmac.New(sha256.New, digest[:])
	m.Write([]byte(icePwdLabel + ufrag))
	return base64.RawStdEncoding.EncodeToString(m.Sum(nil))
}

// newUfrag is 72 random bits as hex: ice-chars only, so every KPS
// implementation (libdatachannel refuses '-' and '_') accepts it.
func newUfrag() string {
	b := make([]byte, 9)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// sdpFingerprint is the a=fingerprint form: upper-case colon-separated hex.
func sdpFingerprint(d [32]byte) string {
	var sb strings.Builder
	for i, b := range d {
		if i > 0 {
			sb.WriteByte(':')
		}
		fmt.Fprintf(&sb, "%02X", b)
	}
	return sb.String()
}

func ipFamily(a netip.Addr) (string, string) {
	if a.Is4() {
		return "IP4", "0.0.0.0"
	}
	return "IP6", "::"
}

// synthesizeAnswer is the server's answer as a client builds it from the
// address alone (SPEC section 5.2): ICE-lite, DTLS passive, one host
// candidate, the certhash as the pinned fingerprint.
func synthesizeAnswer(ap netip.AddrPort, ufrag, pwd string, digest [32]byte) string {
	fam, any := ipFamily(ap.Addr())
	ip := ap.Addr().String()
	lines := []string{
		"v=0",
		"o=- 0 0 IN " + fam + " " + any,
		"s=-",
		"t=0 0",
		"a=ice-lite",
		fmt.Sprintf("m=application %d UDP/DTLS/SCTP webrtc-datachannel", ap.Port()),
		"c=IN " + fam + " " + ip,
		"a=mid:0",
		"a=ice-ufrag:" + ufrag,
		"a=ice-pwd:" + pwd,
		"a=fingerprint:sha-256 " + sdpFingerprint(digest),
		"a=setup:passive",
		"a=sctp-port:5000",
		"a=max-message-size:1048576",
		fmt.Sprintf("a=candidate:1 1 UDP 1 %s %d typ host", ip, ap.Port()),
	}
	return strings.Join(lines, "\r\n") + "\r\n"
}

// placeholderFingerprint stands in for the client's fingerprint in the
// offer the server fakes; the server does not verify clients (the keyhole
// auth exchange does, where it matters).
const placeholderFingerprint = "AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99"

// fakeOffer is the client's offer as the server reconstructs it from the
// first STUN request: it knows only the ufrag and the client's address.
func fakeOffer(remote netip.AddrPort, ufrag, pwd string) string {
	fam, any := ipFamily(remote.Addr())
	lines := []string{
		"v=0",
		"o=- 0 0 IN " + fam + " " + any,
		"s=-",
		"t=0 0",
		fmt.Sprintf("m=application %d UDP/DTLS/SCTP webrtc-datachannel", remote.Port()),
		"c=IN " + fam + " " + remote.Addr().String(),
		"a=mid:0",
		"a=ice-ufrag:" + ufrag,
		"a=ice-pwd:" + pwd,
		"a=fingerprint:sha-256 " + placeholderFingerprint,
		"a=setup:active",
		"a=sctp-port:5000",
		"a=max-message-size:1048576",
	}
	return strings.Join(lines, "\r\n") + "\r\n"
}
