package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/keyhole-p2p/keyhole/board"
	"github.com/keyhole-p2p/keyhole/identity"
	"github.com/keyhole-p2p/keyhole/internal/negotiate"
	"github.com/keyhole-p2p/keyhole/internal/ratelimit"
	"github.com/keyhole-p2p/keyhole/node/pow"
)

// TURN is the relay server the node hands credentials for
// (stunturn.Server). It is an interface so the node can run without one.
type TURN interface {
	// Credentials returns REST-style credentials valid for ttl.
	Credentials(label string, ttl time.Duration) (username, password string, err error)
	// URLs are the stun: and turn: URLs for clients reaching host.
	URLs(host string) []string
}

// Options configure a Server. Zero values have the defaults noted.
type Options struct {
	// Identity names the node and signs what it forwards to other
	// nodes. Required.
	Identity *identity.PrivateKey
	// PublicURL is the base URL clients reach the node at, advertised in
	// / and to other nodes. Empty: derived from each request's Host.
	PublicURL string
	// DHT serves /dht-get and /dht-put and finds other nodes; nil turns
	// those off (the mesh then uses Peers only).
	DHT DHT
	// Network names a private mesh: nodes with different names never
	// find each other. Empty is the public mesh.
	Network string
	// AnnouncePort is the TCP port of this node's HTTP API, announced
	// on the DHT; zero means discover other nodes without announcing.
	AnnouncePort int
	// AnnounceInterval is how often the node announces itself and looks
	// for others; zero means 10 minutes. The first rounds come sooner.
	AnnounceInterval time.Duration
	// Peers are node base URLs to join whether or not the DHT finds them.
	Peers []string
	// MaxPeers bounds the mesh peer set; zero means 64.
	MaxPeers int
	// MeshHops is how many node-to-node hops a room post travels; zero
	// means 1 (every node finds every other on the DHT, so one hop
	// reaches the whole mesh).
	MeshHops int
	// Board, if set, is served at /board (the blind rendezvous board).
	Board http.Handler
	// Relay, if set, is served at /pkarr (a Pkarr relay).
	Relay http.Handler
	// TURN, if set, backs /token and the stun/turn URLs in /.
	TURN TURN
	// TURNHost is the host name in stun:/turn: URLs; empty means the
	// host of PublicURL, or of the request.
	TURNHost string
	// TURNTTL is how long /token credentials last; zero means 1 hour.
	TURNTTL time.Duration
	// Pricing sets the proof-of-work difficulty; nil means
	// DefaultPricing.
	Pricing *Pricing
	// Load measures the node's load; nil means a ProcessLoad against
	// a quarter of the memory the kernel reports available.
	Load LoadMeter
	// TokenTTL is how long a work challenge lasts; zero means 2 minutes.
	TokenTTL time.Duration
	// MaxSubscribers bounds open room streams; zero means 10000.
	// MaxSubscribersPerClient bounds them per address (per /64 for
	// IPv6); zero means 32. SubscriberQueue is how many events a stream
	// may fall behind before it is dropped; zero means 64.
	MaxSubscribers          int
	MaxSubscribersPerClient int
	SubscriberQueue         int
	// RatePerClient limits each address's requests to the endpoints
	// without work (/, /nodes, /ip, /dht-get, room streams); zero means
	// 20 per second with bursts of 40.
	RatePerClient rate.Limit
	// TrustProxy takes the client address from X-Forwarded-For (the
	// last entry), for a node behind a reverse proxy. Off by default:
	// anyone can send that header.
	TrustProxy bool
	// Registry receives the node's metrics; nil makes a private one.
	// /metrics serves it.
	Registry *prometheus.Registry
	// HTTPClient reaches other nodes; nil means one with 10 s timeouts.
	HTTPClient *http.Client
	// Version is reported in /.
	Version string
	Logger  *slog.Logger
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
}

