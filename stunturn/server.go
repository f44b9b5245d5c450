package stunturn

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/turn/v5"
	"golang.org/x/time/rate"
)

// Options configure Listen. The zero value is a STUN-only server with
// the default quotas.
//
// For every quota, zero means the default and a negative value means no
// limit.
type Options struct {
	// Realm is the TURN realm clients hash into their keys (default
	// "keyhole").
	Realm string
	// RelayIP is the address relays are opened on and advertised with
	// (default: the listening IP, or 127.0.0.1 if that is unspecified).
	// It must be an address of this host, so a server behind a 1:1 NAT
	// (as on most cloud VMs) cannot relay for peers outside it yet.
	RelayIP string
	// Users are static long-term credentials (user name to password),
	// for tests and private setups. A static user wins over a REST
	// credential of the same name.
	Users map[string]string
	// Secret signs the TURN REST credentials Credentials mints; nil:
	// none are accepted. With neither Users nor Secret the server
	// answers STUN only: Allocate gets 401 (pion's server would answer
	// 400, which pion's client ignores for lack of MESSAGE-INTEGRITY
	// and retransmits until it times out).
	Secret []byte
	// TCP also serves STUN and TURN over TCP on the same port number,
	// for networks that block UDP. Relays toward peers are UDP either
	// way.
	TCP bool

	// MaxAllocations bounds the relays open at once on the whole server
	// (default 1000); beyond it Allocate gets 508. It also bounds the
	// TCP connections.
	MaxAllocations int
	// MaxAllocationsPerUser bounds the relays one credential user name
	// holds at once (default 4); beyond it Allocate gets 486.
	MaxAllocationsPerUser int
	// MaxAllocationsPerIP bounds the relays one client IP (for IPv6, one
	// /64) holds at once (default 16); beyond it Allocate gets 486. It
	// also bounds the TCP connections from one IP.
	MaxAllocationsPerIP int
	// AllocationBytes is what one allocation may relay in total, both
	// directions counted (default 1 GiB). Beyond it packets are dropped
	// and the client has to allocate anew. It bounds one relay, not one
	// credential: what a credential can cost is MaxAllocationsPerUser
	// relays at AllocationRate until it expires (plus one allocation
	// lifetime, 10 minutes by default).
	AllocationBytes int64
	// AllocationRate caps one allocation's relayed bytes per second,
	// both directions together (default 2 MB/s), with a burst of one
	// second's worth and at least 64 KiB. Packets over it are dropped.
	AllocationRate int

	// Logger gets refusals and pion's own messages at debug level and
	// below, never passwords or keys; nil discards them.
	Logger *slog.Logger
	// Now is the clock credential expiry follows (default time.Now).
	Now func() time.Time
}

const (
	defaultRealm          = "keyhole"
	defaultMaxAllocations = 1000
	defaultMaxPerUser     = 4
	defaultMaxPerIP       = 16
	defaultAllocBytes     = 1 << 30
	defaultAllocRate      = 2_000_000
	minBurst              = 64 << 10
	// tcpIdle closes a TCP connection that sent nothing for this long:
	// pion never times them out, and a live client refreshes its
	// allocation and permissions well within the default 10 minute
	// lifetime.
	tcpIdle = 10 * time.Minute
	// tcpWrite cuts a TCP client that stops reading.
	tcpWrite = 10 * time.Second
)

// limit resolves a quota: 0 is def, negative is none (no limit).
func limit[T int | int64](v, def, none T) T {
	switch {
	case v == 0:
		return def
	case v < 0:
		return none
	}
	return v
}

// Server is a running STUN/TURN server. Its methods are safe for
// concurrent use.
type Server struct {
	o     Options
	log   *slog.Logger
	keys  map[string][]byte // static users' long-term keys
	turn  *turn.Server
	udp   net.PacketConn
	tcp   *tcpListener // nil without TCP
	gen   *relayGen
	quota *quota
	stats counters

	closeOnce sync.Once
	closeErr  error
}

