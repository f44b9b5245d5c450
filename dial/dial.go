package dial

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"

	boardclient "github.com/keyhole-p2p/keyhole/board/client"
	"github.com/keyhole-p2p/keyhole/identity"
	"github.com/keyhole-p2p/keyhole/kps"
	nodeclient "github.com/keyhole-p2p/keyhole/node/client"
	"github.com/keyhole-p2p/keyhole/record"
	"github.com/keyhole-p2p/keyhole/resolve"
)

// Path is how a connection reached the peer.
type Path string

// The paths, in the order they are tried.
const (
	Direct  Path = "direct"  // a KPS address from the record
	Punched Path = "punched" // ICE through a board, with reflexive candidates
	Relayed Path = "relayed" // ICE through a board, over a TURN relay
)

// Resolver finds a device's record (*resolve.Resolver).
type Resolver interface {
	Resolve(ctx context.Context, key identity.PublicKey) (*resolve.Result, error)
}

// Options configure Dial. Zero values have the defaults noted.
type Options struct {
	// Identity is this device's key, proven to the peer. Required.
	Identity *identity.PrivateKey
	// Resolver finds the peer's record. Required unless Content is set.
	Resolver Resolver
	// Content, if set, is used instead of resolving (a record already
	// in hand).
	Content *record.Content
	// Nodes are community node URLs whose STUN and TURN servers the ICE
	// attempt uses, besides the nodes the peer's record names.
	Nodes []string
	// ICEServers are more STUN/TURN servers for the ICE attempt.
	ICEServers []webrtc.ICEServer
	// Paths limits the attempts to these paths (ping --path, tests);
	// empty means all. Relayed alone makes the ICE attempt relay-only.
	Paths []Path
	// BoardDelay holds the ICE attempt back while direct attempts run,
	// so a device reachable directly does not also cost a rendezvous;
	// zero means 250 ms (RFC 8305's happy-eyeballs delay), negative means
	// no delay. The attempt starts at once when no direct address looks
	// reachable (none, or only private ones of networks this machine is
	// not on).
	BoardDelay time.Duration
	// WebRTC adjusts pion's settings for the ICE attempt (interfaces in
	// tests).
	WebRTC func(*webrtc.SettingEngine)
	// HTTP reaches community nodes; nil means a client with a 10 s
	// timeout.
	HTTP *http.Client
	// Logger gets the attempts; nil discards them.
	Logger *slog.Logger
}

// Attempt is one way in that was tried.
type Attempt struct {
	Path    Path
	Via     string        // the address or board URL
	Elapsed time.Duration // from the start of the dial to its outcome
	Err     error         // nil for the winner
}

// Result is a connection and how it was made.
type Result struct {
	Conn kps.Conn
	// Path is how the connection was made; PathNow says how it runs now
	// (a relayed connection may have moved to a punched path).
	Path Path
	Via  string
	// Resolve is the time to the peer's record, Connect the time from
	// then to the authenticated connection.
	Resolve, Connect time.Duration
	Attempts         []Attempt

	pc *webrtc.PeerConnection // for ICE paths
}

// PathNow is the path the connection uses now: an ICE connection that
// started on a relay reports Punched once it has moved to a direct pair.
func (r *Result) PathNow() Path {
	if r.pc == nil {
		return r.Path
	}
	return icePath(r.pc, r.Path)
}

func (o *Options) allows(p Path) bool { return len(o.Paths) == 0 || slices.Contains(o.Paths, p) }

