package board

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/time/rate"

	"github.com/keyhole-p2p/keyhole/board/wire"
	"github.com/keyhole-p2p/keyhole/identity"
	"github.com/keyhole-p2p/keyhole/internal/ratelimit"
)

// Options configure a Server. The zero value is a working board with
// ORP's defaults.
type Options struct {
	// Freshness is how old a record may be (ORP: 120 s); it also bounds
	// the replay cache. FutureSkew is how far ahead of the board's clock
	// a record may be dated (default 30 s).
	Freshness  time.Duration
	FutureSkew time.Duration
	// ChannelTTL is the longest a match's channel lives (ORP: 30 s).
	ChannelTTL time.Duration
	// MaxFrame bounds one WebSocket message, in bytes (default 64 KiB).
	MaxFrame int
	// Memory sizes the table; nil means a quarter of available memory.
	Memory MemoryMonitor
	// MaxConns bounds open WebSocket connections (default 10000).
	MaxConns int
	// MaxChannels bounds open channels in all (default 10000);
	// MaxChannelsPerKey bounds the channels one identity takes part in
	// at once (default 4).
	MaxChannels       int
	MaxChannelsPerKey int
	// AnnounceRate/AnnounceBurst: presence and intent records per
	// identity (default 1/s, burst 10). MatchRate/MatchBurst: matches an
	// initiator may open (default 1 every 2 s, burst 5). ConnRate/
	// ConnBurst: messages per connection, checked before any signature
	// is verified (default 20/s, burst 40).
	AnnounceRate  rate.Limit
	AnnounceBurst int
	MatchRate     rate.Limit
	MatchBurst    int
	ConnRate      rate.Limit
	ConnBurst     int
	// ReplayCacheMax bounds the nonce cache (default 1,000,000).
	ReplayCacheMax int
	// Admission, if set, may refuse a presence or intent before it is
	// stored: the proof-of-work hook. PoWBits is what the hello message
	// advertises (a HashcashAdmission sets it itself).
	Admission Admission
	// Pusher wakes a responder whose channel timed out; nil: no wake-up.
	Pusher Pusher
	// PublicURL is this board's own ws:// or wss:// URL, as devices list
	// it in boards_scope and as neighbours see it in a path. Required
	// with Peers.
	PublicURL string
	// Peers are neighbouring boards to propagate records to (ws URLs).
	Peers []string
	// HopLimit bounds how far a record travels between boards (default 3).
	HopLimit int
	// STUN lists stun: URLs the hello message offers devices.
	// STUNPort, if set, adds stun:<host>:<STUNPort>, where host is the
	// name the device used to reach the board (a board serving STUN on
	// its own UDP port does not need to know its public name).
	STUN     []string
	STUNPort int
	// Logger gets counts and events, never keys, nonces or blobs.
	Logger *slog.Logger
	// Tap, if set, sees every message the board receives (in) and sends
	// on a WebSocket, as bytes. Tests use it to prove what the board saw.
	Tap func(in bool, msg []byte)
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
}

// Admission decides whether a record may enter the table. pow is the
// envelope's pow field; signature is the record's.
type Admission interface {
	Admit(kind, signature, pow string) error
}

// HashcashAdmission demands wire.CheckPoW work of Bits bits.
type HashcashAdmission struct{ Bits int }

// Admit implements Admission.
func (h HashcashAdmission) Admit(_, signature, pow string) error {
	return wire.CheckPoW(signature, pow, h.Bits)
}

