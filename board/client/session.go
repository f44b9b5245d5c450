package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/pion/datachannel"
	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"

	"github.com/keyhole-p2p/keyhole/board/wire"
	"github.com/keyhole-p2p/keyhole/identity"
	"github.com/keyhole-p2p/keyhole/seal"
)

// Session is a direct WebRTC connection to a peer, set up through the
// board. The board is no longer involved once it exists.
type Session struct {
	// Peer is the other device's identity key, proven by its signed
	// frames and pinned through the DTLS fingerprint in its sealed SDP.
	Peer identity.PublicKey
	// PC is the peer connection; DC its data channel, opened and
	// detached: read and write it through Conn.
	PC *webrtc.PeerConnection
	DC *webrtc.DataChannel
	// Conn reads and writes whole messages on the data channel.
	Conn datachannel.ReadWriteCloser
	// RemoteSDP is the peer's SDP as this side received it (after
	// opening the box): what the peer chose to reveal.
	RemoteSDP string

	rmu  sync.Mutex
	rbuf []byte
	rest []byte
	eof  bool

	closeOnce sync.Once
	closeErr  error
}

// closeGrace bounds how long Close waits for the data channel's orderly
// close before it tears the connection down.
const closeGrace = 2 * time.Second

// Close ends the session in order: the data channel first, so the peer
// reads everything sent and then EOF, and only then the connection
// (closing it at once would abort the association and lose data still
// in flight).
func (s *Session) Close() error {
	s.closeOnce.Do(func() {
		if s.Conn != nil {
			s.Conn.Close()
			s.waitDelivered()
		}
		s.closeErr = s.PC.Close()
	})
	return s.closeErr
}

// waitDelivered waits, at most closeGrace, until the peer has
// acknowledged everything sent (SCTP releases buffered bytes on SACK),
// and then briefly for the stream reset that follows them. pion does not
// report the close of a detached data channel, so this is what shows the
// peer can read to EOF.
func (s *Session) waitDelivered() {
	deadline := time.Now().Add(closeGrace)
	for s.DC.BufferedAmount() > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if left := time.Until(deadline); left > 0 {
		time.Sleep(min(left, resetGrace))
	}
}

// resetGrace is the time given to the stream reset after the data.
const resetGrace = 50 * time.Millisecond

// match is one channel in progress.
type match struct {
	c     *Client
	id    string
	self  identity.PublicKey
	peer  identity.PublicKey
	inbox chan *wire.Envelope
	peerT [32]byte // the peer's verified transport key
}

// openInbox returns the match's inbox, held since the match arrived
// (see holdInbox).
func (c *Client) openInbox(id string) chan *wire.Envelope {
	c.mu.Lock()
	defer c.mu.Unlock()
	if in := c.inboxes[id]; in != nil {
		return in
	}
	in := make(chan *wire.Envelope, 8)
	c.inboxes[id] = in
	return in
}

func (c *Client) closeInbox(id string) {
	c.mu.Lock()
	delete(c.inboxes, id)
	c.mu.Unlock()
}

