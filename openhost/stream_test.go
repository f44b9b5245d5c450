package openhost

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"testing"
)

// TestReaderStreamsBody: a maximum-size body chunk is copied through
// Read in small pieces, never as one buffer, and Next then finds the
// frame after it.
func TestReaderStreamsBody(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789abcdef"), MaxPayloadLen/16)
	body = append(body, "tail!!!!!!!!!!!!"[:MaxPayloadLen-len(body)]...)
	var wire bytes.Buffer
	w := NewWriter(&wire)
	for _, f := range []Frame{{Type: TypeRequestBody, RequestID: 9, Payload: body}, {Type: TypeRequestEnd, RequestID: 9}} {
		if err := w.WriteFrame(f); err != nil {
			t.Fatal(err)
		}
	}
	r := NewReader(&wire)
	h, err := r.Next()
	if err != nil || h.Type != TypeRequestBody || h.RequestID != 9 || h.Length != MaxPayloadLen || h.Legacy {
		t.Fatalf("header %+v, %v", h, err)
	}
	var got bytes.Buffer
	if n, err := io.CopyBuffer(&got, struct{ io.Reader }{r}, make([]byte, 4096)); err != nil || n != MaxPayloadLen {
		t.Fatalf("copied %d, %v", n, err)
	}
	if !bytes.Equal(got.Bytes(), body) {
		t.Fatal("body changed in transit")
	}
	if h, err := r.Next(); err != nil || h.Type != TypeRequestEnd {
		t.Fatalf("after the body: %+v, %v", h, err)
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("end of stream: %v", err)
	}
}

func TestReaderSkipsUnreadPayload(t *testing.T) {
	var wire []byte
	wire, _ = AppendFrame(wire, Frame{Type: TypeResponseBody, Payload: []byte("unwanted")})
	wire, _ = AppendFrame(wire, Frame{Type: TypePing})
	r := NewReader(bytes.NewReader(wire))
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Read(make([]byte, 3)); err != nil || r.Remaining() != 5 {
		t.Fatalf("partial read: %v, %d left", err, r.Remaining())
	}
	if h, err := r.Next(); err != nil || h.Type != TypePing {
		t.Fatalf("next: %+v, %v", h, err)
	}
	if n, err := r.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("empty payload read: %d, %v", n, err)
	}
}

// TestReadPayloadLimit: a payload over the caller's limit is refused
// unread, and the reader can skip it and go on.
func TestReadPayloadLimit(t *testing.T) {
	var wire []byte
	wire, _ = AppendFrame(wire, Frame{Type: TypeRequestHead, Payload: make([]byte, 100)})
	wire, _ = AppendFrame(wire, Frame{Type: TypeError, Payload: []byte("x")})
	r := NewReader(bytes.NewReader(wire))
	_, err := r.ReadFrame(99)
	if !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("ReadFrame over the limit: %v", err)
	}
	f, err := r.ReadFrame(99)
	if err != nil || f.Type != TypeError || string(f.Payload) != "x" {
		t.Fatalf("the frame after: %+v, %v", f, err)
	}
}

// TestReaderLyingLength: a header that announces 16 MiB followed by a
// few bytes costs about the bytes that came, not what was announced.
func TestReaderLyingLength(t *testing.T) {
	wire, _ := AppendFrame(nil, Frame{Type: TypeRequestHead, Payload: make([]byte, MaxPayloadLen)})
	wire = wire[:FrameHeaderLen+100]
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := NewReader(bytes.NewReader(wire)).ReadFrame(MaxPayloadLen)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated frame: %v", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 2*readChunk {
		t.Fatalf("allocated %d bytes for a 100-byte payload", grew)
	}
}

