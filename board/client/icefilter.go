package client

import (
	"strings"
)

// ORP's second control (the ICE candidate policy) protects a device's
// network location from the peer it talks to: the board never sees the
// SDP at all (it is sealed), but the peer does. Before an SDP is sealed,
// FilterSDP
//   - drops host candidates (LAN and loopback addresses, mDNS names),
//   - keeps server-reflexive, peer-reflexive and relay candidates with
//     their raddr/rport (the local address behind them) scrubbed to
//     0.0.0.0 and 0,
//   - in relay-only mode keeps relay candidates alone, so the peer never
//     learns the device's IP at all,
//   - drops candidate lines it cannot parse (failing closed), and
//   - blanks the addresses of c=, o= and a=rtcp lines, which browsers
//     and pion fill with a local address or a placeholder.

// FilterSDP applies the candidate policy to an SDP and reports how many
// candidates it kept.
func FilterSDP(sdp string, relayOnly bool) (string, int) {
	// SDP lines end in CRLF (RFC 8866); a bare LF is accepted on input,
	// and blank lines are dropped.
	lines := strings.Split(sdp, "\n")
	out := make([]string, 0, len(lines))
	kept := 0
	for _, l := range lines {
		l = strings.TrimRight(l, "\r")
		switch {
		case l == "":
			continue
		case strings.HasPrefix(l, "a=candidate:"):
			c, ok := FilterCandidate(strings.TrimPrefix(l, "a="), relayOnly)
			if !ok {
				continue
			}
			kept++
			out = append(out, "a="+c)
		case strings.HasPrefix(l, "c="):
			out = append(out, blankAddr(l, 2))
		case strings.HasPrefix(l, "o="):
			out = append(out, blankAddr(l, 5))
		case strings.HasPrefix(l, "a=rtcp:"):
			// a=rtcp:<port> IN IP4 <addr>: only meaningful for RTP
			// without rtcp-mux, and it names a local address.
			continue
		default:
			out = append(out, l)
		}
	}
	if len(out) == 0 {
		return "", 0
	}
	return strings.Join(out, "\r\n") + "\r\n", kept
}

// blankAddr replaces the address in an SDP "... IN IP4 <addr>" line;
// fields are counted after the "x=" prefix.
func blankAddr(line string, addrField int) string {
	f := strings.Fields(line[2:])
	if len(f) <= addrField || f[addrField-2] != "IN" {
		return line
	}
	switch f[addrField-1] {
	case "IP4":
		f[addrField] = "0.0.0.0"
	case "IP6":
		f[addrField] = "::"
	default:
		return line
	}
	return line[:2] + strings.Join(f, " ")
}

// FilterCandidate applies the policy to one candidate attribute
// ("candidate:..." as in SDP or in a trickled RTCIceCandidate). ok is
// false if the candidate must not be sent.
func FilterCandidate(c string, relayOnly bool) (string, bool) {
	if !strings.HasPrefix(c, "candidate:") {
		return "", false
	}
	f := strings.Fields(c)
	// foundation component transport priority address port "typ" type
	if len(f) < 8 || f[6] != "typ" {
		return "", false
	}
	switch typ := f[7]; {
	case typ == "relay":
	case relayOnly:
		return "", false
	case typ == "srflx" || typ == "prflx":
	default: // host, or anything unknown
		return "", false
	}
	for i := 8; i+1 < len(f); i += 2 {
		switch f[i] {
		case "raddr":
			f[i+1] = "0.0.0.0"
		case "rport":
			f[i+1] = "0"
		}
	}
	// An odd trailing token would be an extension without a value:
	// malformed, so refused.
	if (len(f)-8)%2 != 0 {
		return "", false
	}
	return strings.Join(f, " "), true
}