// counters back Stats; everything that relays or refuses adds to them.
type counters struct {
	allocations atomic.Int64
	total       atomic.Uint64
	refused     atomic.Uint64
	bytes       atomic.Uint64
}

// Stats are running counters cheap enough to read on every metrics
// scrape.
type Stats struct {
	// Allocations is how many relays are open now.
	Allocations int
	// AllocationsTotal counts relays opened since Listen.
	AllocationsTotal uint64
	// Refused counts what was turned away: requests with unknown,
	// expired or forged credentials, allocations over a quota, TCP
	// connections over a limit.
	Refused uint64
	// BytesRelayed counts payload bytes relayed, both directions.
	BytesRelayed uint64
}

// Listen serves STUN (and TURN, given Users or Secret) on the UDP
// address addr, and with o.TCP on the TCP address of the same port
// number. With port 0 and TCP, the TCP listener takes the port UDP got.
func Listen(addr string, o Options) (*Server, error) {
	if o.Realm == "" {
		o.Realm = defaultRealm
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	o.MaxAllocations = limit(o.MaxAllocations, defaultMaxAllocations, math.MaxInt)
	o.MaxAllocationsPerUser = limit(o.MaxAllocationsPerUser, defaultMaxPerUser, math.MaxInt)
	o.MaxAllocationsPerIP = limit(o.MaxAllocationsPerIP, defaultMaxPerIP, math.MaxInt)
	o.AllocationBytes = limit(o.AllocationBytes, defaultAllocBytes, math.MaxInt64)
	o.AllocationRate = limit(o.AllocationRate, defaultAllocRate, math.MaxInt)

	udp, ln, err := listen(addr, o.TCP)
	if err != nil {
		return nil, fmt.Errorf("stunturn: %w", err)
	}
	relay := o.RelayIP
	if relay == "" {
		relay = udp.LocalAddr().(*net.UDPAddr).IP.String()
		if ip := net.ParseIP(relay); ip == nil || ip.IsUnspecified() {
			relay = "127.0.0.1"
		}
	}
	relayIP := net.ParseIP(relay)
	if relayIP == nil {
		udp.Close()
		if ln != nil {
			ln.Close()
		}
		return nil, fmt.Errorf("stunturn: relay IP %q is not an IP address", relay)
	}
	s := &Server{o: o, log: log, udp: udp, keys: map[string][]byte{}}
	for u, p := range o.Users {
		s.keys[u] = turn.GenerateAuthKey(u, o.Realm, p)
	}
	s.quota = newQuota(o.MaxAllocationsPerUser, o.MaxAllocationsPerIP, &s.stats)
	s.gen = &relayGen{
		static: &turn.RelayAddressGeneratorStatic{RelayAddress: relayIP, Address: relay},
		max:    o.MaxAllocations,
		bytes:  o.AllocationBytes,
		stats:  &s.stats,
		log:    log,
		conns:  map[string]*relayConn{},
	}
	if o.AllocationRate != math.MaxInt {
		s.gen.rate = rate.Limit(o.AllocationRate)
		s.gen.burst = max(o.AllocationRate, minBurst)
	}
	cfg := turn.ServerConfig{
		Realm:         o.Realm,
		LoggerFactory: pionLogs{log},
		QuotaHandler:  s.admit,
		EventHandler: turn.EventHandler{
			OnAuth:              s.onAuth,
			OnAllocationCreated: s.onAllocationCreated,
			OnAllocationDeleted: s.onAllocationDeleted,
			OnPermissionCreated: func(_, _ net.Addr, _, _, _ string, relay net.Addr, peer net.IP) {
				s.gen.permit(relay, peer, 1)
			},
			OnPermissionDeleted: func(_, _ net.Addr, _, _, _ string, relay net.Addr, peer net.IP) {
				s.gen.permit(relay, peer, -1)
			},
			OnChannelCreated: func(_, _ net.Addr, _, _, _ string, relay, peer net.Addr, _ uint16) {
				s.gen.permit(relay, udpIP(peer), 1)
			},
			OnChannelDeleted: func(_, _ net.Addr, _, _, _ string, relay, peer net.Addr, _ uint16) {
				s.gen.permit(relay, udpIP(peer), -1)
			},
		},
		AuthHandler:       s.authenticate,
		PacketConnConfigs: []turn.PacketConnConfig{{PacketConn: udp, RelayAddressGenerator: s.gen}},
	}
	if ln != nil {
		s.tcp = newTCPListener(ln, o.MaxAllocations, o.MaxAllocationsPerIP, &s.stats)
		cfg.ListenerConfigs = []turn.ListenerConfig{{Listener: s.tcp, RelayAddressGenerator: s.gen}}
	}
	s.turn, err = turn.NewServer(cfg)
	if err != nil {
		udp.Close()
		if ln != nil {
			ln.Close()
		}
		return nil, fmt.Errorf("stunturn: %w", err)
	}
	return s, nil
}

// listen opens the UDP socket and, with withTCP, a TCP listener on the
// same port number, retrying a few random ports if addr asks for any.
func listen(addr string, withTCP bool) (*net.UDPConn, net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, err
	}
	tries := 1
	if withTCP && (port == "" || port == "0") {
		tries = 8
	}
	for i := 0; ; i++ {
		ua, err := net.ResolveUDPAddr("udp", addr)
		if err != nil {
			return nil, nil, err
		}
		udp, err := net.ListenUDP("udp", ua)
		if err != nil {
			return nil, nil, err
		}
		if !withTCP {
			return udp, nil, nil
		}
		la := udp.LocalAddr().(*net.UDPAddr)
		th := host
		if net.ParseIP(host) == nil && host != "" {
			th = la.IP.String() // a name: take the address UDP resolved it to
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(th, strconv.Itoa(la.Port)))
		if err == nil {
			return udp, ln, nil
		}
		udp.Close()
		if i+1 >= tries {
			return nil, nil, err
		}
	}
}