// Server is a community node's HTTP API (node/PROTOCOL.md). Use it as an
// http.Handler and call Run for its background work.
type Server struct {
	opts    Options
	key     identity.PublicKey
	issuer  *pow.Issuer
	pricing Pricing
	posts   *postCounter
	hub     *hub
	peers   *peerSet
	seen    *seenSet
	limits  *ratelimit.Keyed[netip.Prefix]
	meshLim *ratelimit.Keyed[identity.PublicKey]
	m       *metrics
	mux     *http.ServeMux
	log     *slog.Logger
	client  *http.Client
	fwd     forwarders

	closeOnce sync.Once
	closing   chan struct{}
	streams   sync.WaitGroup
}

// New checks opts and returns a Server.
func New(opts Options) (*Server, error) {
	if opts.Identity == nil {
		return nil, errors.New("node: an identity is required to sign mesh messages")
	}
	if opts.PublicURL != "" {
		u, err := url.Parse(opts.PublicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("node: public URL %q must be http(s)://host[:port]", opts.PublicURL)
		}
		opts.PublicURL = strings.TrimRight(opts.PublicURL, "/")
	}
	for _, p := range opts.Peers {
		if _, err := normalizeURL(p); err != nil {
			return nil, fmt.Errorf("node: peer %q: %w", p, err)
		}
	}
	if opts.AnnouncePort < 0 || opts.AnnouncePort > 65535 {
		return nil, fmt.Errorf("node: announce port %d is not a port", opts.AnnouncePort)
	}
	setDefault(&opts.AnnounceInterval, 10*time.Minute)
	setDefault(&opts.MaxPeers, 64)
	setDefault(&opts.MeshHops, 1)
	setDefault(&opts.TURNTTL, time.Hour)
	setDefault(&opts.TokenTTL, 2*time.Minute)
	setDefault(&opts.MaxSubscribers, 10000)
	setDefault(&opts.MaxSubscribersPerClient, 32)
	setDefault(&opts.SubscriberQueue, 64)
	setDefault(&opts.RatePerClient, 20)
	if opts.MeshHops > 8 {
		return nil, fmt.Errorf("node: mesh hops %d is more than 8", opts.MeshHops)
	}
	if opts.Pricing == nil {
		p := DefaultPricing()
		opts.Pricing = &p
	}
	if p := *opts.Pricing; p.Base < 0 || p.LoadBits < 0 || p.PostSurcharge < 0 || p.MaxBits < int(p.Base) || p.MaxBits > pow.MaxBits {
		return nil, fmt.Errorf("node: pricing %+v: need 0 <= base <= max bits <= %d and non-negative load bits and surcharge", p, pow.MaxBits)
	}
	if opts.Load == nil {
		sys := &board.SystemMemory{Fraction: 0.25, Fallback: 512 << 20}
		opts.Load = &ProcessLoad{Budget: sys.Budget}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	issuer, err := pow.NewIssuer(secret, pow.Options{TTL: opts.TokenTTL, Now: opts.Now})
	if err != nil {
		return nil, err
	}
	s := &Server{
		opts:    opts,
		key:     opts.Identity.Public(),
		issuer:  issuer,
		pricing: *opts.Pricing,
		posts:   newPostCounter(100000),
		hub:     newHub(opts.MaxSubscribers, opts.MaxSubscribersPerClient, opts.SubscriberQueue),
		peers:   newPeerSet(opts.MaxPeers),
		seen:    newSeenSet(100000, 10*time.Minute),
		limits:  ratelimit.New[netip.Prefix](opts.RatePerClient, int(2*opts.RatePerClient), 100000),
		meshLim: ratelimit.New[identity.PublicKey](500, 1000, 1024),
		log:     opts.Logger,
		client:  opts.HTTPClient,
		fwd:     forwarders{queues: map[identity.PublicKey]chan forwardJob{}},
		closing: make(chan struct{}),
	}
	s.m = newMetrics(s, opts.Registry)
	s.routes()
	return s, nil
}

func setDefault[T comparable](p *T, v T) {
	var zero T
	if *p == zero {
		*p = v
	}
}

// Key is the node's public key.
func (s *Server) Key() identity.PublicKey { return s.key }

// Run does the node's background work until ctx ends: sampling its load,
// forwarding posts to other nodes, announcing itself and finding others.
func (s *Server) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	if pl, ok := s.opts.Load.(*ProcessLoad); ok {
		wg.Go(func() { pl.Run(ctx) })
	}
	s.fwd.mu.Lock()
	s.fwd.ctx = ctx
	s.fwd.mu.Unlock()
	wg.Go(func() { s.discoverLoop(ctx) })
	wg.Wait()
	return ctx.Err()
}

