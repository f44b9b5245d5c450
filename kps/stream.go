package kps

import (
	"errors"
	"io"
	"sync"
	"time"

	"github.com/pion/datachannel"
	"github.com/pion/webrtc/v4"
)

const (
	// writeHighWater: a write waits while this much is queued in SCTP
	// for the stream (SPEC section 6.2 backpressure).
	writeHighWater = 1 << 20
	// readHighWater: the stream's reader stops taking messages from SCTP
	// while this much waits unread, so a slow reader holds bounded
	// memory. SCTP has no per-stream flow control: once the association's
	// receive window (1 MiB) fills, the sender's writes wait.
	readHighWater = 256 << 10
)

// rtcStream maps a KPS stream onto one data channel with the SPEC
// section 6.2 framing.
type rtcStream struct {
	conn *rtcConn
	dc   *webrtc.DataChannel
	raw  datachannel.ReadWriteCloser

	mu        sync.Mutex
	readable  chan struct{} // signalled when inbuf or readErr change
	drained   chan struct{} // signalled when the reader takes from inbuf
	inbuf     [][]byte
	inbytes   int
	readErr   error // io.EOF, *StreamError; nil while open
	writeErr  error // ErrWriteClosed or *StreamError; nil while open
	writeLock sync.Mutex
	low       chan struct{}
	closed    bool // the channel was closed
}

func newRTCStream(c *rtcConn, dc *webrtc.DataChannel, raw datachannel.ReadWriteCloser) *rtcStream {
	s := &rtcStream{
		conn:     c,
		dc:       dc,
		raw:      raw,
		readable: make(chan struct{}, 1),
		drained:  make(chan struct{}, 1),
		low:      make(chan struct{}, 1),
	}
	dc.SetBufferedAmountLowThreshold(writeHighWater / 2)
	dc.OnBufferedAmountLow(func() { signal(s.low) })
	go s.readLoop()
	return s
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (s *rtcStream) readLoop() {
	buf := make([]byte, maxFramePayload+1)
	for {
		n, _, err := s.raw.ReadDataChannel(buf)
		if errors.Is(err, io.ErrShortBuffer) && len(buf) < 2<<20 {
			buf = make([]byte, 2*len(buf))
			continue
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				// Not a channel close but the association going down:
				// the connection is over, whatever the peer meant.
				s.conn.shutdown(&ConnError{Code: CodeNone, Reason: "the connection was closed", Remote: true})
			}
			s.channelGone()
			return
		}
		f, err := parseFrame(buf[:n])
		if err != nil {
			s.Reset(CodeProtocolError)
			s.CancelRead(CodeProtocolError)
			continue
		}
		if f == nil {
			continue
		}
		s.handle(f)
	}
}

func (s *rtcStream) handle(f *frame) {
	s.mu.Lock()
	switch f.typ {
	case frameData:
		if s.readErr != nil || len(f.payload) == 0 {
			break // dropped after EOF, reset or a local cancel
		}
		s.inbuf = append(s.inbuf, append([]byte(nil), f.payload...))
		s.inbytes += len(f.payload)
		signal(s.readable)
		// Hold the reader while too much waits unread.
		for s.inbytes >= readHighWater && s.readErr == nil {
			s.mu.Unlock()
			select {
			case <-s.drained:
			case <-s.conn.ctx.Done():
			}
			s.mu.Lock()
			if s.conn.ctx.Err() != nil {
				break
			}
		}
	case frameFin:
		if s.readErr == nil {
			s.readErr = io.EOF
			signal(s.readable)
		}
	case frameReset:
		if s.readErr == nil || s.readErr == io.EOF {
			s.readErr = &StreamError{Code: f.code, Remote: true}
			s.inbuf, s.inbytes = nil, 0
			signal(s.readable)
		}
	case frameStopSending:
		// Like QUIC: the peer stops reading, so the write half is reset
		// with the peer's code.
		if s.writeErr == nil {
			s.writeErr = &StreamError{Code: f.code, Remote: true}
			s.mu.Unlock()
			s.send(codeFrame(frameReset, f.code))
			s.mu.Lock()
			signal(s.low)
		}
	}
	s.mu.Unlock()
	s.maybeFinish()
}

// channelGone: the data channel closed. A close without FIN reads as EOF
// (as KPS implementations treat it) unless the connection died.
func (s *rtcStream) channelGone() {
	s.mu.Lock()
	s.closed = true
	cerr := s.conn.err()
	if s.readErr == nil {
		if cerr != nil {
			s.readErr = cerr
		} else {
			s.readErr = io.EOF
		}
	}
	if s.writeErr == nil {
		if cerr != nil {
			s.writeErr = cerr
		} else {
			s.writeErr = ErrWriteClosed
		}
	}
	s.mu.Unlock()
	signal(s.readable)
	signal(s.low)
	signal(s.drained)
}