func (o *Options) defaults() {
	def := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	defi := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	defr := func(p *rate.Limit, v rate.Limit) {
		if *p == 0 {
			*p = v
		}
	}
	def(&o.Freshness, 120*time.Second)
	def(&o.FutureSkew, 30*time.Second)
	def(&o.ChannelTTL, 30*time.Second)
	defi(&o.MaxFrame, 64<<10)
	defi(&o.MaxConns, 10000)
	defi(&o.MaxChannels, 10000)
	defi(&o.MaxChannelsPerKey, 4)
	defr(&o.AnnounceRate, 1)
	defi(&o.AnnounceBurst, 10)
	defr(&o.MatchRate, 0.5)
	defi(&o.MatchBurst, 5)
	defr(&o.ConnRate, 20)
	defi(&o.ConnBurst, 40)
	defi(&o.ReplayCacheMax, 1_000_000)
	defi(&o.HopLimit, 3)
	if o.Memory == nil {
		o.Memory = &SystemMemory{Fraction: 0.25, Fallback: 256 << 20}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Server is a board. It is an http.Handler: WebSocket upgrades on any
// path speak ORP, GET /status reports counts.
type Server struct {
	opts Options
	log  *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // peer links and pushes
	// live counts connections' read and write loops; Close waits for
	// them to drain and unregister.
	live sync.WaitGroup
	push chan struct{} // bounds concurrent push requests

	mu        sync.Mutex
	table     *table
	channels  map[string]*channel
	orphans   keySets[*channel] // channels waiting for their responder
	perKey    map[identity.PublicKey]int
	replay    *replayCache
	announce  *ratelimit.Keyed[identity.PublicKey]
	matches   *ratelimit.Keyed[identity.PublicKey]
	conns     map[*conn]struct{}
	neighbors map[*conn]struct{}
	stats     Stats
	closed    bool
}

// New makes a board and starts its links to Options.Peers.
func New(opts Options) (*Server, error) {
	opts.defaults()
	if len(opts.Peers) > 0 && opts.PublicURL == "" {
		return nil, errors.New("board: neighbours need this board's own URL (PublicURL, --public-url) to recognise loops")
	}
	// Every value that reaches a message must fit its schema.
	switch {
	case opts.Freshness < time.Second || opts.Freshness > 10*time.Minute:
		return nil, fmt.Errorf("board: Freshness %s is outside 1s..10m", opts.Freshness)
	case opts.ChannelTTL > 10*time.Minute:
		return nil, fmt.Errorf("board: ChannelTTL %s is over 10m", opts.ChannelTTL)
	case opts.MaxFrame < 1024 || opts.MaxFrame > 1<<20:
		return nil, fmt.Errorf("board: MaxFrame %d is outside 1 KiB..1 MiB", opts.MaxFrame)
	case len(opts.STUN) > 4 || (len(opts.STUN) == 4 && opts.STUNPort != 0):
		return nil, errors.New("board: at most 4 STUN servers, counting STUNPort's")
	}
	for _, p := range append([]string{opts.PublicURL}, opts.Peers...) {
		if p != "" && !strings.HasPrefix(p, "ws://") && !strings.HasPrefix(p, "wss://") {
			return nil, fmt.Errorf("board: %q is not a ws:// or wss:// URL", p)
		}
	}
	s := &Server{
		opts:      opts,
		log:       opts.Logger,
		push:      make(chan struct{}, 32),
		channels:  map[string]*channel{},
		orphans:   keySets[*channel]{},
		perKey:    map[identity.PublicKey]int{},
		replay:    newReplayCache(opts.ReplayCacheMax),
		announce:  ratelimit.New[identity.PublicKey](opts.AnnounceRate, opts.AnnounceBurst, 1<<20),
		matches:   ratelimit.New[identity.PublicKey](opts.MatchRate, opts.MatchBurst, 1<<20),
		conns:     map[*conn]struct{}{},
		neighbors: map[*conn]struct{}{},
	}
	s.stats.Rejected = map[string]int{}
	s.table = newTable(s.onRemoved)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	for _, p := range opts.Peers {
		s.wg.Add(1)
		go s.linkPeer(p)
	}
	return s, nil
}

// Close disconnects everyone, tears down every channel and forgets the
// table.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for _, ch := range s.channels {
		s.teardown(ch, "shutdown")
	}
	// Every connection gets what was queued for it (the channel_closed
	// "shutdown" messages) and then a close with StatusGoingAway; those
	// that do not drain within byeGrace are cut.
	for c := range s.conns {
		c.sendBye()
	}
	s.mu.Unlock()
	flushed := make(chan struct{})
	go func() { s.live.Wait(); close(flushed) }()
	select {
	case <-flushed:
	case <-time.After(byeGrace):
	}
	s.cancel()
	s.wg.Wait()
	<-flushed
	return nil
}

// byeGrace bounds how long Close waits for connections to drain.
const byeGrace = 2 * time.Second

// capacity is how many entries the memory budget allows.
func (s *Server) capacity() int {
	return int(min(s.opts.Memory.Budget()/entryCost, 1<<30))
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		s.serveWebSocket(w, r)
		return
	}
	switch r.URL.Path {
	case "/status", "/":
		s.serveStatus(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (s *Server) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	full, closed := len(s.conns) >= s.opts.MaxConns, s.closed
	s.mu.Unlock()
	if closed {
		http.Error(w, "board shutting down", http.StatusServiceUnavailable)
		return
	}
	if full {
		w.Header().Set("Retry-After", "30")
		http.Error(w, "board full: too many connections; try again later or use another board", http.StatusServiceUnavailable)
		return
	}
	// Any origin may connect: the board is public and holds nothing a
	// cookie or an origin could authorise.
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return
	}
	s.serveConn(ws, "", r.Host)
}

