// Command dial measures dialing a device by its key on 127.0.0.1, in one
// run, against a raw quic-go dial to a known address:
//
//   - raw quic-go (the peer): quic.DialAddr to a plain quic-go listener
//     that echoes, open a stream, one byte there and back, close.
//   - kps address: kps.DialAddr to a known KPS address with keyhole's
//     identity exchange, then the same byte. This is the transport's own
//     cost over raw QUIC (certhash pin, auth exchange).
//   - by key, warm cache: dial.Dial with only the key: the record comes
//     from the resolver's cache (a previous resolve filled it), the
//     direct attempt races nothing else (the device's record offers a
//     direct address and a board; the board attempt waits its 250 ms
//     head start and never runs).
//   - by key, punched / relayed: the same device reached through its
//     board (ICE with the community node's STUN; TURN for relayed), for
//     the cost of a rendezvous. On one machine the "punch" is trivial;
//     tests/natlab has the real NAT pairs.
//
// Each case runs -n times, interleaved round-robin so machine noise hits
// all alike; the time is from the start of the dial to the echoed byte
// (closing the connection is not counted).
//
//	go run ./bench/dial
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"strings"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/quic-go/quic-go"

	"github.com/keyhole-p2p/keyhole/bench/internal/measure"
	"github.com/keyhole-p2p/keyhole/bench/internal/rawquic"
	"github.com/keyhole-p2p/keyhole/board"
	"github.com/keyhole-p2p/keyhole/dht"
	"github.com/keyhole-p2p/keyhole/dial"
	"github.com/keyhole-p2p/keyhole/identity"
	"github.com/keyhole-p2p/keyhole/kps"
	"github.com/keyhole-p2p/keyhole/node"
	"github.com/keyhole-p2p/keyhole/record"
	"github.com/keyhole-p2p/keyhole/resolve"
	"github.com/keyhole-p2p/keyhole/stunturn"
)

var (
	n       = flag.Int("n", 100, "dials per case")
	timeout = flag.Duration("timeout", 10*time.Minute, "bound on the whole run")
)

