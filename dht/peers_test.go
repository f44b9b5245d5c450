package dht

import (
	"context"
	"crypto/sha1"
	"errors"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/anacrolix/dht/v2/krpc"
	peer_store "github.com/anacrolix/dht/v2/peer-store"
)

// Two services on one machine announce under one info-hash; a third node
// finds both, and nothing under another hash.
func TestAnnouncePeers(t *testing.T) {
	tn := startTestnet(t, 50)
	ih := sha1.Sum([]byte("keyhole test: community nodes"))
	other := sha1.Sum([]byte("keyhole test: nobody here"))
	a, b, c := tn.Nodes[7], tn.Nodes[31], client(t, tn)
	p1111 := netip.MustParseAddrPort("127.0.0.1:1111")
	p2222 := netip.MustParseAddrPort("127.0.0.1:2222")

	start := time.Now()
	got, err := a.Announce(ctxT(t, 10*time.Second), ih, 1111)
	if err != nil || len(got) != 0 {
		t.Fatalf("first announce: %v %v", got, err)
	}
	t.Logf("first announce took %v", time.Since(start).Round(time.Millisecond))
	start = time.Now()
	got, err = b.Announce(ctxT(t, 10*time.Second), ih, 2222)
	if err != nil || !slices.Equal(got, []netip.AddrPort{p1111}) {
		t.Fatalf("second announce: got %v (%v), want the first", got, err)
	}
	t.Logf("second announce took %v", time.Since(start).Round(time.Millisecond))

	for _, tc := range []struct {
		name string
		ih   [20]byte
		want []netip.AddrPort
	}{
		{"announced hash", ih, []netip.AddrPort{p1111, p2222}},
		{"other hash", other, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			got, err := c.Peers(ctxT(t, 10*time.Second), tc.ih)
			if err != nil {
				t.Fatal(err)
			}
			slices.SortFunc(got, netip.AddrPort.Compare)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			t.Logf("took %v", time.Since(start).Round(time.Millisecond))
		})
	}
}

