package client

import (
	"strings"
	"testing"
)

const sampleSDP = "v=0\r\n" +
	"o=- 4611731400430051336 2 IN IP4 192.168.1.20\r\n" +
	"s=-\r\n" +
	"t=0 0\r\n" +
	"m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n" +
	"c=IN IP4 192.168.1.20\r\n" +
	"a=rtcp:9 IN IP4 192.168.1.20\r\n" +
	"a=candidate:1 1 udp 2130706431 192.168.1.20 50000 typ host generation 0\r\n" +
	"a=candidate:2 1 udp 2130706431 4f1c2d3e-1111-2222-3333-444455556666.local 50001 typ host\r\n" +
	"a=candidate:3 1 udp 1694498815 203.0.113.7 61000 typ srflx raddr 192.168.1.20 rport 50000\r\n" +
	"a=candidate:4 1 udp 16777215 198.51.100.9 3478 typ relay raddr 203.0.113.7 rport 61000\r\n" +
	"a=candidate:5 1 tcp 1518280447 192.168.1.20 9 typ host tcptype active\r\n" +
	"a=candidate:6 1 udp 1 10.0.0.1 1 typ\r\n" +
	"a=candidate:7 1 udp 1 10.0.0.2 1 typ srflx raddr\r\n" +
	"a=end-of-candidates\r\n"

func TestFilterSDP(t *testing.T) {
	out, kept := FilterSDP(sampleSDP, false)
	if kept != 2 {
		t.Fatalf("kept %d candidates, want 2 (srflx, relay):\n%s", kept, out)
	}
	for _, leak := range []string{"192.168.1.20", ".local", "typ host", "10.0.0.1", "10.0.0.2"} {
		if strings.Contains(out, leak) {
			t.Errorf("filtered SDP still has %q:\n%s", leak, out)
		}
	}
	for _, want := range []string{"203.0.113.7 61000 typ srflx raddr 0.0.0.0 rport 0", "198.51.100.9 3478 typ relay raddr 0.0.0.0 rport 0", "c=IN IP4 0.0.0.0", "a=end-of-candidates"} {
		if !strings.Contains(out, want) {
			t.Errorf("filtered SDP lacks %q:\n%s", want, out)
		}
	}
	if !strings.HasSuffix(out, "\r\n") || strings.Contains(strings.ReplaceAll(out, "\r\n", ""), "\n") {
		t.Error("line endings changed")
	}
}

func TestFilterSDPRelayOnly(t *testing.T) {
	out, kept := FilterSDP(sampleSDP, true)
	if kept != 1 || strings.Contains(out, "203.0.113.7 61000") || !strings.Contains(out, "typ relay") {
		t.Fatalf("relay-only kept %d:\n%s", kept, out)
	}
	if strings.Contains(out, "203.0.113.7") {
		t.Fatal("the relay candidate's raddr (the device's public IP) survived")
	}
}

func TestFilterCandidate(t *testing.T) {
	cases := []struct {
		in, want string
		ok       bool
	}{
		{"candidate:1 1 udp 1 192.0.2.1 5 typ host", "", false},
		{"candidate:1 1 udp 1 192.0.2.1 5 typ srflx raddr 10.1.1.1 rport 7", "candidate:1 1 udp 1 192.0.2.1 5 typ srflx raddr 0.0.0.0 rport 0", true},
		{"candidate:1 1 udp 1 192.0.2.1 5 typ prflx", "candidate:1 1 udp 1 192.0.2.1 5 typ prflx", true},
		{"candidate:1 1 udp 1 192.0.2.1 5 typ weird", "", false},
		{"a=candidate:1 1 udp 1 192.0.2.1 5 typ relay", "", false},
		{"candidate:1 1 udp 1 192.0.2.1 5", "", false},
		{"", "", false},
	}
	for _, c := range cases {
		got, ok := FilterCandidate(c.in, false)
		if ok != c.ok || got != c.want {
			t.Errorf("%q: got %q %v", c.in, got, ok)
		}
	}
}

func FuzzFilterSDP(f *testing.F) {
	f.Add(sampleSDP, false)
	f.Add("a=candidate:1 1 udp 1 10.9.9.9 1 typ host\n", true)
	f.Fuzz(func(t *testing.T, sdp string, relayOnly bool) {
		out, _ := FilterSDP(sdp, relayOnly)
		for _, l := range strings.Split(out, "\n") {
			l = strings.TrimSuffix(l, "\r")
			if !strings.HasPrefix(l, "a=candidate:") {
				continue
			}
			f := strings.Fields(l)
			if len(f) < 8 || f[6] != "typ" || f[7] == "host" || (relayOnly && f[7] != "relay") {
				t.Fatalf("a forbidden candidate passed: %q", l)
			}
			for i := 8; i+1 < len(f); i += 2 {
				if (f[i] == "raddr" && f[i+1] != "0.0.0.0") || (f[i] == "rport" && f[i+1] != "0") {
					t.Fatalf("raddr/rport not scrubbed: %q", l)
				}
			}
		}
		// Filtering is idempotent.
		again, _ := FilterSDP(out, relayOnly)
		if again != out {
			t.Fatalf("not idempotent:\n%q\n%q", out, again)
		}
	})
}
