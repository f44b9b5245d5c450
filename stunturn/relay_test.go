package stunturn

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"
)

// TestRelayLimits: past the byte quota or the rate, relayed packets are
// dropped: the peer gets at most what the limit allows.
func TestRelayLimits(t *testing.T) {
	for _, tc := range []struct {
		name   string
		o      Options
		sends  int // packets of 1000 bytes
		atMost int
	}{
		{"byte quota", Options{AllocationBytes: 10_000}, 40, 10_000},
		{"rate", Options{AllocationRate: 1}, 150, minBurst},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Users = map[string]string{"u": "p"}
			s := start(t, tc.o)
			relay := mustAllocate(t, udpClient(t, s, "u", "p"))
			peer := peerSocket(t)
			pkt := bytes.Repeat([]byte{'x'}, 1000)
			for range tc.sends {
				if _, err := relay.WriteTo(pkt, peer.LocalAddr()); err != nil {
					t.Fatal(err)
				}
			}
			got := 0
			for {
				msg, _, ok := recv(t, peer, 300*time.Millisecond)
				if !ok {
					break
				}
				got += len(msg)
			}
			if got == 0 || got > tc.atMost {
				t.Fatalf("peer got %d bytes of %d sent, want 1 to %d", got, tc.sends*len(pkt), tc.atMost)
			}
			if st := s.Stats(); st.BytesRelayed != uint64(got) {
				t.Fatalf("BytesRelayed %d, the peer got %d", st.BytesRelayed, got)
			}
			if tc.o.AllocationBytes == 0 {
				return
			}
			// The quota is spent both ways: the peer's answer is dropped too.
			for range 3 {
				peer.WriteTo([]byte("late"), relay.LocalAddr())
			}
			if msg, _, ok := recv(t, relay, 300*time.Millisecond); ok {
				t.Fatalf("client got %q past the quota", msg)
			}
		})
	}
}

// TestUnpermittedTrafficIsFree: datagrams from addresses the client
// gave no permission to are not relayed, and do not use up the
// allocation's quota (else anyone who found the port could).
func TestUnpermittedTrafficIsFree(t *testing.T) {
	s := start(t, Options{Users: map[string]string{"u": "p"}, AllocationBytes: 3000})
	relay := mustAllocate(t, udpClient(t, s, "u", "p"))
	stranger := peerSocket(t)
	for range 10 {
		if _, err := stranger.WriteTo(bytes.Repeat([]byte{'x'}, 1000), relay.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	if msg, _, ok := recv(t, relay, 200*time.Millisecond); ok {
		t.Fatalf("client got %d bytes from a stranger", len(msg))
	}
	if st := s.Stats(); st.BytesRelayed != 0 {
		t.Fatalf("%d bytes counted", st.BytesRelayed)
	}
	roundTrip(t, relay, peerSocket(t))
}

// TestRelayConnCounting checks relayConn alone: both directions spend
// one quota, and a drop on write still reports the packet sent.
func TestRelayConnCounting(t *testing.T) {
	g := &relayGen{stats: &counters{}, log: quietPion.l, conns: map[string]*relayConn{}}
	inner, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rc := &relayConn{PacketConn: inner, g: g, key: "k", peers: map[netip.Addr]int{}}
	rc.left.Store(10)
	defer rc.Close()
	peer := peerSocket(t)
	g.conns["k"] = rc
	g.permit(stringAddr("k"), net.IPv4(127, 0, 0, 1), 1)

	if n, err := rc.WriteTo([]byte("123456"), peer.LocalAddr()); n != 6 || err != nil {
		t.Fatalf("WriteTo = %d, %v", n, err)
	}
	if msg, _, _ := recv(t, peer, time.Second); msg != "123456" {
		t.Fatalf("peer got %q", msg)
	}
	peer.WriteTo([]byte("abcdef"), inner.LocalAddr()) // 6 more: over
	peer.WriteTo([]byte("abcd"), inner.LocalAddr())   // 4 more: fits
	if msg, _, _ := recv(t, rc, time.Second); msg != "abcd" {
		t.Fatalf("read %q, want the packet that fits", msg)
	}
	if n, err := rc.WriteTo([]byte("z"), peer.LocalAddr()); n != 1 || err != nil {
		t.Fatalf("WriteTo over quota = %d, %v; want 1, nil", n, err)
	}
	if msg, _, ok := recv(t, peer, 200*time.Millisecond); ok {
		t.Fatalf("peer got %q past the quota", msg)
	}
	if got := g.stats.bytes.Load(); got != 10 {
		t.Fatalf("counted %d bytes, want 10", got)
	}
	rc.Close()
	if _, ok := g.conns["k"]; ok {
		t.Fatal("closed relay still registered")
	}
}

type stringAddr string

func (a stringAddr) Network() string { return "udp" }
func (a stringAddr) String() string  { return string(a) }
