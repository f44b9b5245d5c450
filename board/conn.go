package board

import (
	"context"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/time/rate"
)

// outQueue is how many messages may wait for a slow reader before the
// board gives up on it; a device that does not read cannot make the
// board buffer without bound.
const outQueue = 256

// conn is one WebSocket: a device, or a neighbouring board.
type conn struct {
	s       *Server
	ws      *websocket.Conn
	ctx     context.Context
	cancel  context.CancelFunc
	out     chan []byte
	limiter *rate.Limiter

	// Guarded by s.mu.
	peerURL  string // set for neighbouring boards
	entries  map[*entry]struct{}
	channels map[*channel]struct{}
	done     bool
}

func newConn(s *Server, ws *websocket.Conn) *conn {
	ctx, cancel := context.WithCancel(s.ctx)
	return &conn{
		s: s, ws: ws, ctx: ctx, cancel: cancel,
		out:      make(chan []byte, outQueue),
		limiter:  rate.NewLimiter(s.opts.ConnRate, s.opts.ConnBurst),
		entries:  map[*entry]struct{}{},
		channels: map[*channel]struct{}{},
	}
}

func (c *conn) isPeer() bool {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	return c.peerURL != ""
}

// own records that e came over this connection.
func (c *conn) own(e *entry) {
	e.conn = c
	c.entries[e] = struct{}{}
}

// send queues a message; the caller holds s.mu. A full queue ends the
// connection.
func (c *conn) send(b []byte) {
	if c.done {
		return
	}
	select {
	case c.out <- b:
	default:
		c.s.log.Info("board: dropped a connection that does not read")
		c.shut()
	}
}

// sendBye queues the end of the connection after what is already
// queued; the caller holds s.mu.
func (c *conn) sendBye() {
	if c.done {
		return
	}
	select {
	case c.out <- nil:
	default:
		c.shut()
	}
}

// shut ends the connection; the caller holds s.mu.
func (c *conn) shut() {
	if !c.done {
		c.done = true
		c.cancel()
	}
}

func (c *conn) writeLoop() {
	for {
		select {
		case <-c.ctx.Done():
			c.ws.CloseNow()
			return
		case b := <-c.out:
			if b == nil { // sendBye
				ctx, cancel := context.WithTimeout(context.Background(), byeGrace)
				go func() { <-ctx.Done(); c.ws.CloseNow() }()
				c.ws.Close(websocket.StatusGoingAway, "board shutting down")
				cancel()
				c.cancel()
				return
			}
			ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
			err := c.ws.Write(ctx, websocket.MessageText, b)
			cancel()
			if err != nil {
				c.cancel()
				c.ws.CloseNow()
				return
			}
			if c.s.opts.Tap != nil {
				c.s.opts.Tap(false, b)
			}
		}
	}
}

func (c *conn) readLoop() {
	defer c.cancel()
	for {
		typ, b, err := c.ws.Read(c.ctx)
		if err != nil {
			return
		}
		if c.s.opts.Tap != nil {
			c.s.opts.Tap(true, b)
		}
		if typ != websocket.MessageText {
			c.ws.Close(websocket.StatusUnsupportedData, "ORP messages are JSON text frames")
			return
		}
		if !c.limiter.Allow() {
			c.s.rejectLocked(c, "", "rate_limited", "too many messages on this connection; slow down")
			continue
		}
		c.s.handle(c, b)
	}
}