func (s *rtcStream) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		s.mu.Lock()
		if len(s.inbuf) > 0 {
			n := copy(p, s.inbuf[0])
			if n == len(s.inbuf[0]) {
				s.inbuf[0] = nil
				s.inbuf = s.inbuf[1:]
			} else {
				s.inbuf[0] = s.inbuf[0][n:]
			}
			s.inbytes -= n
			s.mu.Unlock()
			signal(s.drained)
			return n, nil
		}
		if s.readErr != nil {
			err := s.readErr
			s.mu.Unlock()
			return 0, err
		}
		s.mu.Unlock()
		select {
		case <-s.readable:
		case <-s.conn.ctx.Done():
			s.mu.Lock()
			if s.readErr == nil && len(s.inbuf) == 0 {
				s.readErr = s.conn.err()
			}
			s.mu.Unlock()
		}
	}
}

func (s *rtcStream) Write(p []byte) (int, error) {
	s.writeLock.Lock()
	defer s.writeLock.Unlock()
	written := 0
	for len(p) > 0 {
		if err := s.waitWritable(); err != nil {
			return written, err
		}
		chunk := p
		if len(chunk) > maxFramePayload {
			chunk = chunk[:maxFramePayload]
		}
		msg := make([]byte, 1+len(chunk))
		msg[0] = frameData
		copy(msg[1:], chunk)
		if _, err := s.raw.Write(msg); err != nil {
			return written, s.failWrite(err)
		}
		written += len(chunk)
		p = p[len(chunk):]
	}
	return written, nil
}

// waitWritable blocks while too much is queued, and reports a closed
// write half.
func (s *rtcStream) waitWritable() error {
	for {
		s.mu.Lock()
		err := s.writeErr
		s.mu.Unlock()
		if err != nil {
			return err
		}
		if err := s.conn.err(); err != nil {
			return err
		}
		if s.dc.BufferedAmount() < writeHighWater {
			return nil
		}
		t := time.NewTimer(50 * time.Millisecond) // in case a signal raced the check
		select {
		case <-s.low:
		case <-t.C:
		case <-s.conn.ctx.Done():
		}
		t.Stop()
	}
}

func (s *rtcStream) failWrite(err error) error {
	if cerr := s.conn.err(); cerr != nil {
		return cerr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.writeErr != nil {
		return s.writeErr
	}
	return err
}

func (s *rtcStream) send(msg []byte) {
	_, _ = s.raw.Write(msg)
}

func (s *rtcStream) CloseWrite() error {
	s.writeLock.Lock()
	defer s.writeLock.Unlock()
	s.mu.Lock()
	if s.writeErr != nil {
		err := s.writeErr
		s.mu.Unlock()
		if err == ErrWriteClosed {
			return nil
		}
		return err
	}
	s.writeErr = ErrWriteClosed
	s.mu.Unlock()
	if _, err := s.raw.Write([]byte{frameFin}); err != nil {
		return s.failWrite(err)
	}
	s.maybeFinish()
	return nil
}

func (s *rtcStream) Reset(code ErrorCode) {
	s.mu.Lock()
	if s.writeErr != nil {
		s.mu.Unlock()
		return
	}
	s.writeErr = &StreamError{Code: code}
	s.mu.Unlock()
	signal(s.low)
	s.send(codeFrame(frameReset, code))
	s.maybeFinish()
}

func (s *rtcStream) CancelRead(code ErrorCode) {
	s.mu.Lock()
	if s.readErr != nil {
		s.mu.Unlock()
		return
	}
	s.readErr = &StreamError{Code: code}
	s.inbuf, s.inbytes = nil, 0
	s.mu.Unlock()
	signal(s.readable)
	signal(s.drained)
	s.send(codeFrame(frameStopSending, code))
	s.maybeFinish()
}

func (s *rtcStream) Close() error {
	err := s.CloseWrite()
	s.CancelRead(CodeClosed)
	return err
}

// maybeFinish closes the data channel once both halves are done, so a
// finished stream costs nothing on either side.
func (s *rtcStream) maybeFinish() {
	s.mu.Lock()
	done := s.readErr != nil && s.writeErr != nil && !s.closed
	if done {
		s.closed = true
	}
	s.mu.Unlock()
	if done {
		go func() {
			// Let the final frames leave before the channel is reset.
			for i := 0; i < 100 && s.dc.BufferedAmount() > 0 && s.conn.err() == nil; i++ {
				time.Sleep(10 * time.Millisecond)
			}
			s.raw.Close()
		}()
	}
}