// TestReadPayloadCapacity: the buffer grows with the bytes, never past
// the payload's length.
func TestReadPayloadCapacity(t *testing.T) {
	for _, n := range []int{0, 1, readChunk - 1, readChunk, readChunk + 1, 5*readChunk + 3} {
		wire, _ := AppendFrame(nil, Frame{Type: TypeRequestBody, Payload: bytes.Repeat([]byte{7}, n)})
		f, err := NewReader(bytes.NewReader(wire)).ReadFrame(MaxPayloadLen)
		if err != nil || len(f.Payload) != n || cap(f.Payload) != n {
			t.Errorf("n=%d: len %d cap %d, %v", n, len(f.Payload), cap(f.Payload), err)
		}
	}
}

// TestReaderErrorsStick: after a bad frame the reader refuses to go on,
// since the stream has lost its place.
func TestReaderErrorsStick(t *testing.T) {
	wire := []byte{0x50, 0, 0, 0, 0}
	wire, _ = AppendFrame(wire, Frame{Type: TypePing})
	r := NewReader(bytes.NewReader(wire))
	_, err1 := r.Next()
	_, err2 := r.Next()
	if !errors.Is(err1, ErrUnknownFrameType) || err2 != err1 {
		t.Fatalf("errors %v then %v", err1, err2)
	}
}

func TestReaderPayloadTruncated(t *testing.T) {
	wire, _ := AppendFrame(nil, Frame{Type: TypeWSFrame, Payload: []byte("abcdef")})
	r := NewReader(bytes.NewReader(wire[:len(wire)-2]))
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	_, err := io.ReadAll(r)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("ReadAll: %v", err)
	}
	if _, err2 := r.Next(); err2 != err {
		t.Fatalf("Next after truncation: %v", err2)
	}
}

type countingWriter struct {
	writes [][]byte
	err    error
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	c.writes = append(c.writes, bytes.Clone(p))
	return len(p), nil
}