func (s *Server) turnEnabled() bool { return len(s.keys) > 0 || s.o.Secret != nil }

// Addr is the UDP address the server listens on, for STUN URLs and
// for a board's STUNPort.
func (s *Server) Addr() *net.UDPAddr { return s.udp.LocalAddr().(*net.UDPAddr) }

// TCPAddr is the TCP address the server listens on; nil without
// Options.TCP.
func (s *Server) TCPAddr() *net.TCPAddr {
	if s.tcp == nil {
		return nil
	}
	return s.tcp.Addr().(*net.TCPAddr)
}

// URLs are the ICE server URLs that reach this server by host (empty:
// the relay IP), ready for a board's hello or a node's /token answer.
// turn: URLs are listed only when the server relays (it has Users or
// a Secret): a STUN-only server would only make clients try and fail.
func (s *Server) URLs(host string) []string {
	if host == "" {
		host = s.gen.static.RelayAddress.String()
	}
	hp := net.JoinHostPort(host, strconv.Itoa(s.Addr().Port))
	urls := []string{"stun:" + hp}
	if s.turnEnabled() {
		urls = append(urls, "turn:"+hp+"?transport=udp")
		if s.tcp != nil {
			urls = append(urls, "turn:"+hp+"?transport=tcp")
		}
	}
	return urls
}

// Stats reads the counters; it takes no lock.
func (s *Server) Stats() Stats {
	return Stats{
		Allocations:      int(s.stats.allocations.Load()),
		AllocationsTotal: s.stats.total.Load(),
		Refused:          s.stats.refused.Load(),
		BytesRelayed:     s.stats.bytes.Load(),
	}
}

// Close stops the server. When it returns, the UDP and TCP ports, every
// client TCP connection and every relay port are closed (pion alone
// would close relays in the background and leave TCP clients
// connected). It is safe to call more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		err := s.turn.Close()
		if s.tcp != nil {
			s.tcp.closeAll()
		}
		s.gen.closeAll()
		s.quota.reset()
		if err != nil {
			s.closeErr = fmt.Errorf("stunturn: %w", err)
		}
	})
	return s.closeErr
}

// errClosed refuses allocations racing with Close.
var errClosed = errors.New("stunturn: server closed")
