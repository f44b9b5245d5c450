package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/keyhole-p2p/keyhole/dial"
	"github.com/keyhole-p2p/keyhole/identity"
	"github.com/keyhole-p2p/keyhole/kps"
	nodeclient "github.com/keyhole-p2p/keyhole/node/client"
	"github.com/keyhole-p2p/keyhole/record"
)

// dialFlags are the settings of a dial by key (cat, ping).
type dialFlags struct {
	nf      netFlags
	nodes   []string
	ifaces  []string
	paths   []string
	timeout time.Duration
}

func (f *dialFlags) register(fs *pflag.FlagSet) {
	f.nf.register(fs, true)
	fs.StringArrayVar(&f.nodes, "node", nil, "community node URL for STUN and TURN, besides those the peer's record names (repeatable)")
	fs.StringArrayVar(&f.ifaces, "iface", nil, "gather ICE candidates on these interfaces only (repeatable; default all)")
	fs.StringArrayVar(&f.paths, "path", nil, "only these paths: direct, punched, relayed (repeatable; default all, raced)")
	fs.DurationVar(&f.timeout, "timeout", 30*time.Second, "give up after this long")
}

// byKey resolves key and races the ways in; it reports the winner on
// stderr.
func (f *dialFlags) byKey(ctx context.Context, e *env, g *globals, key identity.PublicKey) (*dial.Result, func(), error) {
	var paths []dial.Path
	for _, p := range f.paths {
		switch dial.Path(p) {
		case dial.Direct, dial.Punched, dial.Relayed:
			paths = append(paths, dial.Path(p))
		default:
			return nil, nil, usagef("--path %q: use direct, punched or relayed", p)
		}
	}
	logger, err := f.nf.logger(e.stderr)
	if err != nil {
		return nil, nil, err
	}
	me, err := listenKey(e, g)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	r, closeNode, err := f.nf.resolver(ctx, e, logger, 0)
	if err != nil {
		return nil, nil, err
	}
	o := dial.Options{Identity: me, Resolver: r, Nodes: f.nodes, Paths: paths, Logger: logger}
	if len(f.ifaces) > 0 {
		o.WebRTC = onlyInterfaces(f.ifaces)
	}
	res, err := dial.Dial(ctx, key, o)
	if err != nil {
		closeNode()
		return nil, nil, err
	}
	fmt.Fprintf(e.stderr, "connected to %s: %s via %s (record %s, connect %s; this device: %s)\n",
		key, res.Path, res.Via, res.Resolve.Round(time.Millisecond), res.Connect.Round(time.Millisecond), me.Public())
	return res, closeNode, nil
}

// stream dials key (byKey) and opens one stream on the connection;
// done closes both and the DHT node.
func (f *dialFlags) stream(ctx context.Context, e *env, g *globals, key identity.PublicKey) (*dial.Result, kps.Stream, func(), error) {
	res, closeNode, err := f.byKey(ctx, e, g, key)
	if err != nil {
		return nil, nil, nil, err
	}
	st, err := res.Conn.OpenStream(ctx)
	if err != nil {
		res.Conn.Close()
		closeNode()
		return nil, nil, nil, err
	}
	return res, st, func() { st.Close(); res.Conn.Close(); closeNode() }, nil
}

// dialTarget tells a key (dial by key) from a KPS address (dial as is).
func dialTarget(arg string) (identity.PublicKey, bool) {
	if strings.Count(arg, ":") >= 2 && !strings.Contains(arg, "://") {
		return identity.PublicKey{}, false // ip:port:certhash
	}
	k, err := identity.ParseAddress(arg)
	return k, err == nil
}

