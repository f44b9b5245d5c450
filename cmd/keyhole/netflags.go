package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/keyhole-p2p/keyhole/dht"
	"github.com/keyhole-p2p/keyhole/pkarr"
	"github.com/keyhole-p2p/keyhole/record"
	"github.com/keyhole-p2p/keyhole/resolve"
)

// Environment variables that stand in for network flags.
const (
	bootstrapEnv = "KEYHOLE_BOOTSTRAP" // comma-separated host:port
	relaysEnv    = "KEYHOLE_RELAYS"    // comma-separated URLs, or "none"
)

// netFlags are the discovery settings shared by publish, resolve, daemon
// and relay.
type netFlags struct {
	bootstrap string
	relays    []string
	noDHT     bool
	dhtAddr   string
	logLevel  string
}

func (f *netFlags) register(fs *pflag.FlagSet, withRelays bool) {
	fs.StringVar(&f.bootstrap, "bootstrap", "", "DHT nodes to join through, host:port,... (default $"+bootstrapEnv+", else the public routers)")
	fs.StringVar(&f.dhtAddr, "dht-addr", ":0", "UDP address for this process's DHT node")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	if withRelays {
		fs.StringArrayVar(&f.relays, "relay", nil, "Pkarr relay URL (repeatable; default $"+relaysEnv+", else the public relays; 'none' for none)")
		fs.BoolVar(&f.noDHT, "no-dht", false, "use relays only, not the DHT")
	}
}

// bootstrapList is --bootstrap, else the environment, else the public routers.
func (f *netFlags) bootstrapList(e *env) ([]string, error) {
	s := f.bootstrap
	if s == "" {
		s = e.getenv(bootstrapEnv)
	}
	if s == "" {
		return dht.PublicBootstrap, nil
	}
	b, err := dht.ParseBootstrap(s)
	if err != nil {
		return nil, usageError{err}
	}
	return b, nil
}

// relayList is --relay, else the environment, else the public relays.
func (f *netFlags) relayList(e *env) ([]string, error) {
	list := f.relays
	if len(list) == 0 {
		if v := e.getenv(relaysEnv); v != "" {
			list = strings.Split(v, ",")
		} else {
			return pkarr.DefaultRelays, nil
		}
	}
	var out []string
	for _, r := range list {
		r = strings.TrimRight(strings.TrimSpace(r), "/")
		if r == "" || r == "none" {
			continue
		}
		if !strings.HasPrefix(r, "http://") && !strings.HasPrefix(r, "https://") {
			return nil, usagef("relay %q must be an http:// or https:// URL", r)
		}
		out = append(out, r)
	}
	return out, nil
}

// isLocalTestnet reports whether every bootstrap address is a loopback or
// private IP: a testnet, where BEP 42 node-ID checks cannot apply.
func isLocalTestnet(bootstrap []string) bool {
	for _, hp := range bootstrap {
		host, _, _ := net.SplitHostPort(hp)
		ip, err := netip.ParseAddr(host)
		if err != nil || !(ip.IsLoopback() || ip.IsPrivate() || labRange(ip)) {
			return false
		}
	}
	return len(bootstrap) > 0
}

// labRanges never appear on the public internet: documentation
// (RFC 5737) and shared address space (RFC 6598), as network labs use.
var labRanges = []netip.Prefix{
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("100.64.0.0/10"),
}

func labRange(ip netip.Addr) bool {
	for _, p := range labRanges {
		if p.Contains(ip.Unmap()) {
			return true
		}
	}
	return false
}

// node starts a DHT node joined to the configured network.
func (f *netFlags) node(ctx context.Context, e *env, logger *slog.Logger) (*dht.Node, error) {
	boot, err := f.bootstrapList(e)
	if err != nil {
		return nil, err
	}
	n, err := dht.New(dht.Config{Addr: f.dhtAddr, Bootstrap: boot, Testnet: isLocalTestnet(boot), Logger: logger})
	if err != nil {
		return nil, err
	}
	bctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := n.Bootstrap(bctx); err != nil {
		n.Close()
		return nil, err
	}
	return n, nil
}

// resolver finds records through the configured relays and, unless
// --no-dht, a DHT node of its own; closeNode stops that node.
func (f *netFlags) resolver(ctx context.Context, e *env, logger *slog.Logger, timeout time.Duration) (r *resolve.Resolver, closeNode func(), err error) {
	relays, err := f.relayList(e)
	if err != nil {
		return nil, nil, err
	}
	r = &resolve.Resolver{Relays: relays, Timeout: timeout, Now: e.now}
	if f.noDHT {
		return r, func() {}, nil
	}
	n, err := f.node(ctx, e, logger)
	if err != nil {
		return nil, nil, err
	}
	r.DHT = n
	return r, func() { n.Close() }, nil
}

// logger writes structured logs to stderr at --log-level.
func (f *netFlags) logger(w io.Writer) (*slog.Logger, error) { return newLogger(w, f.logLevel) }

// newLogger writes structured logs to w at a --log-level value.
func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, usagef("--log-level %q: use debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lvl})), nil
}

// contentFlags describe what a device publishes about itself.
type contentFlags struct {
	kps, boards, nodes, turns []string
	onion                     string
}

func (c *contentFlags) register(fs *pflag.FlagSet) {
	fs.StringArrayVar(&c.kps, "kps", nil, "direct address <ip>:<port>:<certhash> (repeatable)")
	fs.StringArrayVar(&c.boards, "board", nil, "rendezvous board URL, ws:// or wss:// (repeatable)")
	fs.StringArrayVar(&c.nodes, "node", nil, "community node URL, http:// or https:// (repeatable)")
	fs.StringArrayVar(&c.turns, "turn", nil, "TURN server, turn:host:port (repeatable)")
	fs.StringVar(&c.onion, "onion", "", "onion service, <56 chars>.onion:<port>")
}

func (c *contentFlags) content() (*record.Content, error) {
	out := &record.Content{Boards: c.boards, Nodes: c.nodes, TURN: c.turns}
	for _, s := range c.kps {
		a, err := record.ParseKPSAddr(s)
		if err != nil {
			return nil, usageError{fmt.Errorf("--kps: %w", err)}
		}
		out.Direct = append(out.Direct, a)
	}
	if c.onion != "" {
		o, err := record.ParseOnionAddr(c.onion)
		if err != nil {
			return nil, usageError{fmt.Errorf("--onion: %w", err)}
		}
		out.Onion = &o
	}
	return out, nil
}