// TestBodyWriterChunks: a body goes out as BodyChunkLen frames, one
// Write each, then the end marker on Close.
func TestBodyWriterChunks(t *testing.T) {
	cw := &countingWriter{}
	w := NewWriter(cw)
	body := bytes.Repeat([]byte{0xa5}, 2*BodyChunkLen+10)
	bw := w.ResponseBody(3)
	if n, err := bw.Write(body); err != nil || n != len(body) {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if n, err := bw.Write(nil); err != nil || n != 0 {
		t.Fatalf("empty Write = %d, %v", n, err)
	}
	if err := bw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := bw.Close(); err != nil {
		t.Fatal("a second Close should do nothing")
	}
	if _, err := bw.Write([]byte{1}); !errors.Is(err, ErrBodyClosed) {
		t.Fatalf("Write after Close: %v", err)
	}
	wantLens := []int{BodyChunkLen, BodyChunkLen, 10, 0}
	if len(cw.writes) != len(wantLens) {
		t.Fatalf("%d writes, want %d", len(cw.writes), len(wantLens))
	}
	var got []byte
	for i, msg := range cw.writes {
		f, n, err := ParseFrame(msg)
		if err != nil || n != len(msg) {
			t.Fatalf("write %d is not exactly one frame: %d of %d, %v", i, n, len(msg), err)
		}
		wantType := TypeResponseBody
		if i == len(wantLens)-1 {
			wantType = TypeResponseEnd
		}
		if f.Type != wantType || f.RequestID != 3 || len(f.Payload) != wantLens[i] {
			t.Fatalf("write %d: %s id %d len %d", i, f.Type, f.RequestID, len(f.Payload))
		}
		got = append(got, f.Payload...)
	}
	if !bytes.Equal(got, body) {
		t.Fatal("body changed")
	}
}

func TestBodyWriterKinds(t *testing.T) {
	cw := &countingWriter{}
	w := NewWriter(cw)
	for _, bw := range []*BodyWriter{w.RequestBody(1), w.WebSocket(2)} {
		if _, err := bw.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		if err := bw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	var types []FrameType
	for _, msg := range cw.writes {
		f, _, _ := ParseFrame(msg)
		types = append(types, f.Type)
	}
	// The WebSocket writer has no end marker.
	if fmt.Sprint(types) != "[REQUEST_BODY REQUEST_END WS_FRAME]" {
		t.Fatalf("frames %v", types)
	}
}

// TestWriterErrorsStick: once a Write fails the stream may hold half a
// frame, so nothing more is written.
func TestWriterErrorsStick(t *testing.T) {
	boom := errors.New("boom")
	cw := &countingWriter{err: boom}
	w := NewWriter(cw)
	err := w.WriteFrame(Frame{Type: TypePing})
	if !errors.Is(err, boom) {
		t.Fatalf("first: %v", err)
	}
	cw.err = nil
	if err := w.WriteFrame(Frame{Type: TypePong}); !errors.Is(err, boom) || len(cw.writes) != 0 {
		t.Fatalf("second: %v, %d writes", err, len(cw.writes))
	}
	if err := w.WriteFrame(Frame{Type: 0x50}); !errors.Is(err, ErrUnknownFrameType) {
		t.Fatalf("an invalid frame is refused before the sticky error: %v", err)
	}
}

// TestWriterConcurrent: transactions writing at once on one channel
// never interleave inside a frame (run with -race).
func TestWriterConcurrent(t *testing.T) {
	pr, pw := io.Pipe()
	w := NewWriter(pw)
	const writers, frames = 8, 50
	var wg sync.WaitGroup
	for id := range writers {
		wg.Go(func() {
			bw := w.ResponseBody(uint32(id + 1))
			for i := range frames {
				if _, err := fmt.Fprintf(bw, "%d:%d;", id+1, i); err != nil {
					t.Error(err)
					return
				}
			}
			if err := bw.Close(); err != nil {
				t.Error(err)
			}
		})
	}
	go func() { wg.Wait(); pw.Close() }()

	r := NewReader(pr)
	bodies := map[uint32]string{}
	ended := 0
	for {
		f, err := r.ReadFrame(64)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if f.Type == TypeResponseEnd {
			ended++
			continue
		}
		bodies[f.RequestID] += string(f.Payload)
	}
	if ended != writers {
		t.Fatalf("%d ends, want %d", ended, writers)
	}
	for id := uint32(1); id <= writers; id++ {
		var want string
		for i := range frames {
			want += fmt.Sprintf("%d:%d;", id, i)
		}
		if bodies[id] != want {
			t.Errorf("body %d arrived as %q", id, bodies[id])
		}
	}
}

func TestWriterDropsLargeBuffer(t *testing.T) {
	w := NewWriter(io.Discard)
	if err := w.WriteFrame(Frame{Type: TypeRequestBody, Payload: make([]byte, 1<<20)}); err != nil {
		t.Fatal(err)
	}
	if w.buf != nil {
		t.Fatalf("kept a %d-byte buffer", cap(w.buf))
	}
}

type failingReader struct {
	r   io.Reader
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		err = f.err
	}
	return n, err
}

// TestReaderIOErrorSticks: a transport error inside a payload is passed
// on (not disguised as truncation) and stops the reader.
func TestReaderIOErrorSticks(t *testing.T) {
	boom := errors.New("channel closed")
	wire, _ := AppendFrame(nil, Frame{Type: TypeRequestBody, Payload: []byte("abcdef")})
	r := NewReader(&failingReader{bytes.NewReader(wire[:12]), boom})
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	_, err := io.ReadAll(r)
	if !errors.Is(err, boom) || errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("ReadAll: %v", err)
	}
	if _, err2 := r.Next(); err2 != err {
		t.Fatalf("Next after the error: %v", err2)
	}
}

// TestWriteLast: after WriteLast nothing more reaches the stream.
func TestWriteLast(t *testing.T) {
	var wire bytes.Buffer
	w := NewWriter(&wire)
	if err := w.WriteLast(ErrorFrame("bye")); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteFrame(Frame{Type: TypePing}); !errors.Is(err, ErrWriterDone) {
		t.Fatalf("write after WriteLast: %v", err)
	}
	want, _ := AppendFrame(nil, ErrorFrame("bye"))
	if !bytes.Equal(wire.Bytes(), want) {
		t.Fatalf("stream holds %x, want only %x", wire.Bytes(), want)
	}
}
