package main

import (
	"context"
	"fmt"
	"github.com/keyhole-p2p/keyhole/board"
	"github.com/keyhole-p2p/keyhole/board/client"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/keyhole-p2p/keyhole/dht"
	"github.com/keyhole-p2p/keyhole/identity"
	"github.com/keyhole-p2p/keyhole/kps"
	"github.com/keyhole-p2p/keyhole/pkarr/relay"
	"github.com/keyhole-p2p/keyhole/record"
	"github.com/keyhole-p2p/keyhole/resolve"
	"github.com/keyhole-p2p/keyhole/stunturn"
	"github.com/spf13/cobra"
)

func newDemoCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "demo",
		Short: "Show keyhole end to end on this machine, with nothing to set up",
		Long: "Runs the whole story in one process on an embedded default: make a key,\n" +
			"back it up, bind a transport key, sign a record, watch tampering get caught,\n" +
			"then start a private DHT testnet and a Pkarr relay on loopback, publish the\n" +
			"record and find it again from a fresh node by the address alone, and connect\n" +
			"to it over QUIC and WebRTC with both identity keys proven, and meet it\n" +
			"through a blind rendezvous board that relays only sealed signaling.\n" +
			"Nothing leaves this machine and nothing is written to disk.",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := runDemo(e); err != nil {
				return err
			}
			return runDiscoveryDemo(cmd.Context(), e)
		},
	}
}

func runDemo(e *env) error {
	w := e.stdout
	step := func(n int, title string) { fmt.Fprintf(w, "\n[%d] %s\n", n, title) }
	now := e.now()
	fmt.Fprintln(w, "keyhole demo: identities and signed records, in this process only")

	step(1, "A new identity: the public key is the address")
	key, err := identity.Generate()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "    address  %s\n    url      keyhole://%s/\n", key.Public(), key.Public())

	step(2, "24 backup words restore the exact key")
	words := key.BackupWords()
	restored, err := identity.FromBackupWords(words)
	if err != nil {
		return err
	}
	f := strings.Fields(words)
	fmt.Fprintf(w, "    words    %s ... %s (24 words)\n    restored %s (same key: %v)\n",
		strings.Join(f[:3], " "), f[23], restored.Public(), restored.Public() == key.Public())

	step(3, "An X25519 transport key, bound to the identity by a signature")
	tk, err := identity.NewTransportKey()
	if err != nil {
		return err
	}
	b, err := identity.NewBinding(key, tk.Public(), now)
	if err != nil {
		return err
	}
	if _, _, err := b.Verify(key.Public(), now); err != nil {
		return fmt.Errorf("demo: binding does not verify: %w", err)
	}
	fmt.Fprintf(w, "    binding  transport key %s... signed at %s: verified\n", b.TransportKey[:16], b.CreatedUTC)

	step(4, "A signed Pkarr record saying how to reach this device")
	cert, err := kps.NewCertificate() // the certificate a KPS listener is pinned by
	if err != nil {
		return err
	}
	direct := record.KPSAddr{AddrPort: netip.MustParseAddrPort("127.0.0.1:4242"), CertHash: cert.CertHash()}
	c := &record.Content{Direct: []record.KPSAddr{direct}, Boards: []string{"ws://127.0.0.1:8443/"}}
	p, err := record.Build(key, c, now)
	if err != nil {
		return err
	}
	wire := p.Bytes()
	fmt.Fprintf(w, "    direct   %s\n    board    %s\n    packet   %d bytes (DNS part %d of %d), seq %d\n",
		direct, c.Boards[0], len(wire), len(p.DNS), record.MaxDNSSize, p.Timestamp)

	step(5, "Anyone holding only the address verifies it")
	got, rrs, content, err := verifyPacket(wire, key.Public(), now, record.DefaultWindow)
	if err != nil {
		return fmt.Errorf("demo: the record does not verify: %w", err)
	}
	fmt.Fprintf(w, "    valid    signed by %s, %d records, direct address %s\n", got.PublicKey, len(rrs), content.Direct[0])

	step(6, "Tampering is caught")
	flipped := append([]byte(nil), wire...)
	flipped[len(flipped)-5] ^= 0x01
	_, _, _, err = verifyPacket(flipped, key.Public(), now, record.DefaultWindow)
	fmt.Fprintf(w, "    1 bit    %v\n", err)
	other, _ := identity.Generate()
	_, _, _, err = verifyPacket(wire, other.Public(), now, record.DefaultWindow)
	fmt.Fprintf(w, "    key      %v\n", err)
	_, _, _, err = verifyPacket(wire, key.Public(), now.Add(3*time.Hour), record.DefaultWindow)
	fmt.Fprintf(w, "    old      %v\n", err)

	return nil
}