// Connect asks the board to match this device with peer and, once
// matched, sets up a data channel to it. It follows one referral to a
// neighbouring board.
func (c *Client) Connect(ctx context.Context, peer identity.PublicKey) (*Session, error) {
	if peer == c.opts.Identity.Public() {
		return nil, errors.New("board: cannot connect to this device's own key")
	}
	w := make(chan *wire.Envelope, 4)
	c.mu.Lock()
	if c.waiting[peer] != nil {
		c.mu.Unlock()
		return nil, fmt.Errorf("board: already connecting to %s", peer)
	}
	c.waiting[peer] = w
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.waiting, peer)
		c.mu.Unlock()
		// Matches queued but not taken up leave no inbox behind.
		for drained := false; !drained; {
			select {
			case env := <-w:
				if env.Kind == wire.KindMatch {
					c.closeInbox(env.MatchID)
				}
			default:
				drained = true
			}
		}
	}()
	in, err := wire.NewIntent(c.opts.Identity, peer, c.opts.Now())
	if err != nil {
		return nil, err
	}
	raw, _ := json.Marshal(in)
	pow, err := c.pow(in.Signature)
	if err != nil {
		return nil, err
	}
	if err := c.request(ctx, &wire.Envelope{Kind: wire.KindIntent, Record: raw, PoW: pow}); err != nil {
		return nil, fmt.Errorf("board: sending the intent: %w", err)
	}
	var env *wire.Envelope
	select {
	case env = <-w:
	case <-ctx.Done():
		return nil, fmt.Errorf("board: %s did not show up on %s: %w", peer, c.url, ctx.Err())
	case <-c.ctx.Done():
		return nil, context.Cause(c.ctx)
	}
	if env.Kind == wire.KindReferral {
		c.log.Info("board: the peer waits on a neighbouring board; following the referral")
		other, err := Dial(ctx, env.Board, c.opts)
		if err != nil {
			return nil, err
		}
		defer other.Close()
		s, err := other.Connect(ctx, peer)
		return s, err
	}
	m := &match{c: c, id: env.MatchID, self: c.opts.Identity.Public(), peer: peer, inbox: c.openInbox(env.MatchID)}
	defer c.closeInbox(m.id)
	s, err := m.runInitiator(ctx)
	if err != nil && errors.Is(err, context.DeadlineExceeded) {
		return nil, fmt.Errorf("board: %s was matched but did not answer in time (it may not answer this key): %w", peer, err)
	}
	return s, err
}