// Peers and Announce return with ctx's error when ctx ends, even while a
// node they wait on never answers.
func TestPeersContext(t *testing.T) {
	// A node that answers pings, so it enters the routing table, and
	// nothing else, so every search waits on it.
	mute := startFakeNode(t, krpc.ID{1}, func(q krpc.Msg) (krpc.Msg, bool) { return krpc.Msg{}, q.Q == "ping" })
	c, err := New(Config{Addr: "127.0.0.1:0", Bootstrap: []string{mute.addr().String()}, Testnet: true, QueryTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.AddNode(mute.addr().AddrPort())
	if c.NumNodes() != 1 {
		t.Fatalf("the mute node is not in the routing table (%d nodes)", c.NumNodes())
	}
	ih := sha1.Sum([]byte("keyhole test: ctx"))
	peers := func(ctx context.Context) ([]netip.AddrPort, error) { return c.Peers(ctx, ih) }
	announce := func(ctx context.Context) ([]netip.AddrPort, error) { return c.Announce(ctx, ih, 3333) }
	for _, tc := range []struct {
		name   string
		call   func(context.Context) ([]netip.AddrPort, error)
		cancel bool // cancel the context, rather than let its deadline pass
	}{
		{"Peers deadline", peers, false},
		{"Peers cancel", peers, true},
		{"Announce deadline", announce, false},
		{"Announce cancel", announce, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const after = 100 * time.Millisecond
			ctx, want := ctxT(t, after), context.DeadlineExceeded
			if tc.cancel {
				var cancel context.CancelFunc
				ctx, cancel = context.WithCancel(context.Background())
				time.AfterFunc(after, cancel)
				want = context.Canceled
			}
			start := time.Now()
			_, err := tc.call(ctx)
			if !errors.Is(err, want) {
				t.Fatalf("err %v, want %v", err, want)
			}
			if d := time.Since(start); d > after+500*time.Millisecond {
				t.Fatalf("returned %v after start, the context ended after %v", d, after)
			}
		})
	}
}

func TestAnnounceRefusesBadPort(t *testing.T) {
	tn := startTestnet(t, 4)
	for _, port := range []int{0, -1, 65536} {
		if _, err := tn.Nodes[1].Announce(ctxT(t, 5*time.Second), [20]byte{1}, port); err == nil {
			t.Errorf("announced port %d", port)
		}
	}
}

func TestPeerStore(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := newPeerStore(5, time.Minute)
	s.now = func() time.Time { return now }
	h1, h2 := peer_store.InfoHash{1}, peer_store.InfoHash{2}
	na := func(s string) krpc.NodeAddr {
		ap := netip.MustParseAddrPort(s)
		return krpc.NodeAddr{IP: ap.Addr().AsSlice(), Port: int(ap.Port())}
	}
	peers := func(h peer_store.InfoHash) []string {
		var out []string
		for _, p := range s.GetPeers(h) {
			out = append(out, p.String())
		}
		slices.Sort(out)
		return out
	}

	// One IP, two ports: both kept. The same one twice: kept once.
	s.AddPeer(h1, na("127.0.0.1:1111"))
	s.AddPeer(h1, na("127.0.0.1:2222"))
	s.AddPeer(h1, na("127.0.0.1:2222"))
	if got := peers(h1); !slices.Equal(got, []string{"127.0.0.1:1111", "127.0.0.1:2222"}) {
		t.Fatalf("got %v", got)
	}
	// Unusable addresses are dropped.
	for _, bad := range []krpc.NodeAddr{
		na("127.0.0.1:0"), na("0.0.0.0:1"), na("[::]:1"), na("224.0.0.1:1"), na("255.255.255.255:1"),
		{IP: net.IP{1, 2, 3}, Port: 1}, {IP: net.IPv4(1, 2, 3, 4), Port: 70000}, {IP: net.IPv4(1, 2, 3, 4), Port: -1},
	} {
		s.AddPeer(h2, bad)
	}
	if got := peers(h2); len(got) != 0 {
		t.Fatalf("stored unusable peers %v", got)
	}
	// An IPv4-mapped IPv6 address is the IPv4 one.
	s.AddPeer(h1, krpc.NodeAddr{IP: net.ParseIP("127.0.0.1").To16(), Port: 1111})
	if s.Len() != 2 {
		t.Fatalf("len %d after re-announcing a mapped address, want 2", s.Len())
	}
	// The bound: the least recently announced go first.
	now = now.Add(time.Second)
	s.AddPeer(h1, na("127.0.0.1:1111")) // renewed, so 2222 is now the oldest
	for _, p := range []string{"10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1", "10.0.0.4:1"} {
		now = now.Add(time.Second)
		s.AddPeer(h2, na(p))
	}
	if got := peers(h1); !slices.Equal(got, []string{"127.0.0.1:1111"}) || s.Len() != 5 {
		t.Fatalf("after overflow: %v, %d entries", got, s.Len())
	}
	// Expiry.
	now = now.Add(time.Minute - 2*time.Second)
	if got := peers(h2); !slices.Equal(got, []string{"10.0.0.3:1", "10.0.0.4:1"}) || len(peers(h1)) != 0 {
		t.Fatalf("after expiry: %v and %v", got, peers(h1))
	}
	// maxPortsPerIP per hash and IP; maxPeersPerHash per hash.
	s = newPeerStore(1000, time.Hour)
	for port := 1; port <= 2*maxPortsPerIP; port++ {
		s.AddPeer(h1, krpc.NodeAddr{IP: net.IPv4(10, 0, 0, 1), Port: port})
	}
	for i := range 2 * maxPeersPerHash {
		s.AddPeer(h2, krpc.NodeAddr{IP: net.IPv4(10, 1, byte(i/256), byte(i)), Port: 1})
	}
	if n1, n2 := len(s.GetPeers(h1)), len(s.GetPeers(h2)); n1 != maxPortsPerIP || n2 != maxPeersPerHash {
		t.Fatalf("kept %d ports of one IP and %d peers of one hash, want %d and %d", n1, n2, maxPortsPerIP, maxPeersPerHash)
	}
}