// demoNodes is the size of the demo's DHT testnet.
const demoNodes = 50

// runDiscoveryDemo publishes a record on a loopback DHT testnet and a
// relay, then resolves it from a node that knows nothing but the address.
func runDiscoveryDemo(ctx context.Context, e *env) error {
	w := e.stdout
	step := func(n int, title string) { fmt.Fprintf(w, "\n[%d] %s\n", n, title) }

	step(7, fmt.Sprintf("A private Mainline DHT: %d real nodes on loopback, and a Pkarr relay", demoNodes))
	t := time.Now()
	tn, err := dht.StartTestnet(ctx, demoNodes, dht.TestnetOptions{})
	if err != nil {
		return err
	}
	defer tn.Close()
	rs := relay.New(relay.Config{DHT: tn.Nodes[0]})
	defer rs.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: rs, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	relayURL := "http://" + ln.Addr().String()
	fmt.Fprintf(w, "    testnet  up in %v, bootstrap %s\n    relay    %s\n", time.Since(t).Round(time.Millisecond), tn.Bootstrap()[0], relayURL)

	step(8, "The device publishes its record to the DHT and the relay")
	key, err := identity.Generate()
	if err != nil {
		return err
	}
	// The device listens for QUIC and WebRTC on one loopback UDP port and
	// proves its identity key on every connection.
	ln2, err := kps.Listen(ctx, "127.0.0.1:0", kps.Options{Identity: key})
	if err != nil {
		return err
	}
	defer ln2.Close()
	go func() {
		for {
			c, err := ln2.Accept(ctx)
			if err != nil {
				return
			}
			go kps.Echo(ctx, c)
		}
	}()
	direct := ln2.Address()
	// It also waits on a blind rendezvous board, for peers that cannot
	// reach its direct address.
	rendezvous, boardURL, stopBoard, err := demoBoard()
	if err != nil {
		return err
	}
	defer stopBoard()
	pub := &resolve.Publisher{Key: key, DHT: tn.Nodes[demoNodes/2], Relays: []string{relayURL}, Now: e.now}
	pub.SetContent(&record.Content{Direct: []record.KPSAddr{direct}, Boards: []string{boardURL}})
	rep, err := pub.PublishOnce(ctx)
	if err != nil {
		return err
	}
	nodes, relays := rep.Landed()
	fmt.Fprintf(w, "    address  %s\n    landed   on %d DHT nodes and %d relay in %v\n", key.Public(), nodes, relays, rep.Elapsed.Round(time.Millisecond))

	step(9, "Someone who has only the address finds it")
	client, err := dht.New(dht.Config{Addr: "127.0.0.1:0", Bootstrap: tn.Bootstrap(), Testnet: true})
	if err != nil {
		return err
	}
	defer client.Close()
	var found record.KPSAddr
	var foundBoard string
	for _, r := range []struct {
		name string
		res  *resolve.Resolver
	}{{"via DHT", &resolve.Resolver{DHT: client}}, {"via relay", &resolve.Resolver{Relays: []string{relayURL}}}} {
		res, err := r.res.Resolve(ctx, key.Public())
		if err != nil {
			return fmt.Errorf("demo: resolving %s: %w", r.name, err)
		}
		c, err := record.ParseContent(res.Packet, res.Records, e.now())
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "    %-9s %s in %v: direct address %s, board %s\n", r.name, "verified", res.Elapsed.Round(10*time.Microsecond), c.Direct[0], c.Boards[0])
		found, foundBoard = c.Direct[0], c.Boards[0]
	}

	step(10, "It connects to the address in the record, and both sides prove their keys")
	me, err := identity.Generate()
	if err != nil {
		return err
	}
	for _, tr := range []string{kps.TransportQUIC, kps.TransportWebRTC} {
		t := time.Now()
		c, err := kps.DialAddr(ctx, found, kps.DialOptions{Transport: tr, Identity: me, PeerKey: key.Public()})
		if err != nil {
			return fmt.Errorf("demo: dialing over %s: %w", tr, err)
		}
		took := time.Since(t)
		reply, err := demoRoundTrip(ctx, c, "hello over "+tr)
		c.Close()
		if err != nil {
			return fmt.Errorf("demo: echo over %s: %w", tr, err)
		}
		fmt.Fprintf(w, "    %-6s  certificate matched the certhash, listener proved %s..., connected in %v; echo %q\n",
			tr, key.Public().String()[:12], took.Round(time.Millisecond), reply)
	}

	step(11, "No direct path? The two meet through the board in the record, which reads nothing")
	if err := demoRendezvous(ctx, w, rendezvous, foundBoard, key, me); err != nil {
		return err
	}

	fmt.Fprintln(w, "\nNext: README.md shows the same with separate processes (keyhole dht testnet,\nkeyhole publish, keyhole resolve, keyhole listen, keyhole cat, keyhole board).")
	return nil
}