// Dial connects to the device whose key is key.
func Dial(ctx context.Context, key identity.PublicKey, o Options) (*Result, error) {
	if o.Identity == nil {
		return nil, errors.New("dial: an identity is required")
	}
	if o.HTTP == nil {
		o.HTTP = &http.Client{Timeout: 10 * time.Second}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.BoardDelay == 0 {
		o.BoardDelay = 250 * time.Millisecond
	}
	start := time.Now()
	content := o.Content
	if content == nil {
		if o.Resolver == nil {
			return nil, errors.New("dial: a resolver is required to find the record")
		}
		res, err := o.Resolver.Resolve(ctx, key)
		if err != nil {
			return nil, fmt.Errorf("dial: finding %s: %w", key, err)
		}
		content, err = record.ParseContent(res.Packet, res.Records, time.Now())
		if err != nil {
			return nil, fmt.Errorf("dial: %s's record: %w", key, err)
		}
	}
	resolved := time.Since(start)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type outcome struct {
		res *Result
		att Attempt
	}
	results := make(chan outcome)
	var wg sync.WaitGroup
	launch := func(p Path, via string, delay time.Duration, try func(context.Context) (*Result, error)) {
		wg.Go(func() {
			if delay > 0 {
				select {
				case <-time.After(delay):
				case <-ctx.Done():
					return
				}
			}
			r, err := try(ctx)
			a := Attempt{Path: p, Via: via, Elapsed: time.Since(start), Err: err}
			if r != nil {
				a.Path, a.Via = r.Path, r.Via
			}
			select {
			case results <- outcome{r, a}:
			case <-ctx.Done():
				if r != nil {
					r.Conn.CloseWithError(kps.CodeCancelled, "another path won")
				}
			}
		})
	}
	n := 0
	if o.allows(Direct) {
		for _, a := range content.Direct {
			n++
			launch(Direct, a.String(), 0, func(ctx context.Context) (*Result, error) {
				c, err := kps.DialAddr(ctx, a, kps.DialOptions{Identity: o.Identity, PeerKey: key})
				if err != nil {
					return nil, err
				}
				return &Result{Conn: c, Path: Direct, Via: a.String()}, nil
			})
		}
	}
	if o.allows(Punched) || o.allows(Relayed) {
		delay := o.BoardDelay
		if delay < 0 || !slices.ContainsFunc(content.Direct, promising) || !o.allows(Direct) {
			delay = 0
		}
		nodes := append(slices.Clone(o.Nodes), content.Nodes...)
		label := Punched
		if !o.allows(Punched) {
			label = Relayed
		}
		for _, b := range content.Boards {
			n++
			launch(label, b, delay, func(ctx context.Context) (*Result, error) {
				return viaBoard(ctx, b, key, nodes, &o)
			})
		}
	}
	if n == 0 {
		return nil, fmt.Errorf("dial: %s's record offers no way in this dial may use (no direct address, no board)", key)
	}
	go func() { wg.Wait(); close(results) }()
	var attempts []Attempt
	for out := range results {
		attempts = append(attempts, out.att)
		if out.res == nil {
			o.Logger.Debug("dial: attempt failed", "path", out.att.Path, "via", out.att.Via, "err", out.att.Err)
			continue
		}
		cancel() // the others stop; late winners close themselves
		out.res.Resolve, out.res.Connect = resolved, time.Since(start)-resolved
		out.res.Attempts = attempts
		o.Logger.Debug("dial: connected", "peer", key.String(), "path", out.res.Path, "via", out.res.Via, "in", out.res.Connect)
		return out.res, nil
	}
	return nil, &Error{Key: key, Attempts: attempts}
}

// Error is a dial where every attempt failed.
type Error struct {
	Key      identity.PublicKey
	Attempts []Attempt
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "dial: could not reach %s:", e.Key)
	for i, a := range e.Attempts {
		if i > 0 {
			b.WriteString(";")
		}
		fmt.Fprintf(&b, " %s via %s: %v", a.Path, a.Via, a.Err)
	}
	return b.String()
}

// Unwrap lets errors.Is see the attempts' causes.
func (e *Error) Unwrap() []error {
	var errs []error
	for _, a := range e.Attempts {
		errs = append(errs, a.Err)
	}
	return errs
}

// viaBoard meets the peer through a board and runs KPS over the ICE
// path that comes out of it: reflexive candidates from the nodes' STUN
// servers for a punch, and a TURN relay from a node for when punching
// fails. Only Relayed in Paths makes it relay-only.
func viaBoard(ctx context.Context, boardURL string, key identity.PublicKey, nodes []string, o *Options) (*Result, error) {
	relayOnly := o.allows(Relayed) && !o.allows(Punched)
	servers := append(slices.Clone(o.ICEServers), iceServers(ctx, nodes, o)...)
	var setups setups
	bc, err := boardclient.Dial(ctx, boardURL, boardclient.Options{
		Identity:   o.Identity,
		ICEServers: servers,
		RelayOnly:  relayOnly,
		WebRTC:     webrtcSettings(o.WebRTC, relayOnly),
		Setup:      setups.setup,
		Logger:     o.Logger,
	})
	if err != nil {
		return nil, err
	}
	defer bc.Close()
	sess, err := bc.Connect(ctx, key)
	if err != nil {
		return nil, err
	}
	c, err := setups.take(sess.PC).Finish(ctx, o.Identity, key, nil)
	if err != nil {
		sess.Close()
		return nil, err
	}
	// The session's own Close would close the peer connection under the
	// KPS connection; the connection owns it from here.
	context.AfterFunc(c.Context(), func() { sess.PC.Close() })
	return &Result{Conn: c, Path: icePath(sess.PC, Punched), Via: bc.URL(), pc: sess.PC}, nil
}

