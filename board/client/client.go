// Package client is the device side of keyhole's blind rendezvous board
// (ORP): it announces presence or intent, and when the board matches two
// devices it runs the two phases that turn a match into a direct,
// key-authenticated WebRTC data channel:
//
//   - KEY: each side sends its X25519 transport key with a binding
//     signed by its Ed25519 identity, and verifies the other's binding
//     against the key it expects before it seals anything.
//   - SIGNALING: the SDP offer and answer, filtered by the ICE candidate
//     policy (FilterSDP) and sealed to the peer's transport key (package
//     seal), travel as opaque blobs.
//
// Every frame is also signed by its sender and checked against the
// schema, the match and the expected peer, so neither the board nor a
// third party can inject, replay or swap anything. The DTLS fingerprint
// inside the sealed SDP is what WebRTC then pins, so the resulting data
// channel is authenticated end to end by the two identity keys.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/pion/webrtc/v4"

	"github.com/keyhole-p2p/keyhole/board/wire"
	"github.com/keyhole-p2p/keyhole/identity"
)

// Options configure a Client.
type Options struct {
	// Identity is the device's key: its address. Required.
	Identity *identity.PrivateKey
	// TransportKey seals and opens signaling; nil makes a fresh one for
	// this client.
	TransportKey *identity.TransportKey
	// ICEServers are STUN/TURN servers; the STUN servers the board
	// offers in its hello are added to them.
	ICEServers []webrtc.ICEServer
	// RelayOnly gathers and sends only TURN relay candidates, so the peer
	// never learns this device's IP address. It needs a TURN server.
	RelayOnly bool
	// PushToken is a UnifiedPush-style endpoint put in presence records;
	// the board POSTs an empty body to it when a rendezvous for this
	// device times out.
	PushToken string
	// Scope lists boards (ws URLs) this device's presence may be
	// propagated to.
	Scope []string
	// Authorize decides whether to answer an initiator; nil answers
	// anyone (the data channel still proves the initiator's key).
	Authorize func(identity.PublicKey) error
	// WebRTC adjusts pion's settings (interfaces, NAT mapping, ports).
	WebRTC func(*webrtc.SettingEngine)
	// Setup, if set, hands each peer connection to another protocol
	// before its offer or answer is made (kps.SetupWebRTC: streams,
	// datagrams and the identity exchange over the same ICE path). The
	// client then opens no data channel of its own, and a Session is
	// ready once ICE and DTLS are up; its DC and Conn are nil.
	// initiator is true on the side that called Connect.
	Setup func(pc *webrtc.PeerConnection, initiator bool) error
	// ConnectTimeout bounds the data channel's set-up once both SDPs
	// are exchanged (default 20 s).
	ConnectTimeout time.Duration
	// Logger gets the client's events; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	// tamper, in tests, rewrites a frame after it is signed, to play a
	// broken or hostile client.
	tamper func(phase string, f *wire.Frame)
}

// Errors a rendezvous fails with; each is wrapped with detail.
var (
	// ErrRejected: the board refused a message (its code and reason follow).
	ErrRejected = errors.New("board: rejected")
	// ErrChannelClosed: the board ended the match's channel first.
	ErrChannelClosed = errors.New("board: the rendezvous channel closed")
	// ErrPeerCheck: the peer's frame failed a check (signature, binding,
	// sealed box, names); nothing further is sent to it.
	ErrPeerCheck = errors.New("board: the peer's message failed verification")
	// ErrBoard: the board sent something that breaks the protocol.
	ErrBoard = errors.New("board: protocol violation by the board")
)

// RejectedError is a board's refusal.
type RejectedError struct {
	Code, Reason string
}

func (e *RejectedError) Error() string {
	return fmt.Sprintf("board: rejected (%s): %s", e.Code, e.Reason)
}

// Unwrap lets errors.Is match ErrRejected.
func (e *RejectedError) Unwrap() error { return ErrRejected }

// Client is one device's connection to one board.
type Client struct {
	opts    Options
	url     string
	ws      *websocket.Conn
	tk      *identity.TransportKey
	binding identity.Binding
	hello   *wire.Envelope
	log     *slog.Logger
	ctx     context.Context
	cancel  context.CancelCauseFunc
	reqs    atomic.Uint64

	mu       sync.Mutex
	pending  map[string]chan error                      // req -> ack (nil) or rejection
	inboxes  map[string]chan *wire.Envelope             // match_id -> relay and channel_closed
	waiting  map[identity.PublicKey]chan *wire.Envelope // initiator waits: counterparty -> match or referral
	matches  chan *wire.Envelope                        // responder matches
	presence string                                     // the nonce of our live presence
	wmu      sync.Mutex
}

// Dial connects to a board and reads its hello.
func Dial(ctx context.Context, boardURL string, opts Options) (*Client, error) {
	if opts.Identity == nil {
		return nil, errors.New("board: a client needs an identity")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.ConnectTimeout == 0 {
		opts.ConnectTimeout = 20 * time.Second
	}
	u, err := url.Parse(boardURL)
	if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
		return nil, fmt.Errorf("board: %q is not a board URL (ws://host:port/ or wss://host/)", boardURL)
	}
	tk := opts.TransportKey
	if tk == nil {
		if tk, err = identity.NewTransportKey(); err != nil {
			return nil, err
		}
	}
	b, err := identity.NewBinding(opts.Identity, tk.Public(), opts.Now())
	if err != nil {
		return nil, err
	}
	ws, _, err := websocket.Dial(ctx, boardURL, nil)
	if err != nil {
		return nil, fmt.Errorf("board: connecting to %s: %w", boardURL, err)
	}
	ws.SetReadLimit(1 << 20)
	c := &Client{
		opts: opts, url: boardURL, ws: ws, tk: tk, binding: b, log: opts.Logger,
		pending: map[string]chan error{},
		inboxes: map[string]chan *wire.Envelope{},
		waiting: map[identity.PublicKey]chan *wire.Envelope{},
		matches: make(chan *wire.Envelope, 16),
	}
	c.ctx, c.cancel = context.WithCancelCause(context.Background())
	hello, err := c.read(ctx)
	if err != nil {
		ws.CloseNow()
		return nil, fmt.Errorf("board: reading the hello from %s: %w", boardURL, err)
	}
	if hello.Kind != wire.KindHello {
		ws.CloseNow()
		return nil, fmt.Errorf("%w: first message was %q, not hello", ErrBoard, hello.Kind)
	}
	c.hello = hello
	go c.readLoop()
	return c, nil
}

