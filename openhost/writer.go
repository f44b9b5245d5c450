package openhost

import (
	"errors"
	"fmt"
	"io"
	"sync"
)

// BodyChunkLen is the largest payload a BodyWriter puts in one frame:
// 61440 bytes, the chunk size openhost's daemon uses for response
// bodies (IMPLEMENTATION-NOTES section 1). With its 10-byte header a
// frame stays under 64 KiB, the message size RFC 8841 lets a sender
// assume when the peer's SDP states no max-message-size.
const BodyChunkLen = 61440

// keepBuf bounds the encoding buffer a Writer keeps between frames, so
// one 16 MiB frame does not pin 16 MiB for the life of the channel.
const keepBuf = 2 * (FrameHeaderLen + BodyChunkLen)

// ErrBodyClosed is returned by a write to a BodyWriter after Close.
var ErrBodyClosed = errors.New("openhost: write to a closed body")

// Writer encodes frames onto a stream, each frame in exactly one Write
// call: on a data channel that makes every frame its own message, as
// openhost's daemon sends them, and a frame is never split between
// messages that another goroutine's frames could land between.
//
// A Writer is safe for concurrent use, so transactions multiplexed on
// one channel can each write their own frames. After a failed Write the
// stream may hold part of a frame, so every later call returns the same
// error.
type Writer struct {
	mu  sync.Mutex
	w   io.Writer
	buf []byte
	err error
}

// NewWriter returns a Writer that encodes frames onto w.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: w}
}

// ErrWriterDone is returned by a Writer after WriteLast.
var ErrWriterDone = errors.New("openhost: frame writer done: the channel is being torn down")

// WriteFrame checks f against the rules a decoder enforces and writes
// it in the v2 shape.
func (w *Writer) WriteFrame(f Frame) error {
	return w.writeFrame(f, false)
}

// WriteLast writes f like WriteFrame and then refuses every later frame
// with ErrWriterDone, so that f, typically the ERROR that precedes
// teardown (spec 01 section 5), is the last frame on the channel
// whatever other goroutines are still sending.
func (w *Writer) WriteLast(f Frame) error {
	return w.writeFrame(f, true)
}

func (w *Writer) writeFrame(f Frame, last bool) error {
	if err := f.check(); err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	w.buf = appendFrame(w.buf[:0], f)
	_, err := w.w.Write(w.buf)
	if cap(w.buf) > keepBuf {
		w.buf = nil
	}
	if err != nil {
		w.err = fmt.Errorf("openhost: writing a %s frame with a %d-byte payload: %w", f.Type, len(f.Payload), err)
		return w.err
	}
	if last {
		w.err = ErrWriterDone
	}
	return nil
}

// RequestBody returns a writer that sends what is written to it as
// REQUEST_BODY frames for transaction id and, on Close, REQUEST_END.
func (w *Writer) RequestBody(id uint32) *BodyWriter {
	return &BodyWriter{w: w, typ: TypeRequestBody, end: TypeRequestEnd, id: id}
}

// ResponseBody returns a writer that sends what is written to it as
// RESPONSE_BODY frames for transaction id and, on Close, RESPONSE_END.
func (w *Writer) ResponseBody(id uint32) *BodyWriter {
	return &BodyWriter{w: w, typ: TypeResponseBody, end: TypeResponseEnd, id: id}
}

// WebSocket returns a writer that wraps what is written to it in
// WS_FRAME frames. Its Close sends nothing: a tunnel has no end marker
// and ends when either side closes the channel (spec 01 section 4.2).
func (w *Writer) WebSocket(id uint32) *BodyWriter {
	return &BodyWriter{w: w, typ: TypeWSFrame, id: id}
}

// BodyWriter streams a body (or a WebSocket tunnel's bytes) as a run of
// frames of at most BodyChunkLen bytes each, so a body of any size is
// sent without being held whole. It is an io.WriteCloser for io.Copy;
// it does not buffer, so each Write sends its bytes at once (an empty
// Write sends nothing). It is not safe for concurrent use.
type BodyWriter struct {
	w      *Writer
	typ    FrameType
	end    FrameType // 0: no end marker
	id     uint32
	closed bool
}

// Write sends p as one or more body frames.
func (b *BodyWriter) Write(p []byte) (int, error) {
	if b.closed {
		return 0, ErrBodyClosed
	}
	n := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), BodyChunkLen)]
		if err := b.w.WriteFrame(Frame{Type: b.typ, RequestID: b.id, Payload: chunk}); err != nil {
			return n, err
		}
		n += len(chunk)
		p = p[len(chunk):]
	}
	return n, nil
}

// Close sends the end marker, once; later calls do nothing.
func (b *BodyWriter) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	if b.end == 0 {
		return nil
	}
	return b.w.WriteFrame(Frame{Type: b.end, RequestID: b.id})
}