// setups remembers the KPS set-up of each peer connection a board client
// makes, so the session that comes out is finished with its own.
type setups struct {
	mu sync.Mutex
	m  map[*webrtc.PeerConnection]*kps.Setup
}

func (s *setups) setup(pc *webrtc.PeerConnection, initiator bool) error {
	st, err := kps.SetupWebRTC(pc, initiator)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[*webrtc.PeerConnection]*kps.Setup{}
	}
	s.m[pc] = st
	return nil
}

// take returns pc's set-up and forgets it (and any of a peer connection
// that has closed since).
func (s *setups) take(pc *webrtc.PeerConnection) *kps.Setup {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.m[pc]
	delete(s.m, pc)
	for p := range s.m {
		if p.ConnectionState() == webrtc.PeerConnectionStateClosed {
			delete(s.m, p)
		}
	}
	return st
}

// promising reports whether a direct address is worth holding the board
// attempt back for: a public address, or a private one on a network this
// machine is on. A private address elsewhere (the device's LAN seen from
// another LAN, the usual case behind a NAT) is still dialed, since a VPN
// may route it, but the board does not wait for it.
func promising(a record.KPSAddr) bool {
	ip := a.AddrPort.Addr().Unmap()
	if !(ip.IsPrivate() || ip.IsLinkLocalUnicast() || cgnat.Contains(ip)) {
		return true
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return true
	}
	for _, ia := range addrs {
		if p, err := netip.ParsePrefix(ia.String()); err == nil && p.Masked().Contains(ip) {
			return true
		}
	}
	return false
}

var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// webrtcSettings adds what every keyhole ICE connection needs to the
// caller's settings: renomination, so a connection that started on a
// relay moves to a punched pair when one works, without a new handshake.
func webrtcSettings(user func(*webrtc.SettingEngine), relayOnly bool) func(*webrtc.SettingEngine) {
	return func(se *webrtc.SettingEngine) {
		_ = se.SetICERenomination(webrtc.WithRenominationInterval(time.Second))
		// pion waits 2 s before settling for a relay pair in case a
		// direct one turns up; with renomination a direct pair that works
		// later takes over anyway, so the relay can carry data sooner.
		// Relay-only, no direct pair can turn up: no wait at all.
		if relayOnly {
			se.SetRelayAcceptanceMinWait(0)
		} else {
			se.SetRelayAcceptanceMinWait(500 * time.Millisecond)
		}
		if user != nil {
			user(se)
		}
	}
}

// iceServers asks the nodes for their STUN servers and one of them for
// TURN credentials, all at once and bounded in time; nodes that do not
// answer are skipped (the board's own STUN may still do).
func iceServers(ctx context.Context, nodes []string, o *Options) []webrtc.ICEServer {
	if len(nodes) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c := nodeclient.Client{HTTP: o.HTTP}
	infos := c.Pick(ctx, nodes)
	var out []webrtc.ICEServer
	for _, in := range infos {
		if len(in.STUN) > 0 {
			out = append(out, webrtc.ICEServer{URLs: in.STUN})
		}
	}
	for _, in := range infos { // cheapest first
		cred, err := c.Token(ctx, in.URL)
		if err != nil {
			o.Logger.Debug("dial: no TURN credentials", "node", in.URL, "err", err)
			continue
		}
		var turn []string
		for _, u := range cred.URIs {
			if strings.HasPrefix(u, "turn:") || strings.HasPrefix(u, "turns:") {
				turn = append(turn, u)
			}
		}
		if len(turn) > 0 {
			out = append(out, webrtc.ICEServer{URLs: turn, Username: cred.Username, Credential: cred.Password})
			break
		}
	}
	return out
}

// icePath reads which kind of candidate pair carries pc now.
func icePath(pc *webrtc.PeerConnection, fallback Path) Path {
	sctp := pc.SCTP()
	if sctp == nil {
		return fallback
	}
	pair, err := sctp.Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil {
		return fallback
	}
	if pair.Local.Typ == webrtc.ICECandidateTypeRelay || pair.Remote.Typ == webrtc.ICECandidateTypeRelay {
		return Relayed
	}
	return Punched
}