func newPingCmd(e *env, g *globals) *cobra.Command {
	var f dialFlags
	var count int
	var interval time.Duration
	cmd := &cobra.Command{
		Use:   "ping ADDRESS",
		Short: "Reach a device by its key and measure round trips",
		Long: "Resolves the device's record, races the ways in (direct, hole punch through a\n" +
			"board, TURN relay), prints the path that won, then sends --count messages on\n" +
			"one stream and prints each round trip and the path in use at that moment (a\n" +
			"relayed connection moves to a punched path when one works). The device must\n" +
			"echo (keyhole daemon --echo, keyhole listen --echo).",
		Args: exactArgs(1, "one address (z-base-32 key or keyhole:// URL)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			key, err := identity.ParseAddress(args[0])
			if err != nil {
				return usageError{err}
			}
			if count < 1 || count > 10000 {
				return usagef("--count %d: use 1 to 10000", count)
			}
			ctx := cmd.Context()
			res, st, done, err := f.stream(ctx, e, g, key)
			if err != nil {
				return err
			}
			defer done()
			var rtts []time.Duration
			buf := make([]byte, 16)
			for seq := 1; seq <= count; seq++ {
				if seq > 1 {
					select {
					case <-time.After(interval):
					case <-ctx.Done():
						return nil
					}
				}
				binary.BigEndian.PutUint64(buf, uint64(seq))
				t0 := time.Now()
				if _, err := st.Write(buf); err != nil {
					return fmt.Errorf("ping %d: %w", seq, err)
				}
				if _, err := io.ReadFull(st, buf); err != nil {
					return fmt.Errorf("ping %d: no echo (is the device running with --echo?): %w", seq, err)
				}
				if got := binary.BigEndian.Uint64(buf); got != uint64(seq) {
					return fmt.Errorf("ping %d: the echo carried %d", seq, got)
				}
				rtt := time.Since(t0)
				rtts = append(rtts, rtt)
				fmt.Fprintf(e.stdout, "seq=%d rtt=%.2f ms path=%s\n", seq, float64(rtt.Microseconds())/1000, res.PathNow())
			}
			slices.Sort(rtts)
			fmt.Fprintf(e.stdout, "%d sent, %d echoed; rtt min %.2f / median %.2f / max %.2f ms; first path %s, now %s\n",
				count, len(rtts), ms(rtts[0]), ms(rtts[len(rtts)/2]), ms(rtts[len(rtts)-1]), res.Path, res.PathNow())
			return nil
		},
	}
	f.register(cmd.Flags())
	cmd.Flags().IntVarP(&count, "count", "c", 4, "messages to send")
	cmd.Flags().DurationVarP(&interval, "interval", "i", time.Second, "time between messages")
	return cmd
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// daemonServe is what 'keyhole daemon' does besides publishing: a KPS
// listener for direct dials, presence on its boards for everything else,
// and, with echo, an echo service on every connection.
type daemonServe struct {
	listen string
	echo   bool
	ifaces []string
	watch  time.Duration
}

func (d *daemonServe) register(fs *pflag.FlagSet) {
	fs.StringVar(&d.listen, "listen", "", "also accept direct KPS connections on this UDP address (e.g. :4242) and publish its addresses")
	fs.BoolVar(&d.echo, "echo", false, "echo every stream of every connection (for ping and tests)")
	fs.StringArrayVar(&d.ifaces, "iface", nil, "gather ICE candidates on these interfaces only (repeatable; default all)")
	fs.DurationVar(&d.watch, "watch", 5*time.Second, "how often to check the network for changed addresses (the public address, through a node's STUN, every sixth time)")
}

// run serves until ctx ends. base is the content from the flags; the
// listener's current addresses are added to it, and setContent is
// called again whenever they change.
func (d *daemonServe) run(ctx context.Context, key *identity.PrivateKey, base *record.Content, setContent func(*record.Content), logger *slog.Logger) error {
	var kl *kps.Listener
	if d.listen != "" {
		var err error
		kl, err = kps.Listen(ctx, d.listen, kps.Options{Identity: key, Logger: logger})
		if err != nil {
			return err
		}
		defer kl.Close()
	}
	accept := func(next func(context.Context) (kps.Conn, error)) {
		for {
			c, err := next(ctx)
			if err != nil {
				return
			}
			logger.Info("connection", "peer", kps.PeerKey(c).String(), "transport", c.Transport(), "from", c.RemoteAddr().String())
			if d.echo {
				go kps.Echo(ctx, c)
			} else {
				c.CloseWithError(kps.CodeUnsupported, "this device offers no service yet")
			}
		}
	}
	if kl != nil {
		go accept(kl.Accept)
	}
	if len(base.Boards) > 0 {
		o := dial.ListenOptions{Identity: key, Boards: base.Boards, Nodes: base.Nodes, Logger: logger}
		if len(d.ifaces) > 0 {
			o.WebRTC = onlyInterfaces(d.ifaces)
		}
		bl, err := dial.Listen(ctx, o)
		if err != nil {
			return err
		}
		defer bl.Close()
		go accept(bl.Accept)
	}
	// The public address, as a community node's STUN server sees this
	// device: a change there is a network change too (the NAT's address
	// moved), which local interfaces do not show.
	var lastPublic netip.Addr
	checkPublic := func() bool {
		if len(base.Nodes) == 0 {
			return false
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		var nc nodeclient.Client
		in, err := nc.Info(cctx, base.Nodes[0])
		if err != nil || len(in.STUN) == 0 {
			return false
		}
		ap, err := dial.Reflexive(cctx, in.STUN[0])
		if err != nil {
			logger.Debug("no reflexive address", "err", err)
			return false
		}
		changed := lastPublic.IsValid() && ap.Addr() != lastPublic
		if !lastPublic.IsValid() || changed {
			logger.Info("public address as the community node sees it", "address", ap.Addr().String(), "changed", changed)
		}
		lastPublic = ap.Addr()
		return changed
	}
	checkPublic()
	if kl == nil {
		t := time.NewTicker(6 * d.watch)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
				if checkPublic() {
					setContent(base) // republish at once
				}
			}
		}
	}
	// Publish the listener's addresses, and again when they change.
	var last []netip.Addr
	t := time.NewTicker(d.watch)
	defer t.Stop()
	// A listener bound to one address is reachable there only; one bound
	// to all addresses is published at each of the machine's.
	var fixed []netip.Addr
	if host, _, err := net.SplitHostPort(d.listen); err == nil && host != "" {
		if ip, err := netip.ParseAddr(host); err == nil && !ip.IsUnspecified() {
			fixed = []netip.Addr{ip.Unmap()}
		}
	}
	for tick := 0; ; tick++ {
		addrs := fixed
		if addrs == nil {
			addrs = localAddrs(d.ifaces)
		}
		publicMoved := tick > 0 && tick%6 == 0 && checkPublic()
		if !slices.Equal(addrs, last) || publicMoved {
			c := *base
			c.Direct = slices.Clone(base.Direct)
			for _, a := range addrs {
				c.Direct = append(c.Direct, kl.AddressAt(a))
			}
			if last != nil {
				logger.Info("network changed; republishing", "addresses", fmt.Sprint(addrs))
			}
			setContent(&c)
			last = addrs
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// localAddrs are this machine's global-scope and private unicast
// addresses (on ifaces, if given), sorted: what a direct dial could use.
func localAddrs(ifaces []string) []netip.Addr {
	var out []netip.Addr
	nis, err := net.Interfaces()
	if err != nil {
		return nil
	}
	for _, ni := range nis {
		if ni.Flags&net.FlagUp == 0 || (len(ifaces) > 0 && !slices.Contains(ifaces, ni.Name)) {
			continue
		}
		as, err := ni.Addrs()
		if err != nil {
			continue
		}
		for _, a := range as {
			p, err := netip.ParsePrefix(a.String())
			if err != nil {
				continue
			}
			ip := p.Addr().Unmap()
			if ip.IsLoopback() && !slices.Contains(ifaces, ni.Name) || ip.IsLinkLocalUnicast() || ip.IsMulticast() || ip.IsUnspecified() {
				continue
			}
			out = append(out, ip)
		}
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return slices.Compact(out)
}