// URL is the board's URL.
func (c *Client) URL() string { return c.url }

// Close disconnects from the board. Sessions already connected live on:
// they no longer need it.
func (c *Client) Close() error {
	c.cancel(errors.New("board: client closed"))
	return c.ws.Close(websocket.StatusNormalClosure, "")
}

// Done is closed when the board connection ends.
func (c *Client) Done() <-chan struct{} { return c.ctx.Done() }

func (c *Client) read(ctx context.Context) (*wire.Envelope, error) {
	_, b, err := c.ws.Read(ctx)
	if err != nil {
		return nil, err
	}
	env, err := wire.Parse(b, wire.FromBoard)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBoard, err)
	}
	return env, nil
}

func (c *Client) readLoop() {
	for {
		env, err := c.read(c.ctx)
		if err != nil {
			if errors.Is(err, ErrBoard) {
				c.log.Warn("board: ignored a malformed message from the board")
				continue
			}
			c.cancel(fmt.Errorf("board: connection to %s lost: %w", c.url, err))
			return
		}
		c.dispatch(env)
	}
}

func (c *Client) dispatch(env *wire.Envelope) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch env.Kind {
	case wire.KindAck, wire.KindRejected:
		ch := c.pending[env.Req]
		if ch == nil {
			return
		}
		delete(c.pending, env.Req)
		if env.Kind == wire.KindAck {
			ch <- nil
		} else {
			ch <- &RejectedError{Code: env.Code, Reason: env.Reason}
		}
	case wire.KindMatch, wire.KindReferral:
		k, err := wire.DecodeKey(env.CounterpartyKey)
		if err != nil {
			return
		}
		if env.Role == wire.RoleInitiator {
			if w := c.waiting[k]; w != nil {
				select {
				case w <- env:
					c.holdInbox(env)
				default:
				}
			}
			return
		}
		select {
		case c.matches <- env:
			c.holdInbox(env)
		default:
			c.log.Warn("board: too many matches waiting; one dropped")
		}
	case wire.KindRelay, wire.KindChannelClosed:
		if in := c.inboxes[env.MatchID]; in != nil {
			select {
			case in <- env:
			default:
			}
		}
	case wire.KindEvicted:
		if env.RecordKind == wire.KindPresence && env.SessionNonce == c.presence && env.Reason == "capacity" {
			c.presence = ""
			c.log.Info("board: our presence was evicted; it is re-announced at the next refresh")
		}
	}
}

// holdInbox opens a match's inbox as soon as the match is queued, so
// frames the board sends right behind it (a held KEY offer, an early
// channel_closed) are kept until Connect or Accept takes the match up.
// The caller holds c.mu.
func (c *Client) holdInbox(env *wire.Envelope) {
	if env.Kind == wire.KindMatch && c.inboxes[env.MatchID] == nil {
		c.inboxes[env.MatchID] = make(chan *wire.Envelope, 8)
	}
}

// request sends a message with a fresh req and waits for the board's ack.
func (c *Client) request(ctx context.Context, env *wire.Envelope) error {
	env.Req = strconv.FormatUint(c.reqs.Add(1), 36)
	ch := make(chan error, 1)
	c.mu.Lock()
	c.pending[env.Req] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, env.Req)
		c.mu.Unlock()
	}()
	if err := c.send(ctx, env); err != nil {
		return err
	}
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-c.ctx.Done():
		return context.Cause(c.ctx)
	}
}

func (c *Client) send(ctx context.Context, env *wire.Envelope) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.ws.Write(ctx, websocket.MessageText, wire.Marshal(env)); err != nil {
		return fmt.Errorf("board: sending to %s: %w", c.url, err)
	}
	return nil
}

// pow does the work the board asked for in its hello.
func (c *Client) pow(signature string) (string, error) {
	if c.hello.PoWBits == nil || *c.hello.PoWBits == 0 {
		return "", nil
	}
	return wire.SolvePoW(signature, *c.hello.PoWBits)
}

// Announce sends a fresh presence, so the board matches this device with
// whoever looks for it. Accept calls it and keeps it fresh.
func (c *Client) Announce(ctx context.Context) error {
	p, err := wire.NewPresence(c.opts.Identity, c.opts.Now(), c.opts.Scope, c.opts.PushToken)
	if err != nil {
		return err
	}
	raw, _ := json.Marshal(p)
	pow, err := c.pow(p.Signature)
	if err != nil {
		return err
	}
	if err := c.request(ctx, &wire.Envelope{Kind: wire.KindPresence, Record: raw, PoW: pow}); err != nil {
		return err
	}
	c.mu.Lock()
	c.presence = p.SessionNonce
	c.mu.Unlock()
	return nil
}

// refreshEvery is how often a waiting device re-announces: well inside
// the board's freshness window, so a board restart or an eviction costs
// at most this long.
func (c *Client) refreshEvery() time.Duration {
	w := time.Duration(c.hello.FreshnessMS) * time.Millisecond
	return max(w/2, 5*time.Second)
}
