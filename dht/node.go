package dht

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	adht "github.com/anacrolix/dht/v2"
	"github.com/anacrolix/dht/v2/krpc"
	alog "github.com/anacrolix/log"
	"golang.org/x/time/rate"
)

// PublicBootstrap are the well-known routers of the public Mainline DHT,
// used when no other bootstrap is given.
var PublicBootstrap = []string{
	"router.bittorrent.com:6881",
	"router.utorrent.com:6881",
	"dht.transmissionbt.com:6881",
	"dht.libtorrent.org:25401",
}

// Config configures a Node. The zero value joins the public network on a
// random UDP port.
type Config struct {
	// Addr is the UDP address to listen on; empty means ":0" (any port).
	Addr string
	// Bootstrap lists host:port routers or nodes to join through; empty
	// means PublicBootstrap.
	Bootstrap []string
	// Testnet relaxes what only matters on the public network: it turns
	// off BEP 42 node-ID security (every testnet node shares one IP) and
	// the send rate limit.
	Testnet bool
	// SendRate limits outgoing packets per second; zero means 200
	// (unlimited on a testnet).
	SendRate rate.Limit
	// QueryTimeout is how long one query waits for a reply; zero means 2 s
	// (500 ms on a testnet, where a silent node is simply gone).
	QueryTimeout time.Duration
	// MaxItems bounds the BEP 44 items this node stores for others; zero
	// means 10000. The oldest item goes when a new one would not fit.
	MaxItems int
	// ItemLifetime is how long a stored item lives without a refresh;
	// zero means two hours, as BEP 44 suggests.
	ItemLifetime time.Duration
	// MaxPeers bounds the BEP 5 announcements (info-hash, IP, port) this
	// node stores for others; zero means 10000. The oldest goes when a new
	// one would not fit.
	MaxPeers int
	// PeerLifetime is how long a stored announcement lives unless it is
	// announced again; zero means 30 minutes, so announcers should renew
	// well within that (every 15 minutes, say).
	PeerLifetime time.Duration
	// Logger receives the node's own log lines; nil discards them.
	Logger *slog.Logger

	// id fixes the node ID, for tests that need a node in a known part
	// of the ID space; nil picks one as anacrolix does.
	id *krpc.ID
}

// Node is one DHT node: it answers other nodes' queries, stores their
// items, and runs lookups and puts for keyhole.
type Node struct {
	srv    *adht.Server
	conn   net.PacketConn
	store  *boundedStore
	peers  *peerStore
	cfg    Config
	log    *slog.Logger
	closed sync.Once
}

// New starts a node listening on cfg.Addr. It does not bootstrap; call
// Bootstrap (Get and Put bootstrap by themselves when the table is empty).
func New(cfg Config) (*Node, error) {
	if cfg.Addr == "" {
		cfg.Addr = ":0"
	}
	if len(cfg.Bootstrap) == 0 {
		cfg.Bootstrap = PublicBootstrap
	}
	if cfg.SendRate == 0 {
		cfg.SendRate = 200
		if cfg.Testnet {
			cfg.SendRate = rate.Inf
		}
	}
	if cfg.QueryTimeout == 0 {
		cfg.QueryTimeout = 2 * time.Second
		if cfg.Testnet {
			cfg.QueryTimeout = 500 * time.Millisecond
		}
	}
	if cfg.MaxItems == 0 {
		cfg.MaxItems = 10000
	}
	if cfg.ItemLifetime == 0 {
		cfg.ItemLifetime = 2 * time.Hour
	}
	if cfg.MaxPeers == 0 {
		cfg.MaxPeers = 10000
	}
	if cfg.PeerLifetime == 0 {
		cfg.PeerLifetime = 30 * time.Minute
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	conn, err := net.ListenPacket("udp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("dht: listening on %s: %w", cfg.Addr, err)
	}
	n := &Node{conn: conn, store: newBoundedStore(cfg.MaxItems), peers: newPeerStore(cfg.MaxPeers, cfg.PeerLifetime), cfg: cfg, log: logger}
	bootstrap := append([]string(nil), cfg.Bootstrap...)
	sc := &adht.ServerConfig{
		Conn:             conn,
		NoSecurity:       cfg.Testnet,
		StartingNodes:    func() ([]adht.Addr, error) { return resolveBootstrap(bootstrap) },
		Store:            n.store,
		PeerStore:        n.peers, // without one, get_peers gives no token and announce_peer is dropped
		Exp:              cfg.ItemLifetime,
		SendLimiter:      rate.NewLimiter(cfg.SendRate, max(1, int(min(cfg.SendRate, 1000)))),
		QueryResendDelay: func() time.Duration { return cfg.QueryTimeout },
		Logger:           alog.Default.FilterLevel(alog.Critical),
		OnQuery:          fixQuery,
	}
	if cfg.id != nil {
		sc.NodeId = *cfg.id
	}
	srv, err := adht.NewServer(sc)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("dht: %w", err)
	}
	n.srv = srv
	return n, nil
}