// Accept announces this device's presence (and keeps it fresh) and
// returns the next session an initiator sets up with it.
func (c *Client) Accept(ctx context.Context) (*Session, error) {
	if err := c.Announce(ctx); err != nil {
		return nil, fmt.Errorf("board: announcing presence: %w", err)
	}
	refresh := time.NewTicker(c.refreshEvery())
	defer refresh.Stop()
	for {
		select {
		case env := <-c.matches:
			if env.Kind == wire.KindReferral {
				// A responder referral: the initiator waits elsewhere.
				// Present there too, and take its match.
				s, err := c.acceptVia(ctx, env.Board)
				if err != nil {
					c.log.Info("board: following a referral failed", "err", err)
					continue
				}
				return s, nil
			}
			peer, err := wire.DecodeKey(env.CounterpartyKey)
			if err != nil {
				c.closeInbox(env.MatchID)
				continue
			}
			if c.opts.Authorize != nil {
				if err := c.opts.Authorize(peer); err != nil {
					c.closeInbox(env.MatchID)
					c.log.Info("board: ignored a match from an initiator we do not answer")
					continue
				}
			}
			m := &match{c: c, id: env.MatchID, self: c.opts.Identity.Public(), peer: peer, inbox: c.openInbox(env.MatchID)}
			s, err := m.runResponder(ctx)
			c.closeInbox(m.id)
			if err != nil {
				c.log.Info("board: a rendezvous failed", "err", err)
				if ctx.Err() != nil {
					return nil, err
				}
				continue
			}
			return s, nil
		case <-refresh.C:
			if err := c.Announce(ctx); err != nil {
				c.log.Info("board: refreshing presence failed", "err", err)
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-c.ctx.Done():
			return nil, context.Cause(c.ctx)
		}
	}
}

func (c *Client) acceptVia(ctx context.Context, board string) (*Session, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	other, err := Dial(ctx, board, c.opts)
	if err != nil {
		return nil, err
	}
	defer other.Close()
	return other.Accept(ctx)
}

// send signs a frame and relays it.
func (m *match) send(ctx context.Context, kind, phase string, binding *identity.Binding, sealed []byte) error {
	typ := wire.TypeMatchOffer
	if kind == wire.FrameAnswer {
		typ = wire.TypeMatchAnswer
	}
	f := &wire.Frame{
		Type: typ, MatchID: m.id, Phase: phase,
		FromKey: wire.EncodeKey(m.self), ToKey: wire.EncodeKey(m.peer),
		Timestamp: wire.FormatTime(m.c.opts.Now()), Binding: binding,
	}
	if sealed != nil {
		f.Sealed = wire.B64.EncodeToString(sealed)
	}
	if err := wire.Sign(f, m.c.opts.Identity); err != nil {
		return err
	}
	if m.c.opts.tamper != nil {
		m.c.opts.tamper(phase, f)
	}
	blob, _ := json.Marshal(f)
	return m.c.request(ctx, &wire.Envelope{Kind: wire.KindRelay, MatchID: m.id, FrameKind: kind, Blob: blob})
}

// receive waits for the peer's frame of kind in phase and checks it:
// schema (done by Parse), this match, the peer as sender and us as
// recipient, the peer's signature and freshness.
func (m *match) receive(ctx context.Context, kind, phase string) (*wire.Frame, error) {
	var env *wire.Envelope
	select {
	case env = <-m.inbox:
	case <-ctx.Done():
		return nil, fmt.Errorf("board: waiting for the peer's %s %s: %w", phase, kind, ctx.Err())
	case <-m.c.ctx.Done():
		return nil, context.Cause(m.c.ctx)
	}
	if env.Kind == wire.KindChannelClosed {
		return nil, fmt.Errorf("%w (%s) while waiting for the peer's %s %s", ErrChannelClosed, env.Reason, phase, kind)
	}
	var f wire.Frame
	if err := json.Unmarshal(env.Blob, &f); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrPeerCheck, err)
	}
	switch {
	case env.FrameKind != kind || f.Phase != phase:
		return nil, fmt.Errorf("%w: expected a %s %s, got a %s %s", ErrPeerCheck, phase, kind, f.Phase, env.FrameKind)
	case f.MatchID != m.id:
		return nil, fmt.Errorf("%w: the frame belongs to another match", ErrPeerCheck)
	case f.FromKey != wire.EncodeKey(m.peer):
		return nil, fmt.Errorf("%w: the frame is from %s, not the matched peer", ErrPeerCheck, f.FromKey)
	case f.ToKey != wire.EncodeKey(m.self):
		return nil, fmt.Errorf("%w: the frame is addressed to another key", ErrPeerCheck)
	}
	if err := wire.VerifyRaw(env.Blob, m.peer); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrPeerCheck, err)
	}
	if _, err := wire.CheckFresh(f.Timestamp, m.c.opts.Now(), 2*time.Minute, 30*time.Second); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrPeerCheck, err)
	}
	return &f, nil
}

// checkBinding verifies the peer's transport key binding: it must be
// signed by the peer's identity, the one this side expects.
func (m *match) checkBinding(f *wire.Frame) error {
	_, tk, err := f.Binding.Verify(m.peer, m.c.opts.Now())
	if err != nil {
		return fmt.Errorf("%w: the transport key binding: %v", ErrPeerCheck, err)
	}
	m.peerT = tk
	return nil
}

// openSealed opens a signaling frame's box and checks that the payload
// names this match, the peer and us, and the expected SDP type.
func (m *match) openSealed(f *wire.Frame, sdpType string) (string, error) {
	box, err := wire.B64.DecodeString(f.Sealed)
	if err != nil {
		return "", fmt.Errorf("%w: sealed blob is not base64url", ErrPeerCheck)
	}
	pt, err := seal.Open(m.c.tk, box)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrPeerCheck, err)
	}
	var p wire.SealedPayload
	if err := wire.DecodeRecord(pt, "sealed_payload", &p); err != nil {
		return "", fmt.Errorf("%w: sealed payload: %v", ErrPeerCheck, err)
	}
	if p.MatchID != m.id || p.FromKey != wire.EncodeKey(m.peer) || p.ToKey != wire.EncodeKey(m.self) || p.SDPType != sdpType {
		return "", fmt.Errorf("%w: the sealed payload names another match, sender or recipient", ErrPeerCheck)
	}
	return p.SDP, nil
}