// Close ends every open room stream, so an http.Server's Shutdown can
// finish; clients' EventSources then reconnect to another node.
func (s *Server) Close() {
	s.closeOnce.Do(func() { close(s.closing) })
	s.streams.Wait()
}

func (s *Server) routes() {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.serveIndex)
	mux.HandleFunc("GET /nodes", s.serveNodes)
	mux.HandleFunc("GET /ip", s.serveIP)
	mux.HandleFunc("GET /dht-get", s.serveDHTGet)
	mux.HandleFunc("POST /dht-put", s.serveDHTPut)
	mux.HandleFunc("POST /token", s.serveToken)
	mux.HandleFunc("GET /room/{hash}", s.serveSubscribe)
	mux.HandleFunc("POST /room/{hash}", s.servePost)
	mux.HandleFunc("POST /mesh/room/{hash}", s.serveMesh)
	mux.Handle("GET /metrics", s.m.handler())
	if s.opts.Board != nil {
		b := http.StripPrefix("/board", s.opts.Board)
		mux.Handle("/board", b)
		mux.Handle("/board/", b)
	}
	if s.opts.Relay != nil {
		mux.Handle("/pkarr/", http.StripPrefix("/pkarr", s.opts.Relay))
	}
	s.mux = mux
}

// ServeHTTP implements http.Handler: CORS for every response, so pages
// on any origin can use any node, then the routes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Content-Type, X-Keyhole-Pow, Last-Event-ID")
		h.Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// clientAddr is the address the request came from.