// fixQuery runs before anacrolix/dht (v2.23.0) handles a query and works
// around two of its bugs:
//   - a put or announce_peer with no arguments dereferences nil and kills
//     the node, so queries without arguments (BEP 5 requires at least an
//     id) are dropped;
//   - find_node and get replies list the nodes closest to the query's
//     info_hash, which those queries do not carry, instead of its target;
//     every lookup among such nodes would wander towards ID zero. Copying
//     target into info_hash makes them answer the question asked.
func fixQuery(q *krpc.Msg, _ net.Addr) bool {
	if q.A == nil {
		return false
	}
	switch q.Q {
	case "find_node", "get":
		q.A.InfoHash = q.A.Target
	}
	return true
}

// resolveBootstrap turns host:port strings into addresses, skipping the
// ones that do not resolve; it fails only if none does.
func resolveBootstrap(hostports []string) ([]adht.Addr, error) {
	var out []adht.Addr
	var errs []string
	for _, hp := range hostports {
		ua, err := net.ResolveUDPAddr("udp", hp)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		out = append(out, adht.NewAddr(ua))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("dht: no bootstrap address resolves (%s); check --bootstrap or KEYHOLE_BOOTSTRAP", strings.Join(errs, "; "))
	}
	return out, nil
}

// ParseBootstrap splits a comma-separated host:port list, checking each.
func ParseBootstrap(s string) ([]string, error) {
	var out []string
	for _, hp := range strings.Split(s, ",") {
		hp = strings.TrimSpace(hp)
		if hp == "" {
			continue
		}
		if _, port, err := net.SplitHostPort(hp); err != nil || port == "" {
			return nil, fmt.Errorf("dht: bootstrap %q is not host:port", hp)
		}
		out = append(out, hp)
	}
	return out, nil
}

// Addr is the node's UDP address.
func (n *Node) Addr() netip.AddrPort {
	return n.conn.LocalAddr().(*net.UDPAddr).AddrPort()
}

// NumNodes is the size of the routing table.
func (n *Node) NumNodes() int { return n.srv.NumNodes() }

// StoredItems is how many BEP 44 items this node holds for others.
func (n *Node) StoredItems() int { return n.store.Len() }

// StoredPeers is how many BEP 5 announcements this node holds for others.
func (n *Node) StoredPeers() int { return n.peers.Len() }

// Bootstrap fills the routing table by looking up the node's own ID. A
// round that reaches no node is tried again (up to four rounds, 0.5 s,
// 1 s and 2 s apart, within ctx): on a lossy link the one query to a
// single bootstrap node is easily lost, and each round is one try.
func (n *Node) Bootstrap(ctx context.Context) error {
	var tried uint32
	wait := 500 * time.Millisecond
	for round := 0; ; round++ {
		st, err := n.srv.BootstrapContext(ctx)
		if err != nil {
			return fmt.Errorf("dht: bootstrap: %w", err)
		}
		tried += st.NumAddrsTried
		if n.srv.NumNodes() > 0 {
			return nil
		}
		if round == 3 || ctx.Err() != nil {
			break
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
		}
		wait *= 2
	}
	return fmt.Errorf("dht: bootstrap reached no node (%d queries sent); check the network and --bootstrap", tried)
}

// ensureBootstrapped bootstraps if the routing table is empty.
func (n *Node) ensureBootstrapped(ctx context.Context) error {
	if n.srv.NumNodes() > 0 {
		return nil
	}
	err := n.Bootstrap(ctx)
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if n.srv.NumNodes() == 0 {
		return err
	}
	return nil
}

// AddNode adds a known node to the routing table (used by testnets).
func (n *Node) AddNode(addr netip.AddrPort) {
	n.srv.Ping(net.UDPAddrFromAddrPort(addr))
}

// Close stops the node and releases its socket.
func (n *Node) Close() error {
	n.closed.Do(func() { n.srv.Close() })
	return nil
}

// Server exposes the underlying anacrolix/dht server, for benchmarks that
// compare against the library's own lookups.
func (n *Node) Server() *adht.Server { return n.srv }