func (m *match) sealSDP(sdp, sdpType string) ([]byte, error) {
	p := wire.SealedPayload{Type: wire.TypeSignaling, MatchID: m.id, FromKey: wire.EncodeKey(m.self), ToKey: wire.EncodeKey(m.peer), SDPType: sdpType, SDP: sdp}
	pt, _ := json.Marshal(p)
	return seal.Seal(m.peerT, pt)
}

// receiveKey waits for the peer's KEY frame of kind and verifies the
// binding in it; only then does this side know what to seal to.
func (m *match) receiveKey(ctx context.Context, kind string) error {
	f, err := m.receive(ctx, kind, wire.PhaseKey)
	if err != nil {
		return err
	}
	return m.checkBinding(f)
}

// sendKey sends this device's bound transport key as a KEY frame.
func (m *match) sendKey(ctx context.Context, kind string) error {
	b := m.c.binding
	if err := m.send(ctx, kind, wire.PhaseKey, &b, nil); err != nil {
		return fmt.Errorf("board: sending our transport key: %w", err)
	}
	return nil
}

// sendSDP makes the local offer or answer (kind), filters and seals it
// to the peer's verified transport key, and sends it.
func (m *match) sendSDP(ctx context.Context, pc *webrtc.PeerConnection, kind string) error {
	sdp, err := m.c.localSDP(ctx, pc, kind == wire.FrameOffer)
	if err != nil {
		return err
	}
	box, err := m.sealSDP(sdp, kind)
	if err != nil {
		return err
	}
	if err := m.send(ctx, kind, wire.PhaseSignaling, nil, box); err != nil {
		return fmt.Errorf("board: sending the sealed %s: %w", kind, err)
	}
	return nil
}

// receiveSDP waits for the peer's sealed offer or answer (kind) and
// opens it.
func (m *match) receiveSDP(ctx context.Context, kind string) (string, error) {
	f, err := m.receive(ctx, kind, wire.PhaseSignaling)
	if err != nil {
		return "", err
	}
	return m.openSealed(f, kind)
}

// applySDP sets the peer's offer or answer (kind) on pc.
func applySDP(pc *webrtc.PeerConnection, kind, sdp string) error {
	typ := webrtc.SDPTypeAnswer
	if kind == wire.FrameOffer {
		typ = webrtc.SDPTypeOffer
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: typ, SDP: sdp}); err != nil {
		return fmt.Errorf("%w: the peer's %s: %v", ErrPeerCheck, kind, err)
	}
	return nil
}

func (m *match) runInitiator(ctx context.Context) (*Session, error) {
	// KEY phase: ours first, then verify theirs before sealing anything.
	if err := m.sendKey(ctx, wire.FrameOffer); err != nil {
		return nil, err
	}
	if err := m.receiveKey(ctx, wire.FrameAnswer); err != nil {
		return nil, err
	}
	// SIGNALING phase.
	return m.signal(ctx, func(pc *webrtc.PeerConnection, opened chan *webrtc.DataChannel) (string, error) {
		if setup := m.c.opts.Setup; setup != nil {
			if err := setup(pc, true); err != nil {
				return "", err
			}
		} else {
			dc, err := pc.CreateDataChannel("keyhole", nil)
			if err != nil {
				return "", err
			}
			dc.OnOpen(func() { opened <- dc })
		}
		if err := m.sendSDP(ctx, pc, wire.FrameOffer); err != nil {
			return "", err
		}
		remote, err := m.receiveSDP(ctx, wire.FrameAnswer)
		if err != nil {
			return "", err
		}
		return remote, applySDP(pc, wire.FrameAnswer, remote)
	})
}