func (s *Server) clientAddr(r *http.Request) (netip.AddrPort, error) {
	if s.opts.TrustProxy {
		if xff := r.Header.Get("X-Forwarded-For"); xff != "" {
			parts := strings.Split(xff, ",")
			a, err := netip.ParseAddr(strings.TrimSpace(parts[len(parts)-1]))
			if err != nil {
				return netip.AddrPort{}, fmt.Errorf("X-Forwarded-For %q: %w", xff, err)
			}
			return netip.AddrPortFrom(a.Unmap(), 0), nil
		}
	}
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.AddrPort{}, err
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// admit applies the per-address rate limit of the endpoints without
// work and returns the client's address.
func (s *Server) admit(w http.ResponseWriter, r *http.Request) (netip.Addr, bool) {
	ap, err := s.clientAddr(r)
	if err != nil {
		s.fail(w, r, http.StatusBadRequest, "cannot tell your address: "+err.Error())
		return netip.Addr{}, false
	}
	if !s.limits.Allow(clientBlock(ap.Addr()), s.opts.Now()) {
		s.m.refused.WithLabelValues("rate").Inc()
		w.Header().Set("Retry-After", "1")
		s.fail(w, r, http.StatusTooManyRequests, "too many requests from your address; slow down")
		return netip.Addr{}, false
	}
	return ap.Addr(), true
}

// baseURL is the node's URL as a client should use it.
func (s *Server) baseURL(r *http.Request) string {
	if s.opts.PublicURL != "" {
		return s.opts.PublicURL
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// Info is the node's self-description at / (node/PROTOCOL.md).
type Info struct {
	Node           string   `json:"node"`
	URL            string   `json:"url"`
	Token          string   `json:"token"`
	TokenTTL       int      `json:"token_ttl"`
	Difficulty     int      `json:"difficulty"`
	BaseDifficulty int      `json:"base_difficulty"`
	Load           float64  `json:"load"`
	CPU            float64  `json:"cpu"`
	Mem            float64  `json:"mem"`
	Posts          int      `json:"posts"`
	STUN           []string `json:"stun"`
	TURN           []string `json:"turn"`
	Board          string   `json:"board,omitempty"`
	Pkarr          string   `json:"pkarr,omitempty"`
	Version        string   `json:"version,omitempty"`
}

// price is the difficulty for a client at a, and the load behind it.
func (s *Server) price(a netip.Addr) (bits, base, posts int, cpu, mem float64) {
	cpu, mem = s.opts.Load.Load()
	posts = s.posts.count(a, s.opts.Now())
	load := max(cpu, mem)
	return s.pricing.Bits(load, posts), s.pricing.Bits(load, 0), posts, cpu, mem
}

func (s *Server) info(r *http.Request, a netip.Addr) Info {
	bits, base, posts, cpu, mem := s.price(a)
	root := s.baseURL(r)
	in := Info{
		Node: s.key.String(), URL: root, Token: s.issuer.Token(), TokenTTL: int(s.issuer.TTL().Seconds()),
		Difficulty: bits, BaseDifficulty: base, Load: round3(max(cpu, mem)), CPU: round3(cpu), Mem: round3(mem),
		Posts: posts, STUN: []string{}, TURN: []string{}, Version: s.opts.Version,
	}
	if s.opts.TURN != nil {
		for _, u := range s.opts.TURN.URLs(s.turnHost(root)) {
			if strings.HasPrefix(u, "stun:") {
				in.STUN = append(in.STUN, u)
			} else {
				in.TURN = append(in.TURN, u)
			}
		}
	}
	if s.opts.Board != nil {
		in.Board = "ws" + strings.TrimPrefix(root, "http") + "/board"
	}
	if s.opts.Relay != nil {
		in.Pkarr = root + "/pkarr"
	}
	return in
}

func (s *Server) turnHost(base string) string {
	if s.opts.TURNHost != "" {
		return s.opts.TURNHost
	}
	if u, err := url.Parse(base); err == nil {
		return u.Hostname()
	}
	return "127.0.0.1"
}

func round3(x float64) float64 { return float64(int(x*1000+0.5)) / 1000 }

func (s *Server) serveIndex(w http.ResponseWriter, r *http.Request) {
	a, ok := s.admit(w, r)
	if !ok {
		return
	}
	in := s.info(r, a)
	w.Header().Set("Cache-Control", "no-store")
	if negotiate.WantsJSON(r) {
		writeJSON(w, http.StatusOK, in)
		return
	}
	rooms, subs := s.hub.counts()
	renderPage(w, http.StatusOK, "keyhole community node", indexPage, struct {
		Info
		Peers, Rooms, Subscribers int
	}{in, s.peers.len(), rooms, subs})
}

func (s *Server) serveNodes(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.admit(w, r); !ok {
		return
	}
	urls := s.peers.sample(16, s.opts.Now().Add(-30*time.Minute))
	w.Header().Set("Cache-Control", "no-store")
	if negotiate.WantsJSON(r) {
		writeJSON(w, http.StatusOK, urls)
		return
	}
	renderPage(w, http.StatusOK, "nodes", nodesPage, urls)
}

func (s *Server) serveIP(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.admit(w, r); !ok {
		return
	}
	ap, _ := s.clientAddr(r)
	v := struct {
		IP   string `json:"ip"`
		Port uint16 `json:"port"`
	}{ap.Addr().String(), ap.Port()}
	w.Header().Set("Cache-Control", "no-store")
	if negotiate.WantsJSON(r) {
		writeJSON(w, http.StatusOK, v)
		return
	}
	renderPage(w, http.StatusOK, "your address", ipPage, v)
}

// checkWork verifies the request's proof of work for endpoint and body,
// at the price for a. On failure it answers the client, with a fresh
// token and the difficulty to solve, and returns false.
func (s *Server) checkWork(w http.ResponseWriter, r *http.Request, endpoint string, body []byte, a netip.Addr) bool {
	bits, _, _, _, _ := s.price(a)
	hdr := r.Header.Get("X-Keyhole-Pow")
	status, err := http.StatusPreconditionRequired, error(nil)
	if hdr == "" {
		err = errors.New("pow: this request needs proof of work: send X-Keyhole-Pow: <token>.<nonce> (node/PROTOCOL.md)")
	} else if tok, nonce, perr := pow.ParseHeader(hdr); perr != nil {
		status, err = http.StatusBadRequest, perr
	} else if err = s.issuer.Check(tok, nonce, pow.Binding(endpoint, body), bits); err != nil {
		switch {
		case errors.Is(err, pow.ErrReused):
			status = http.StatusConflict
		case errors.Is(err, pow.ErrBusy):
			status = http.StatusServiceUnavailable
		default:
			status = http.StatusForbidden
		}
	}
	if err == nil {
		s.m.work.WithLabelValues("ok").Inc()
		return true
	}
	s.m.work.WithLabelValues(workReason(status)).Inc()
	writeJSONOrText(w, r, status, map[string]any{"error": err.Error(), "token": s.issuer.Token(), "difficulty": bits})
	return false
}

func workReason(status int) string {
	switch status {
	case http.StatusPreconditionRequired:
		return "missing"
	case http.StatusBadRequest:
		return "malformed"
	case http.StatusConflict:
		return "reused"
	case http.StatusServiceUnavailable:
		return "busy"
	}
	return "refused"
}

// readBody reads at most limit bytes; a longer body is refused with 413.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, limit int64, what string) ([]byte, bool) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			s.fail(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("%s is larger than %d bytes", what, limit))
		} else {
			s.fail(w, r, http.StatusBadRequest, "reading the request: "+err.Error())
		}
		return nil, false
	}
	return b, true
}