// serveConn runs one connection until it ends. peerURL is set for links
// this board dialled to a neighbour.
func (s *Server) serveConn(ws *websocket.Conn, peerURL, host string) {
	ws.SetReadLimit(int64(s.opts.MaxFrame))
	c := newConn(s, ws)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ws.CloseNow()
		return
	}
	s.conns[c] = struct{}{}
	s.stats.Connections = len(s.conns)
	if peerURL != "" {
		c.peerURL = peerURL
		s.neighbors[c] = struct{}{}
		c.send(wire.Marshal(&wire.Envelope{Kind: wire.KindPeerHello, Board: s.opts.PublicURL}))
	} else {
		c.send(s.hello(host))
	}
	// Both loops count in s.live, added under the lock Close takes
	// before it waits.
	s.live.Add(2)
	s.mu.Unlock()
	go func() {
		defer s.live.Done()
		c.writeLoop()
	}()
	c.readLoop()
	s.unregister(c)
	s.live.Done()
}

func (s *Server) hello(host string) []byte {
	stun := s.opts.STUN
	if s.opts.STUNPort != 0 && host != "" {
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if strings.Contains(host, ":") {
			host = "[" + host + "]"
		}
		stun = append(slices.Clone(stun), "stun:"+host+":"+strconv.Itoa(s.opts.STUNPort))
	}
	bits := 0
	if h, ok := s.opts.Admission.(HashcashAdmission); ok {
		bits = h.Bits
	}
	return wire.Marshal(&wire.Envelope{
		Kind: wire.KindHello, Version: 1, PoWBits: &bits, MaxFrame: s.opts.MaxFrame,
		FreshnessMS: s.opts.Freshness.Milliseconds(), STUN: stun,
	})
}

// unregister forgets a closed connection: its channels end, and its
// records stay in the table without a connection (a presence can still
// be matched, and its push endpoint woken, until it is superseded or
// evicted).
func (s *Server) unregister(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
	delete(s.neighbors, c)
	s.stats.Connections = len(s.conns)
	for e := range c.entries {
		e.conn = nil
	}
	c.entries = nil
	for ch := range c.channels {
		s.teardown(ch, "peer_gone")
	}
	c.shut()
}

// reject answers a message with a rejection and counts it.
func (s *Server) reject(c *conn, req, code, reason string) {
	s.stats.Rejected[code]++
	if c.peerURL != "" {
		return // see handle: neighbours are never answered
	}
	c.send(wire.Marshal(&wire.Envelope{Kind: wire.KindRejected, Req: req, Code: code, Reason: reason}))
}

func (s *Server) rejectLocked(c *conn, req, code, reason string) {
	s.mu.Lock()
	s.reject(c, req, code, reason)
	s.mu.Unlock()
}

func (s *Server) ack(c *conn, req string) {
	c.send(wire.Marshal(&wire.Envelope{Kind: wire.KindAck, Req: req}))
}

// handle dispatches one message from c.
func (s *Server) handle(c *conn, raw []byte) {
	var head struct {
		Kind string `json:"kind"`
		Req  string `json:"req"`
	}
	json.Unmarshal(raw, &head)
	from := wire.FromClient
	if c.isPeer() || head.Kind == wire.KindPeerHello {
		from = wire.FromPeer
		if head.Kind == wire.KindHello {
			// The greeting the neighbour sends every new connection,
			// including the link this board dialled: nothing to do, and
			// not a dropped record.
			return
		}
	}
	env, err := wire.Parse(raw, from)
	if err != nil {
		if from == wire.FromPeer {
			// Neighbours are never answered: two boards must not
			// bounce rejections at each other.
			s.mu.Lock()
			s.stats.PropagationDrops++
			s.mu.Unlock()
			return
		}
		s.rejectLocked(c, validReq(head.Req), "bad_message", trim(err.Error()))
		return
	}
	switch env.Kind {
	case wire.KindPresence:
		s.handlePresence(c, env)
	case wire.KindIntent:
		s.handleIntent(c, env)
	case wire.KindRelay:
		s.handleRelay(c, env)
	case wire.KindPeerHello:
		s.handlePeerHello(c, env)
	case wire.KindPropagate:
		s.handlePropagate(c, env)
	}
}