func (m *match) runResponder(ctx context.Context) (*Session, error) {
	// KEY phase: verify theirs before revealing ours.
	if err := m.receiveKey(ctx, wire.FrameOffer); err != nil {
		return nil, err
	}
	if err := m.sendKey(ctx, wire.FrameAnswer); err != nil {
		return nil, err
	}
	// SIGNALING phase. The offer is opened before a peer connection
	// exists, so a bad box costs no sockets.
	remote, err := m.receiveSDP(ctx, wire.FrameOffer)
	if err != nil {
		return nil, err
	}
	return m.signal(ctx, func(pc *webrtc.PeerConnection, opened chan *webrtc.DataChannel) (string, error) {
		if setup := m.c.opts.Setup; setup != nil {
			if err := setup(pc, false); err != nil {
				return "", err
			}
		} else {
			pc.OnDataChannel(func(dc *webrtc.DataChannel) {
				dc.OnOpen(func() {
					select {
					case opened <- dc:
					default:
					}
				})
			})
		}
		if err := applySDP(pc, wire.FrameOffer, remote); err != nil {
			return "", err
		}
		return remote, m.sendSDP(ctx, pc, wire.FrameAnswer)
	})
}

// signal runs one side's SIGNALING exchange (exchange) on a fresh peer
// connection and waits for the data channel to open; the peer
// connection is closed unless a session comes out of it.
func (m *match) signal(ctx context.Context, exchange func(*webrtc.PeerConnection, chan *webrtc.DataChannel) (string, error)) (*Session, error) {
	pc, err := m.c.newPeerConnection()
	if err != nil {
		return nil, err
	}
	opened := make(chan *webrtc.DataChannel, 1)
	remote, err := exchange(pc, opened)
	if err != nil {
		pc.Close()
		return nil, err
	}
	s, err := m.c.waitOpen(ctx, pc, opened)
	if err != nil {
		pc.Close()
		return nil, err
	}
	s.Peer, s.RemoteSDP = m.peer, remote
	return s, nil
}

func (c *Client) newPeerConnection() (*webrtc.PeerConnection, error) {
	se := webrtc.SettingEngine{}
	se.DetachDataChannels()
	// Host candidates never leave this device (FilterSDP), so a peer
	// following ORP never sends mDNS names to resolve either.
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	// The answerer is the DTLS server, so the offerer, which is the last
	// to learn the other's SDP, starts the handshake when it is ready.
	// The other way round the answerer's first ClientHello arrives before
	// the offerer has the answer, is dropped, and the handshake waits a
	// full one-second retransmission.
	se.SetAnsweringDTLSRole(webrtc.DTLSRoleServer)
	// pion holds back nominating a reflexive pair (0.5 s for srflx, 1 s
	// for prflx) in case a host pair turns up; under ORP's candidate
	// policy no host candidate is ever offered, so the wait buys nothing.
	// In relay-only mode a relay pair is all there will be.
	se.SetSrflxAcceptanceMinWait(0)
	se.SetPrflxAcceptanceMinWait(0)
	if c.opts.RelayOnly {
		se.SetRelayAcceptanceMinWait(0)
	}
	if c.opts.WebRTC != nil {
		c.opts.WebRTC(&se)
	}
	servers := append([]webrtc.ICEServer(nil), c.opts.ICEServers...)
	if len(c.hello.STUN) > 0 {
		servers = append(servers, webrtc.ICEServer{URLs: c.hello.STUN})
	}
	cfg := webrtc.Configuration{ICEServers: servers}
	if c.opts.RelayOnly {
		cfg.ICETransportPolicy = webrtc.ICETransportPolicyRelay
	}
	api := webrtc.NewAPI(webrtc.WithSettingEngine(se))
	pc, err := api.NewPeerConnection(cfg)
	if err != nil {
		return nil, fmt.Errorf("board: WebRTC: %w", err)
	}
	return pc, nil
}

