package kps

import (
	"context"
	"io"
	"net"
)

// Transport names.
const (
	TransportQUIC   = "quic"
	TransportWebRTC = "webrtc"
)

// Conn is one authenticated connection to a pinned endpoint. Both
// transports implement it with the same semantics.
type Conn interface {
	// OpenStream opens a stream. On QUIC the peer's AcceptStream returns
	// once the first byte (or FIN) arrives; on WebRTC, at once.
	OpenStream(ctx context.Context) (Stream, error)
	// AcceptStream waits for a stream the peer opened.
	AcceptStream(ctx context.Context) (Stream, error)
	// SendDatagram sends an unreliable message; a payload over the
	// current limit fails with *DatagramTooLargeError. About 1100 bytes
	// fit on every connection.
	SendDatagram(p []byte) error
	// ReceiveDatagram waits for the next datagram. Inbound datagrams wait
	// in a bounded queue that drops the oldest when full.
	ReceiveDatagram(ctx context.Context) ([]byte, error)
	// CloseWithError closes the connection, telling the peer why.
	CloseWithError(code ErrorCode, reason string) error
	// Close is CloseWithError(CodeNone, "").
	Close() error
	// Context is done when the connection is closed, from either side.
	Context() context.Context
	// Transport is TransportQUIC or TransportWebRTC.
	Transport() string
	RemoteAddr() net.Addr
	LocalAddr() net.Addr
	// binding returns the secret the keyhole auth exchange signs, and the
	// mode it was derived in.
	binding() (bindingMode, [32]byte, error)
}

// Stream is an unnamed, reliable, ordered byte stream (SPEC section 6).
type Stream interface {
	io.Reader
	io.Writer
	// CloseWrite finishes the write half: the peer reads EOF after
	// everything written before.
	CloseWrite() error
	// CancelRead tells the peer to stop sending; its writes fail with a
	// *StreamError carrying code.
	CancelRead(code ErrorCode)
	// Reset aborts the write half: the peer's reads fail with a
	// *StreamError carrying code, not EOF.
	Reset(code ErrorCode)
	// Close finishes writing and stops reading (CancelRead with CodeClosed).
	Close() error
}

// datagramQueue is a bounded inbox that drops the oldest when full.
type datagramQueue struct {
	ch chan []byte
}

const datagramQueueLen = 256

func newDatagramQueue() *datagramQueue {
	return &datagramQueue{ch: make(chan []byte, datagramQueueLen)}
}

func (q *datagramQueue) push(p []byte) {
	for {
		select {
		case q.ch <- p:
			return
		default:
			select {
			case <-q.ch: // drop the oldest
			default:
			}
		}
	}
}

func (q *datagramQueue) pop(ctx context.Context, done <-chan struct{}, closed func() error) ([]byte, error) {
	select {
	case p := <-q.ch:
		return p, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-done:
		select {
		case p := <-q.ch:
			return p, nil
		default:
			return nil, closed()
		}
	}
}
