package openhost

import (
	"fmt"
	"io"
)

// readChunk is the most ReadPayload allocates before bytes arrive; it
// grows the buffer only as the peer actually delivers, so a length
// field that lies costs at most this much.
const readChunk = 64 << 10

// Reader decodes frames from a byte stream without holding bodies in
// memory: Next reads one header, and the payload is then read through
// Read (for body chunks and WebSocket bytes, which a host copies on to
// its upstream) or ReadPayload (for heads and session frames, which are
// small and wanted whole).
//
// The stream must carry the frames' bytes in order, whatever the message
// boundaries were: openhost's daemon sends one frame per data-channel
// message while its Rust client packs HEAD, BODY and END into one
// (IMPLEMENTATION-NOTES section 1).
//
// After a decoding or I/O error every later call returns the same
// error: the stream has lost its place and, per spec 01 section 5, the
// channel must be torn down. A Reader is not safe for concurrent use.
type Reader struct {
	r      io.Reader
	hdr    [FrameHeaderLen]byte
	cur    FrameType // type of the current frame, for error messages
	remain int       // payload bytes of the current frame not yet read
	err    error     // sticky: the stream cannot be resynchronised
}

// NewReader returns a Reader that decodes frames from r.
func NewReader(r io.Reader) *Reader {
	return &Reader{r: r}
}

// Next skips whatever is left of the current frame's payload and reads
// the next frame header, refusing it (ErrFrameTooLarge,
// ErrMalformedFrame) before any of its payload is read or allocated.
// It returns io.EOF, unwrapped, when the stream ends between frames, and
// an error wrapping io.ErrUnexpectedEOF when it ends inside one.
func (r *Reader) Next() (FrameHeader, error) {
	if r.err != nil {
		return FrameHeader{}, r.err
	}
	if r.remain > 0 {
		skip := r.remain
		if _, err := io.CopyN(io.Discard, r.r, int64(skip)); err != nil {
			return FrameHeader{}, r.fail(fmt.Errorf("openhost: skipping %d unread bytes of a %s payload: %w", skip, r.cur, noEOF(err)))
		}
		r.remain = 0
	}
	if _, err := io.ReadFull(r.r, r.hdr[:1]); err != nil {
		if err == io.EOF {
			r.err = io.EOF
			return FrameHeader{}, io.EOF
		}
		return FrameHeader{}, r.fail(fmt.Errorf("openhost: reading a frame header: %w", err))
	}
	n := LegacyFrameHeaderLen
	if r.hdr[0] == frameVersion2 {
		n = FrameHeaderLen
	}
	if got, err := io.ReadFull(r.r, r.hdr[1:n]); err != nil {
		return FrameHeader{}, r.fail(fmt.Errorf("openhost: frame header truncated after %d of %d bytes: %w", 1+got, n, noEOF(err)))
	}
	h, _, err := parseFrameHeader(r.hdr[:n])
	if err != nil {
		return FrameHeader{}, r.fail(err)
	}
	r.cur, r.remain = h.Type, h.Length
	return h, nil
}

// Read reads the current frame's payload and returns io.EOF at its end,
// so io.Copy(upstream, r) forwards one body chunk without buffering it.
// It reads nothing before the first Next.
func (r *Reader) Read(p []byte) (int, error) {
	if r.remain == 0 {
		return 0, io.EOF
	}
	if r.err != nil {
		return 0, r.err
	}
	if len(p) > r.remain {
		p = p[:r.remain]
	}
	n, err := r.r.Read(p)
	r.remain -= n
	switch {
	case err == nil:
	case err == io.EOF && r.remain == 0:
		err = nil // the next Next sees the end of the stream again
	case err == io.EOF:
		err = r.fail(fmt.Errorf("openhost: %s payload truncated with %d bytes missing: %w", r.cur, r.remain, io.ErrUnexpectedEOF))
	default:
		err = r.fail(fmt.Errorf("openhost: reading a %s payload with %d bytes to go: %w", r.cur, r.remain, err))
	}
	return n, err
}

// Remaining is how much of the current frame's payload is unread.
func (r *Reader) Remaining() int { return r.remain }

// ReadPayload reads the rest of the current payload into one slice,
// refusing with ErrFrameTooLarge, before reading or allocating, when it
// is longer than limit. A refused payload is left unread, so Next can
// skip it if the caller wants to go on. The buffer grows only as bytes
// arrive and its capacity never exceeds the payload length.
func (r *Reader) ReadPayload(limit int) ([]byte, error) {
	if r.remain > limit {
		return nil, fmt.Errorf("%w: %s payload of %d bytes exceeds the %d-byte limit for this read", ErrFrameTooLarge, r.cur, r.remain, limit)
	}
	total := r.remain
	buf := make([]byte, 0, min(total, readChunk))
	for r.remain > 0 {
		if len(buf) == cap(buf) {
			grown := make([]byte, len(buf), min(total, 2*cap(buf)))
			copy(grown, buf)
			buf = grown
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil {
			return nil, err
		}
	}
	return buf, nil
}

// ReadFrame reads the next whole frame. It refuses, before allocating,
// a payload longer than limit (MaxPayloadLen accepts every valid frame);
// the refused frame is left unread, and the next call skips it. It suits
// callers that want every frame whole, such as a client reading a small
// response; a host forwarding bodies uses Next and Read.
func (r *Reader) ReadFrame(limit int) (Frame, error) {
	h, err := r.Next()
	if err != nil {
		return Frame{}, err
	}
	p, err := r.ReadPayload(limit)
	if err != nil {
		return Frame{}, err
	}
	return Frame{Type: h.Type, RequestID: h.RequestID, Payload: p}, nil
}

func (r *Reader) fail(err error) error {
	r.err = err
	return err
}

// noEOF turns an end of stream inside a frame into io.ErrUnexpectedEOF,
// so a truncated frame is never mistaken for a clean end.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