func main() {
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	fmt.Printf("# dial benchmark: %d dials per case, interleaved; GOMAXPROCS %d; %s\n\n", *n, runtime.GOMAXPROCS(0), time.Now().UTC().Format(time.RFC3339))

	// The world: a DHT testnet, a board, a community node with TURN.
	tn, err := dht.StartTestnet(ctx, 20, dht.TestnetOptions{})
	check(err)
	defer tn.Close()
	st, err := stunturn.Listen("127.0.0.1:0", stunturn.Options{Secret: []byte("bench"), MaxAllocationsPerIP: -1, MaxAllocationsPerUser: -1})
	check(err)
	defer st.Close()
	nk, _ := identity.Generate()
	ns, err := node.New(node.Options{Identity: nk, TURN: st, Pricing: &node.Pricing{Base: 0, MaxBits: 0}, RatePerClient: 1e6})
	check(err)
	nodeSrv := httptest.NewServer(ns)
	defer nodeSrv.Close()
	go ns.Run(ctx)
	b, err := board.New(board.Options{AnnounceRate: 1e6, AnnounceBurst: 1e6, MatchRate: 1e6, MatchBurst: 1e6})
	check(err)
	boardSrv := httptest.NewServer(b)
	defer boardSrv.Close()
	boardURL := "ws" + strings.TrimPrefix(boardSrv.URL, "http") + "/"

	// The device: a KPS listener and presence on the board, echoing.
	devKey, _ := identity.Generate()
	kl, err := kps.Listen(ctx, "127.0.0.1:0", kps.Options{Identity: devKey})
	check(err)
	defer kl.Close()
	bl, err := dial.Listen(ctx, dial.ListenOptions{Identity: devKey, Boards: []string{boardURL}, Nodes: []string{nodeSrv.URL}, WebRTC: loopback})
	check(err)
	defer bl.Close()
	for _, accept := range []func(context.Context) (kps.Conn, error){kl.Accept, bl.Accept} {
		go func() {
			for {
				c, err := accept(ctx)
				if err != nil {
					return
				}
				go kps.Echo(ctx, c)
			}
		}()
	}
	addr := kl.AddressAt(netip.MustParseAddr("127.0.0.1"))
	pubNode, err := dht.New(dht.Config{Addr: "127.0.0.1:0", Bootstrap: tn.Bootstrap(), Testnet: true})
	check(err)
	defer pubNode.Close()
	p := &resolve.Publisher{Key: devKey, DHT: pubNode}
	p.SetContent(&record.Content{Direct: []record.KPSAddr{addr}, Boards: []string{boardURL}, Nodes: []string{nodeSrv.URL}})
	_, err = p.PublishOnce(ctx)
	check(err)
	time.Sleep(500 * time.Millisecond) // the board listener announces

	// The dialer: its own DHT node and a resolver with a cache.
	dialNode, err := dht.New(dht.Config{Addr: "127.0.0.1:0", Bootstrap: tn.Bootstrap(), Testnet: true})
	check(err)
	defer dialNode.Close()
	cache := resolve.NewCache(100)
	res := &resolve.Resolver{DHT: dialNode, Cache: cache}
	cold := time.Now()
	_, err = res.Resolve(ctx, devKey.Public())
	check(err)
	coldResolve := time.Since(cold)
	me, _ := identity.Generate()

	raw := rawEcho(ctx)
	// Each case returns the time to the echoed byte; closing comes after
	// (a WebRTC close waits for the peer's acknowledgements).
	cases := []struct {
		name string
		run  func() (time.Duration, error)
	}{
		{"raw quic-go to a known address (peer)", func() (time.Duration, error) {
			t0 := time.Now()
			c, err := rawquic.Dial(ctx, raw)
			if err != nil {
				return 0, err
			}
			defer c.CloseWithError(0, "")
			s, err := c.OpenStreamSync(ctx)
			if err != nil {
				return 0, err
			}
			err = oneByte(s)
			return time.Since(t0), err
		}},
		{"kps address (QUIC + identity exchange)", func() (time.Duration, error) {
			t0 := time.Now()
			c, err := kps.DialAddr(ctx, addr, kps.DialOptions{Identity: me, PeerKey: devKey.Public()})
			if err != nil {
				return 0, err
			}
			defer c.Close()
			err = streamByte(ctx, c)
			return time.Since(t0), err
		}},
		{"by key, warm cache (direct wins)", byKey(ctx, devKey.Public(), dial.Options{Identity: me, Resolver: res})},
		{"by key, warm cache, punched through the board", byKey(ctx, devKey.Public(), dial.Options{Identity: me, Resolver: res, Paths: []dial.Path{dial.Punched}, WebRTC: loopback})},
		{"by key, warm cache, relayed (TURN)", byKey(ctx, devKey.Public(), dial.Options{Identity: me, Resolver: res, Paths: []dial.Path{dial.Relayed}, WebRTC: loopback})},
	}
	times := make([][]time.Duration, len(cases))
	for i := 0; i < *n && ctx.Err() == nil; i++ {
		for k, c := range cases {
			d, err := c.run()
			if err != nil {
				log.Fatalf("%s: dial %d: %v", c.name, i, err)
			}
			times[k] = append(times[k], d)
		}
	}
	fmt.Printf("Cold resolve of the record from the DHT testnet (once, for context): %s\n\n", measure.Duration(coldResolve))
	fmt.Println("| case | p50 | p90 | p99 | p50 vs raw quic-go |")
	fmt.Println("|---|---|---|---|---|")
	base := measure.Percentile(times[0], 0.5)
	for k, c := range cases {
		p50 := measure.Percentile(times[k], 0.5)
		fmt.Printf("| %s | %s | %s | %s | %.2f× |\n", c.name, measure.Duration(p50), measure.Duration(measure.Percentile(times[k], 0.9)),
			measure.Duration(measure.Percentile(times[k], 0.99)), float64(p50)/float64(base))
	}
}

func byKey(ctx context.Context, key identity.PublicKey, o dial.Options) func() (time.Duration, error) {
	return func() (time.Duration, error) {
		t0 := time.Now()
		r, err := dial.Dial(ctx, key, o)
		if err != nil {
			return 0, err
		}
		defer r.Conn.Close()
		err = streamByte(ctx, r.Conn)
		return time.Since(t0), err
	}
}

func streamByte(ctx context.Context, c kps.Conn) error {
	s, err := c.OpenStream(ctx)
	if err != nil {
		return err
	}
	return oneByte(s)
}

// oneByte writes one byte and reads its echo.
func oneByte(s io.ReadWriter) error {
	if _, err := s.Write([]byte{42}); err != nil {
		return err
	}
	b := make([]byte, 1)
	_, err := io.ReadFull(s, b)
	return err
}

func loopback(se *webrtc.SettingEngine) {
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
}

// rawEcho is a plain quic-go listener (kps's QUIC settings) echoing
// every stream.
func rawEcho(ctx context.Context) string {
	ln, err := rawquic.Listen()
	check(err)
	go rawquic.Serve(ctx, ln, func(s *quic.Stream) { io.Copy(s, s) })
	return ln.Addr().String()
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