// validReq echoes a req only if it is one the schema would allow, so a
// rejection never reflects arbitrary bytes.
func validReq(req string) string {
	if wire.SchemaFor("req").ValidateValue(req) != nil {
		return ""
	}
	return req
}

func trim(s string) string {
	if len(s) > 300 {
		return s[:297] + "..."
	}
	return s
}

// checkSigned checks a signed record or frame: its signature by key
// and its timestamp. It returns the rejection code and reason, or "".
func (s *Server) checkSigned(raw []byte, key identity.PublicKey, ts string) (time.Time, string, string) {
	if err := wire.VerifyRaw(raw, key); err != nil {
		return time.Time{}, "bad_signature", err.Error()
	}
	at, err := wire.CheckFresh(ts, s.opts.Now(), s.opts.Freshness, s.opts.FutureSkew)
	switch {
	case errors.Is(err, wire.ErrStale):
		return at, "stale", err.Error()
	case errors.Is(err, wire.ErrFuture):
		return at, "future", err.Error()
	case err != nil:
		return at, "bad_message", err.Error()
	}
	return at, "", ""
}

// checkRecord verifies what every presence and intent needs: the
// signature by its own key, the time, and the admission hook. It runs
// without the lock; signatures are the expensive part.
func (s *Server) checkRecord(c *conn, env *wire.Envelope, key identity.PublicKey, ts, sig string) (time.Time, bool) {
	at, code, why := s.checkSigned(env.Record, key, ts)
	if code != "" {
		s.rejectLocked(c, env.Req, code, why)
		return at, false
	}
	if s.opts.Admission != nil {
		if err := s.opts.Admission.Admit(env.Kind, sig, env.PoW); err != nil {
			s.rejectLocked(c, env.Req, "pow_required", err.Error())
			return at, false
		}
	}
	return at, true
}

// admitLocked applies the per-identity bucket and the replay cache.
func (s *Server) admitLocked(c *conn, req string, key identity.PublicKey, nonce string, at time.Time) bool {
	now := s.opts.Now()
	if !s.announce.Allow(key, now) {
		s.reject(c, req, "rate_limited", "too many records from this identity; slow down")
		return false
	}
	fresh, full := s.replay.check(nonce, at.Add(s.opts.Freshness), now)
	if full {
		s.reject(c, req, "busy", "the board's replay cache is full; try again shortly")
		return false
	}
	if !fresh {
		s.reject(c, req, "replay", "this record's session_nonce was already used")
		return false
	}
	return true
}

func (s *Server) handlePresence(c *conn, env *wire.Envelope) {
	var p wire.Presence
	if err := json.Unmarshal(env.Record, &p); err != nil {
		s.rejectLocked(c, env.Req, "bad_message", err.Error())
		return
	}
	key, _ := wire.DecodeKey(p.SelfKey)
	at, ok := s.checkRecord(c, env, key, p.Timestamp, p.Signature)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.admitLocked(c, env.Req, key, p.SessionNonce, at) {
		return
	}
	e := &entry{kind: kindPresence, key: key, nonce: p.SessionNonce, raw: env.Record, push: p.PushToken, scope: p.BoardsScope}
	c.own(e)
	s.table.add(e, s.capacity())
	s.ack(c, env.Req)
	s.attachResponder(c, key)
	s.matchWaiting(e)
	s.propagate(e, 0, nil)
	s.countTable()
}

func (s *Server) handleIntent(c *conn, env *wire.Envelope) {
	var in wire.Intent
	if err := json.Unmarshal(env.Record, &in); err != nil {
		s.rejectLocked(c, env.Req, "bad_message", err.Error())
		return
	}
	key, _ := wire.DecodeKey(in.SelfKey)
	target, _ := wire.DecodeKey(in.TargetKey)
	if key == target {
		s.rejectLocked(c, env.Req, "bad_message", "an intent toward its own key")
		return
	}
	at, ok := s.checkRecord(c, env, key, in.Timestamp, in.Signature)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.admitLocked(c, env.Req, key, in.SessionNonce, at) {
		return
	}
	e := &entry{kind: kindIntent, key: key, target: target, nonce: in.SessionNonce, raw: env.Record}
	if p := s.table.presence[target]; p != nil {
		if p.via != "" {
			// The target waits on a neighbouring board: send the
			// initiator there.
			s.ack(c, env.Req)
			s.refer(c, target, wire.RoleInitiator, p.via)
			return
		}
		if code, why := s.canMatch(key, target); code != "" {
			s.reject(c, env.Req, code, why)
			return
		}
		s.ack(c, env.Req)
		s.stats.Matched++ // matched at once: the intent never waits
		s.openChannel(c, key, p)
		return
	}
	c.own(e)
	s.table.add(e, s.capacity())
	s.ack(c, env.Req)
	s.propagate(e, 0, nil)
	s.countTable()
}

