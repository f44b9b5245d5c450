// Package relay is a Pkarr relay: an HTTP front for the Mainline DHT that
// stores and serves signed packets (PUT and GET /<z32 key>). Browsers use
// relays because they cannot speak UDP; native clients race them against
// the DHT for speed.
//
// The relay verifies every packet before storing or serving it, keeps a
// bounded cache, never serves an older packet than one it has seen, and
// republishes what it receives to the DHT in the background.
package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/keyhole-p2p/keyhole/identity"
	"github.com/keyhole-p2p/keyhole/internal/ratelimit"
	"github.com/keyhole-p2p/keyhole/pkarr"
	"github.com/keyhole-p2p/keyhole/record"
	"github.com/keyhole-p2p/keyhole/resolve"
)

// Config configures a relay. Zero values have the defaults noted.
type Config struct {
	// DHT is the node the relay reads through and publishes to; nil makes
	// a cache-only relay (useful in tests and for private networks).
	DHT interface {
		resolve.DHTGetter
		resolve.DHTPutter
	}
	// CacheSize bounds how many keys are cached; zero means 10000.
	CacheSize int
	// RatePerIP and BurstPerIP limit requests per client address; zero
	// means 10 per second with bursts of 30.
	RatePerIP  rate.Limit
	BurstPerIP int
	// LookupTimeout bounds a DHT lookup for a GET; zero means 5 s.
	LookupTimeout time.Duration
	// MaxFuture is how far ahead of the relay's clock a packet may be
	// signed; zero means record.DefaultWindow.
	MaxFuture time.Duration
	Logger    *slog.Logger
	Now       func() time.Time
}

// Server is the relay's HTTP handler.
type Server struct {
	cfg      Config
	resolver *resolve.Resolver
	cache    *resolve.Cache
	limits   *ratelimit.Keyed[string]
	log      *slog.Logger
	queue    chan *record.SignedPacket
	wg       sync.WaitGroup
	stop     context.CancelFunc
	ctx      context.Context
}

// New makes a relay and starts its background publisher.
func New(cfg Config) *Server {
	if cfg.RatePerIP == 0 {
		cfg.RatePerIP, cfg.BurstPerIP = 10, 30
	}
	if cfg.LookupTimeout == 0 {
		cfg.LookupTimeout = 5 * time.Second
	}
	if cfg.MaxFuture == 0 {
		cfg.MaxFuture = record.DefaultWindow
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Server{cfg: cfg, cache: resolve.NewCache(cfg.CacheSize), log: cfg.Logger,
		limits: ratelimit.New[string](cfg.RatePerIP, cfg.BurstPerIP, 10000), queue: make(chan *record.SignedPacket, 256)}
	s.resolver = &resolve.Resolver{Cache: s.cache, Timeout: cfg.LookupTimeout, Window: -1, Now: cfg.Now}
	if cfg.DHT != nil {
		s.resolver.DHT = cfg.DHT
	}
	s.ctx, s.stop = context.WithCancel(context.Background())
	if cfg.DHT != nil {
		s.wg.Add(1)
		go s.publishLoop()
	}
	return s
}

// Close stops the background publisher and waits for it.
func (s *Server) Close() {
	s.stop()
	s.wg.Wait()
}

// CachedKeys is how many keys the relay holds.
func (s *Server) CachedKeys() int { return s.cache.Len() }

func (s *Server) publishLoop() {
	defer s.wg.Done()
	for {
		select {
		case <-s.ctx.Done():
			return
		case p := <-s.queue:
			ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
			r, err := s.cfg.DHT.Put(ctx, p, 0)
			cancel()
			if err != nil {
				s.log.Info("relay: DHT publish failed", "err", err)
			} else {
				s.log.Debug("relay: published to the DHT", "stored", r.Stored)
			}
		}
	}
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Methods", "GET, PUT, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "Content-Type, If-Modified-Since")
	h.Set("Access-Control-Expose-Headers", "Last-Modified, Cache-Control")
	if r.Method == http.MethodOptions {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if !s.limits.Allow(clientIP(r), s.cfg.Now()) {
		h.Set("Retry-After", "1")
		http.Error(w, "rate limited: slow down and retry", http.StatusTooManyRequests)
		return
	}
	path := strings.TrimPrefix(r.URL.Path, "/")
	if path == "" && r.Method == http.MethodGet {
		h.Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "keyhole Pkarr relay\nkeys cached: %d\nPUT or GET /<z-base-32 public key>\n", s.cache.Len())
		return
	}
	key, err := identity.ParseKey(path)
	if err != nil {
		http.Error(w, "bad key in the path: "+err.Error(), http.StatusBadRequest)
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		s.get(w, r, key)
	case http.MethodPut:
		s.put(w, r, key)
	default:
		h.Set("Allow", "GET, HEAD, PUT, OPTIONS")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

func (s *Server) get(w http.ResponseWriter, r *http.Request, key identity.PublicKey) {
	res, err := s.resolver.Resolve(r.Context(), key)
	if err != nil {
		if errors.Is(err, resolve.ErrNotFound) {
			http.Error(w, "no record for this key", http.StatusNotFound)
			return
		}
		http.Error(w, "lookup failed", http.StatusBadGateway)
		return
	}
	p := res.Packet
	h := w.Header()
	modified := p.Time().UTC().Truncate(time.Second)
	h.Set("Last-Modified", modified.Format(http.TimeFormat))
	ttl := s.resolver.TTL(res.Records)
	if en, ok, _ := s.cache.Get(key, s.cfg.Now()); ok {
		ttl = max(0, en.Expires.Sub(s.cfg.Now()))
	}
	h.Set("Cache-Control", "public, max-age="+strconv.Itoa(int(ttl.Seconds())))
	if ims, err := http.ParseTime(r.Header.Get("If-Modified-Since")); err == nil && !modified.After(ims) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	body := p.RelayPayload()
	h.Set("Content-Type", pkarr.ContentType)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		w.Write(body)
	}
}

func (s *Server) put(w http.ResponseWriter, r *http.Request, key identity.PublicKey) {
	body, err := io.ReadAll(io.LimitReader(r.Body, pkarr.MaxBody+1))
	if err != nil {
		http.Error(w, "reading the body: "+err.Error(), http.StatusBadRequest)
		return
	}
	if len(body) > pkarr.MaxBody {
		http.Error(w, fmt.Sprintf("body larger than %d bytes: a Pkarr DNS packet holds at most %d", pkarr.MaxBody, record.MaxDNSSize), http.StatusRequestEntityTooLarge)
		return
	}
	p, err := record.ParseRelayPayload(key, body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	now := s.cfg.Now()
	rrs, err := p.Verify(record.VerifyOptions{Key: key, Now: now, Window: -1})
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if ahead := p.Time().Sub(now); ahead > s.cfg.MaxFuture {
		http.Error(w, fmt.Sprintf("timestamp is %s in the future; check the publisher's clock", ahead.Round(time.Second)), http.StatusBadRequest)
		return
	}
	if err := s.cache.Store(p, rrs, now.Add(s.resolver.TTL(rrs))); err != nil {
		http.Error(w, "a newer record is already stored: "+err.Error(), http.StatusConflict)
		return
	}
	if s.cfg.DHT != nil {
		select {
		case s.queue <- p:
		default:
			s.log.Warn("relay: DHT publish queue full; the record is cached but not republished now")
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// clientIP is the request's source address without the port.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