// localSDP makes the offer or answer, waits for every candidate, and
// applies the candidate policy.
func (c *Client) localSDP(ctx context.Context, pc *webrtc.PeerConnection, offer bool) (string, error) {
	var d webrtc.SessionDescription
	var err error
	if offer {
		d, err = pc.CreateOffer(nil)
	} else {
		d, err = pc.CreateAnswer(nil)
	}
	if err != nil {
		return "", fmt.Errorf("board: WebRTC: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(d); err != nil {
		return "", fmt.Errorf("board: WebRTC: %w", err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	sdp, kept := FilterSDP(pc.LocalDescription().SDP, c.opts.RelayOnly)
	if kept == 0 {
		if c.opts.RelayOnly {
			return "", errors.New("board: relay-only mode found no TURN relay candidate; check the TURN server and its credentials")
		}
		return "", errors.New("board: no candidate the peer may see (only host candidates were found): give a STUN or TURN server, or use a board that offers one")
	}
	return sdp, nil
}

func (c *Client) waitOpen(ctx context.Context, pc *webrtc.PeerConnection, opened chan *webrtc.DataChannel) (*Session, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.ConnectTimeout)
	defer cancel()
	failed := make(chan struct{})
	connected := make(chan struct{})
	var once sync.Once
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		switch st {
		case webrtc.PeerConnectionStateFailed:
			select {
			case <-failed:
			default:
				close(failed)
			}
		case webrtc.PeerConnectionStateConnected:
			once.Do(func() { close(connected) })
		}
	})
	ready := connected
	if c.opts.Setup != nil {
		// The caller's protocol owns the data channels; the session is
		// ready once ICE and DTLS are.
		opened = nil
		if pc.ConnectionState() == webrtc.PeerConnectionStateConnected {
			once.Do(func() { close(connected) })
		}
	} else {
		ready = nil
	}
	select {
	case <-ready:
		return &Session{PC: pc}, nil
	case dc := <-opened:
		raw, err := dc.Detach()
		if err != nil {
			return nil, fmt.Errorf("board: WebRTC: %w", err)
		}
		return &Session{PC: pc, DC: dc, Conn: raw}, nil
	case <-failed:
		return nil, errors.New("board: the direct connection failed (ICE found no working path; try a TURN server)")
	case <-ctx.Done():
		return nil, fmt.Errorf("board: the direct connection did not open: %w", ctx.Err())
	}
}

// maxMessage is the largest data channel message Write sends; 16 KiB
// is what every WebRTC stack, browsers included, takes without
// fragmentation trouble.
const maxMessage = 16 << 10

// Write sends p as one or more messages.
func (s *Session) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), maxMessage)]
		if _, err := s.Conn.Write(chunk); err != nil {
			return n, err
		}
		n += len(chunk)
		p = p[len(chunk):]
	}
	return n, nil
}

// CloseWrite tells the peer this side has finished sending: an empty
// message, which Read on the other side turns into io.EOF. The peer can
// still send.
func (s *Session) CloseWrite() error {
	_, err := s.Conn.Write([]byte{})
	return err
}

// Echo sends back everything the peer sends until its CloseWrite, then
// finishes this side too: the echo service of 'keyhole board wait
// --echo' and the demo.
func (s *Session) Echo() error {
	if _, err := io.Copy(s, s); err != nil {
		return err
	}
	return s.CloseWrite()
}

// Read reads the peer's byte stream; it returns io.EOF after the peer's
// CloseWrite or when the channel closes.
func (s *Session) Read(p []byte) (int, error) {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	if len(s.rest) == 0 {
		if s.eof {
			return 0, io.EOF
		}
		if s.rbuf == nil {
			s.rbuf = make([]byte, 64<<10)
		}
		n, err := s.Conn.Read(s.rbuf)
		if err != nil {
			s.eof = true
			if errors.Is(err, io.EOF) {
				return 0, io.EOF
			}
			return 0, err
		}
		if n == 0 {
			s.eof = true
			return 0, io.EOF
		}
		s.rest = s.rbuf[:n]
	}
	n := copy(p, s.rest)
	s.rest = s.rest[n:]
	return n, nil
}