// matchWaiting matches a new presence with the intents waiting for it.
func (s *Server) matchWaiting(p *entry) {
	for _, in := range s.table.intentsFor(p.key) {
		switch {
		case in.via != "" && p.conn != nil:
			// The initiator is on another board: send the responder there.
			s.refer(p.conn, in.key, wire.RoleResponder, in.via)
			s.table.remove(in, removedMatched)
		case p.via != "" && in.via == "" && in.conn != nil:
			// The target waits on a neighbouring board: send the
			// initiator there.
			s.refer(in.conn, p.key, wire.RoleInitiator, p.via)
			s.table.remove(in, removedMatched)
		case in.via != "" || in.conn == nil:
			// Nobody here to meet: the initiator left, or both sides
			// are remote. The intent has done its work.
			s.table.remove(in, removedMatched)
		default:
			if code, _ := s.canMatch(in.key, p.key); code != "" {
				continue // stays waiting; the limit may lift
			}
			c := in.conn
			s.table.remove(in, removedMatched)
			s.openChannel(c, in.key, p)
		}
	}
}

// canMatch applies the match throttle and the channel caps.
func (s *Server) canMatch(initiator, responder identity.PublicKey) (string, string) {
	if len(s.channels) >= s.opts.MaxChannels {
		return "busy", "the board has too many open channels; try again shortly"
	}
	if s.perKey[initiator] >= s.opts.MaxChannelsPerKey || s.perKey[responder] >= s.opts.MaxChannelsPerKey {
		return "too_many_channels", "too many rendezvous in progress for one of these keys; wait for one to finish"
	}
	if !s.matches.Allow(initiator, s.opts.Now()) {
		return "rate_limited", "too many matches opened by this identity; slow down"
	}
	return "", ""
}

func (s *Server) refer(c *conn, counterparty identity.PublicKey, role, board string) {
	s.stats.Referrals++
	c.send(wire.Marshal(&wire.Envelope{Kind: wire.KindReferral, CounterpartyKey: wire.EncodeKey(counterparty), Role: role, Board: board}))
}

func (s *Server) onRemoved(e *entry, why removal) {
	if e.conn != nil {
		delete(e.conn.entries, e)
	}
	switch why {
	case removedMatched:
		s.stats.Matched++
	case removedCapacity:
		s.stats.EvictedCapacity++
	case removedSuperseded:
		s.stats.Superseded++
	}
	if why != removedMatched && e.conn != nil {
		reason := "capacity"
		if why == removedSuperseded {
			reason = "superseded"
		}
		e.conn.send(wire.Marshal(&wire.Envelope{Kind: wire.KindEvicted, RecordKind: e.kind.String(), SessionNonce: e.nonce, Reason: reason}))
	}
}

func (s *Server) countTable() {
	s.stats.Presences = len(s.table.presence)
	s.stats.Intents = s.table.len() - s.stats.Presences
}

// Stats are the board's counts; nothing in them identifies a device.
type Stats struct {
	Connections      int            `json:"connections"`
	Neighbors        int            `json:"neighbors"`
	Presences        int            `json:"presences"`
	Intents          int            `json:"intents"`
	Capacity         int            `json:"capacity"`
	Channels         int            `json:"channels"`
	ChannelsOpened   int            `json:"channels_opened"`
	Completed        int            `json:"channels_completed"`
	TimedOut         int            `json:"channels_timed_out"`
	PeerGone         int            `json:"channels_peer_gone"`
	Relayed          int            `json:"frames_relayed"`
	Matched          int            `json:"intents_matched"`
	EvictedCapacity  int            `json:"evicted_capacity"`
	Superseded       int            `json:"superseded"`
	Referrals        int            `json:"referrals"`
	Propagated       int            `json:"records_propagated"`
	PropagationDrops int            `json:"propagation_dropped"`
	PushesSent       int            `json:"pushes_sent"`
	PushesFailed     int            `json:"pushes_failed"`
	Rejected         map[string]int `json:"rejected"`
}

// Stats returns a copy of the counts.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Rejected = make(map[string]int, len(s.stats.Rejected))
	for k, v := range s.stats.Rejected {
		st.Rejected[k] = v
	}
	st.Channels = len(s.channels)
	st.Neighbors = len(s.neighbors)
	st.Capacity = s.capacity()
	return st
}
