package dial

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"

	boardclient "github.com/keyhole-p2p/keyhole/board/client"
	"github.com/keyhole-p2p/keyhole/identity"
	"github.com/keyhole-p2p/keyhole/kps"
)

// ListenOptions configure Listen.
type ListenOptions struct {
	// Identity is this device's key: the address others dial. Required.
	Identity *identity.PrivateKey
	// Boards are the board URLs to wait on (the ones in this device's
	// record). Required.
	Boards []string
	// Nodes are community node URLs for STUN and TURN.
	Nodes []string
	// ICEServers are more STUN/TURN servers.
	ICEServers []webrtc.ICEServer
	// Authorize decides whether a peer may connect; nil admits anyone
	// (every peer still proves its key).
	Authorize func(identity.PublicKey) error
	// WebRTC adjusts pion's settings (interfaces in tests).
	WebRTC func(*webrtc.SettingEngine)
	// HTTP reaches nodes; nil means a 10 s timeout client.
	HTTP   *http.Client
	Logger *slog.Logger
}

// Listener keeps this device present on its boards and turns every
// rendezvous into a kps.Conn: the answering half of Dial's ICE attempt.
// A board that drops the connection is dialed again with backoff.
type Listener struct {
	o      ListenOptions
	conns  chan kps.Conn
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Listen starts waiting on every board in o.Boards. It runs until Close;
// ctx is not a deadline for it (only for the values it carries).
func Listen(ctx context.Context, o ListenOptions) (*Listener, error) {
	if o.Identity == nil || len(o.Boards) == 0 {
		return nil, errors.New("dial: listening needs an identity and at least one board")
	}
	if o.HTTP == nil {
		o.HTTP = &http.Client{Timeout: 10 * time.Second}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	l := &Listener{o: o, conns: make(chan kps.Conn, 16)}
	l.ctx, l.cancel = context.WithCancel(context.WithoutCancel(ctx))
	for _, b := range o.Boards {
		l.wg.Go(func() { l.serveBoard(b) })
	}
	return l, nil
}

// Accept returns the next connection made through a board.
func (l *Listener) Accept(ctx context.Context) (kps.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-l.ctx.Done():
		return nil, errors.New("dial: listener closed")
	}
}

// Close leaves the boards. Connections already made stay open.
func (l *Listener) Close() error {
	l.cancel()
	l.wg.Wait()
	return nil
}

// serveBoard keeps one board connection up and answers through it.
func (l *Listener) serveBoard(url string) {
	backoff := time.Second
	for l.ctx.Err() == nil {
		began := time.Now()
		err := l.session(url)
		if l.ctx.Err() != nil {
			return
		}
		if time.Since(began) > time.Minute {
			backoff = time.Second // it was up a while: a new failure starts over
		}
		if errors.Is(err, errRefresh) {
			backoff = time.Second
			continue
		}
		l.o.Logger.Warn("dial: board connection lost; dialing again", "board", url, "err", err, "in", backoff)
		select {
		case <-time.After(backoff):
		case <-l.ctx.Done():
			return
		}
		backoff = min(2*backoff, time.Minute)
	}
}

// errRefresh ends a board session on purpose: TURN credentials expire,
// so the listener reconnects for fresh ones every half hour.
var errRefresh = errors.New("dial: refreshing ICE servers")

// session is one connection to a board, until it fails.
func (l *Listener) session(url string) error {
	do := &Options{Identity: l.o.Identity, HTTP: l.o.HTTP, Logger: l.o.Logger}
	servers := append(slices.Clone(l.o.ICEServers), iceServers(l.ctx, l.o.Nodes, do)...)
	var setups setups
	bc, err := boardclient.Dial(l.ctx, url, boardclient.Options{
		Identity:   l.o.Identity,
		ICEServers: servers,
		Authorize:  l.o.Authorize,
		WebRTC:     webrtcSettings(l.o.WebRTC, false),
		Setup:      setups.setup,
		Logger:     l.o.Logger,
	})
	if err != nil {
		return err
	}
	defer bc.Close()
	l.o.Logger.Info("dial: waiting on board", "board", url)
	// TURN credentials expire; come back for fresh ones in time.
	ctx, cancel := context.WithTimeout(l.ctx, 30*time.Minute)
	defer cancel()
	for {
		sess, err := bc.Accept(ctx)
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) && l.ctx.Err() == nil {
				return errRefresh
			}
			return err
		}
		st := setups.take(sess.PC)
		go func() {
			fctx, fcancel := context.WithTimeout(l.ctx, 20*time.Second)
			defer fcancel()
			c, err := st.Finish(fctx, l.o.Identity, identity.PublicKey{}, l.o.Authorize)
			if err != nil {
				l.o.Logger.Info("dial: a rendezvous did not become a connection", "board", url, "err", err)
				sess.Close()
				return
			}
			context.AfterFunc(c.Context(), func() { sess.PC.Close() })
			select {
			case l.conns <- c:
			case <-l.ctx.Done():
				c.CloseWithError(kps.CodeClosed, "listener closed")
			}
		}()
	}
}