func demoRoundTrip(ctx context.Context, c kps.Conn, msg string) (string, error) {
	st, err := c.OpenStream(ctx)
	if err != nil {
		return "", err
	}
	if _, err := io.WriteString(st, msg); err != nil {
		return "", err
	}
	if err := st.CloseWrite(); err != nil {
		return "", err
	}
	b, err := io.ReadAll(st)
	return string(b), err
}

// demoBoard runs a board with STUN on loopback and returns its URL.
func demoBoard() (*board.Server, string, func(), error) {
	st, err := stunturn.Listen("127.0.0.1:0", stunturn.Options{})
	if err != nil {
		return nil, "", nil, err
	}
	b, err := board.New(board.Options{STUNPort: st.Addr().Port})
	if err != nil {
		st.Close()
		return nil, "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Close()
		st.Close()
		return nil, "", nil, err
	}
	srv := &http.Server{Handler: b, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	return b, "ws://" + ln.Addr().String() + "/", func() { b.Close(); srv.Close(); st.Close() }, nil
}

// demoRendezvous: the device waits on the board, the other side asks
// for it by key, and they talk over a direct data channel.
func demoRendezvous(ctx context.Context, w io.Writer, b *board.Server, boardURL string, device, me *identity.PrivateKey) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// Candidates stay on loopback: the demo touches nothing else.
	loopback := onlyInterfaces([]string{"lo"})
	dev, err := client.Dial(ctx, boardURL, client.Options{Identity: device, WebRTC: loopback})
	if err != nil {
		return err
	}
	defer dev.Close()
	served := make(chan error, 1)
	go func() {
		s, err := dev.Accept(ctx)
		if err != nil {
			served <- err
			return
		}
		defer s.Close()
		served <- s.Echo()
	}()
	mine, err := client.Dial(ctx, boardURL, client.Options{Identity: me, WebRTC: loopback})
	if err != nil {
		return err
	}
	defer mine.Close()
	t := time.Now()
	s, err := mine.Connect(ctx, device.Public())
	if err != nil {
		return fmt.Errorf("demo: rendezvous: %w", err)
	}
	defer s.Close()
	took := time.Since(t)
	if _, err := io.WriteString(s, "hello through the board"); err != nil {
		return err
	}
	s.CloseWrite()
	reply, err := io.ReadAll(s)
	if err != nil {
		return err
	}
	if err := <-served; err != nil {
		return fmt.Errorf("demo: the device's side: %w", err)
	}
	st := b.Stats()
	fmt.Fprintf(w, "    board    %s: %d match, %d frames relayed (2 bound transport keys, 2 sealed SDPs), channel closed at the answer\n",
		boardURL, st.ChannelsOpened, st.Relayed)
	fmt.Fprintf(w, "    direct   data channel to %s... in %v (host candidates withheld); echo %q\n",
		device.Public().String()[:12], took.Round(time.Millisecond), reply)
	return nil
}