func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	ap, err := s.clientAddr(r)
	if err != nil {
		s.fail(w, r, http.StatusBadRequest, "cannot tell your address: "+err.Error())
		return
	}
	if s.opts.TURN == nil {
		s.fail(w, r, http.StatusNotFound, "this node runs no TURN server; ask another node from /nodes")
		return
	}
	body, ok := s.readBody(w, r, 256, "the token request")
	if !ok || !s.checkWork(w, r, "token", body, ap.Addr()) {
		return
	}
	var label [6]byte
	rand.Read(label[:])
	user, pass, err := s.opts.TURN.Credentials(hex.EncodeToString(label[:]), s.opts.TURNTTL)
	if err != nil {
		s.log.Error("node: TURN credentials", "err", err)
		s.fail(w, r, http.StatusInternalServerError, "could not make TURN credentials; try again later")
		return
	}
	s.m.tokens.Inc()
	writeJSON(w, http.StatusOK, map[string]any{
		"username": user, "password": pass, "ttl": int(s.opts.TURNTTL.Seconds()),
		"uris": s.opts.TURN.URLs(s.turnHost(s.baseURL(r))),
	})
}

// fail answers one error line, as JSON or text.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	writeJSONOrText(w, r, status, map[string]any{"error": msg})
}

func writeJSONOrText(w http.ResponseWriter, r *http.Request, status int, v map[string]any) {
	if negotiate.WantsJSON(r) || r.Method == http.MethodPost {
		writeJSON(w, status, v)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	fmt.Fprintln(w, v["error"])
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func normalizeURL(s string) (string, error) {
	u, err := url.Parse(strings.TrimRight(s, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("want an http(s)://host[:port] base URL")
	}
	if _, _, err := net.SplitHostPort(u.Host); err != nil && !strings.Contains(err.Error(), "missing port") {
		return "", fmt.Errorf("bad host %q", u.Host)
	}
	return u.String(), nil
}
