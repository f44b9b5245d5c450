package openhost

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// HTTP-over-DataChannel framing: openhost spec 01 section 4, as the code
// does it (IMPLEMENTATION-NOTES section 1, "Frame shapes"):
//
//	v2 (emitted):       0x00 | type | request_id u32 BE | length u32 BE | payload
//	v1 (decoded only):  type | length u32 LE | payload            (request_id 0)
//
// The first byte picks the shape: 0x00 is never a frame type.
const (
	// MaxPayloadLen is the largest payload any frame may carry
	// (2^24-1). Every decoder refuses a longer length field before it
	// allocates anything, so a hostile peer cannot make us reserve
	// gigabytes by sending a 10-byte header.
	MaxPayloadLen = 1<<24 - 1

	// FrameHeaderLen is the size of the v2 header that every keyhole
	// encoder emits.
	FrameHeaderLen = 10

	// LegacyFrameHeaderLen is the size of the v1 header. openhost's
	// vectors are written in this shape and pre-PR-#40 peers send it,
	// so decoders still accept it; nothing here emits it.
	LegacyFrameHeaderLen = 5

	frameVersion2 = 0x00
)

// Errors a frame decoder returns; errors.Is tells a caller which rule
// broke, and the wrapped text says which bytes broke it. From a header,
// all but ErrIncompleteFrame mean the channel can no longer be trusted:
// spec 01 section 5 requires an ERROR frame and teardown. (A payload
// over the limit a caller passes to Reader.ReadPayload is the exception:
// it is the caller's policy, and the frame can be skipped.)
var (
	// ErrIncompleteFrame means the buffer ends inside a frame; append
	// the next data-channel message and parse again.
	ErrIncompleteFrame = errors.New("openhost: incomplete frame: need more bytes")
	// ErrFrameTooLarge means a length field (or a payload handed to an
	// encoder) exceeds MaxPayloadLen or the caller's own limit.
	ErrFrameTooLarge = errors.New("openhost: frame too large")
	// ErrMalformedFrame means the bytes break the framing grammar:
	// an unknown type code, or a payload on a type that must be empty.
	ErrMalformedFrame = errors.New("openhost: malformed frame")
	// ErrUnknownFrameType is wrapped together with ErrMalformedFrame
	// when a type code is not in spec 01 section 4's table, so callers
	// can answer with the reserved-type diagnostic the spec asks for.
	ErrUnknownFrameType = errors.New("unknown frame type")
)

// FrameType is the type byte of a frame. Its values are wire values.
type FrameType uint8

// The frame types of spec 01 section 4. Any other code is reserved and
// refused by every decoder here.
const (
	// TypeRequestHead carries the UTF-8 request line and header fields
	// (see RequestHead).
	TypeRequestHead FrameType = 0x01
	// TypeRequestBody carries one chunk of request body; a body is any
	// number of these, so it never has to be held whole.
	TypeRequestBody FrameType = 0x02
	// TypeRequestEnd marks the end of a request body; its payload must
	// be empty.
	TypeRequestEnd FrameType = 0x03
	// TypeResponseHead carries the UTF-8 status line and header fields
	// (see ResponseHead).
	TypeResponseHead FrameType = 0x11
	// TypeResponseBody carries one chunk of response body.
	TypeResponseBody FrameType = 0x12
	// TypeResponseEnd marks the end of a response body; its payload
	// must be empty.
	TypeResponseEnd FrameType = 0x13
	// TypeWSUpgrade is reserved: openhost's daemon answers it with
	// ERROR and teardown (upgrades ride a normal REQUEST_HEAD), but it
	// is a known code, so the codec decodes it and leaves the refusal
	// to the session.
	TypeWSUpgrade FrameType = 0x20
	// TypeWSFrame carries raw upstream bytes in both directions once a
	// 101 response has switched the channel into WebSocket mode; the
	// RFC 6455 framing inside is opaque to this layer.
	TypeWSFrame FrameType = 0x21
	// TypeAuthNonce is the host's 32-byte channel-binding nonce.
	TypeAuthNonce FrameType = 0x30
	// TypeAuthClient is client_pk (32) || signature (64).
	TypeAuthClient FrameType = 0x31
	// TypeAuthHost is the host's 64-byte signature.
	TypeAuthHost FrameType = 0x32
	// TypeError carries a UTF-8 diagnostic and precedes teardown.
	TypeError FrameType = 0xF0
	// TypePing asks for a TypePong; its payload must be empty.
	TypePing FrameType = 0xFE
	// TypePong answers a TypePing; its payload must be empty.
	TypePong FrameType = 0xFF
)

var frameTypeNames = map[FrameType]string{
	TypeRequestHead: "REQUEST_HEAD", TypeRequestBody: "REQUEST_BODY", TypeRequestEnd: "REQUEST_END",
	TypeResponseHead: "RESPONSE_HEAD", TypeResponseBody: "RESPONSE_BODY", TypeResponseEnd: "RESPONSE_END",
	TypeWSUpgrade: "WS_UPGRADE", TypeWSFrame: "WS_FRAME",
	TypeAuthNonce: "AUTH_NONCE", TypeAuthClient: "AUTH_CLIENT", TypeAuthHost: "AUTH_HOST",
	TypeError: "ERROR", TypePing: "PING", TypePong: "PONG",
}

// String gives the spec's name (as in wire.json), or the hex code of a
// reserved type, so that logs and errors name frames the way the spec does.
func (t FrameType) String() string {
	if s, ok := frameTypeNames[t]; ok {
		return s
	}
	return fmt.Sprintf("0x%02x", uint8(t))
}

// Known reports whether t is one of spec 01 section 4's types; every
// other code must be refused with an ERROR frame.
func (t FrameType) Known() bool {
	_, ok := frameTypeNames[t]
	return ok
}

// EmptyPayload reports whether frames of type t must have an empty
// payload (the END markers, PING and PONG); decoders refuse any other
// length for them, as openhost's does.
func (t FrameType) EmptyPayload() bool {
	switch t {
	case TypeRequestEnd, TypeResponseEnd, TypePing, TypePong:
		return true
	}
	return false
}

// Frame is one whole frame. RequestID demultiplexes concurrent HTTP
// transactions on one channel (spec 01 section 4, "Multiplexing");
// session frames (AUTH_*, PING, PONG, connection ERROR) use 0, and so
// does every frame decoded from the v1 shape. openhost's daemon ignores
// the id and answers with 0 (IMPLEMENTATION-NOTES section 1), so a
// client must not insist on seeing its own id echoed.
type Frame struct {
	Type FrameType
	// RequestID is 0 for session frames and legacy frames.
	RequestID uint32
	// Payload is at most MaxPayloadLen bytes, and empty for the types
	// whose EmptyPayload is true.
	Payload []byte
}

// FrameHeader is what a streaming reader knows about a frame before it
// has read the payload: enough to route it, and to refuse it, without
// holding the payload in memory.
type FrameHeader struct {
	Type FrameType
	// RequestID is 0 for session frames and legacy frames.
	RequestID uint32
	// Length is the payload length, already checked against
	// MaxPayloadLen and the type's empty-payload rule.
	Length int
	// Legacy is set when the frame came in the v1 shape, which carries
	// no request id.
	Legacy bool
}

// check applies the encoder's side of the rules a decoder enforces, so
// that nothing keyhole writes is something openhost would refuse.
func (f *Frame) check() error {
	if !f.Type.Known() {
		return fmt.Errorf("%w: cannot encode %w %s", ErrMalformedFrame, ErrUnknownFrameType, f.Type)
	}
	if len(f.Payload) > MaxPayloadLen {
		return fmt.Errorf("%w: %s payload of %d bytes exceeds the %d-byte maximum", ErrFrameTooLarge, f.Type, len(f.Payload), MaxPayloadLen)
	}
	if f.Type.EmptyPayload() && len(f.Payload) != 0 {
		return fmt.Errorf("%w: %s must have an empty payload, got %d bytes", ErrMalformedFrame, f.Type, len(f.Payload))
	}
	return nil
}

// AppendFrame appends f in the v2 shape, the only one spec 01 section 4
// lets an encoder emit. Appending several frames to one buffer and
// sending it as one data-channel message is what openhost's Rust client
// does with HEAD, BODY and END; decoders split them again.
func AppendFrame(dst []byte, f Frame) ([]byte, error) {
	if err := f.check(); err != nil {
		return dst, err
	}
	return appendFrame(dst, f), nil
}

func appendFrame(dst []byte, f Frame) []byte {
	dst = append(dst, frameVersion2, byte(f.Type))
	dst = binary.BigEndian.AppendUint32(dst, f.RequestID)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(f.Payload)))
	return append(dst, f.Payload...)
}

// ParseFrame decodes the frame at the start of b and reports how many
// bytes it used. It is for message-oriented callers that gather
// data-channel messages into a buffer; with ErrIncompleteFrame they
// append the next message and try again. Payload aliases b.
//
// The checks run in openhost's order (IMPLEMENTATION-NOTES section 1):
// whole header, then length against MaxPayloadLen, then the type code,
// then the empty-payload rule, and only then whether the payload has
// arrived, so an oversized or malformed header is refused before the
// caller waits for (or buffers) its payload.
func ParseFrame(b []byte) (Frame, int, error) {
	h, n, err := parseFrameHeader(b)
	if err != nil {
		return Frame{}, 0, err
	}
	end := n + h.Length
	if len(b) < end {
		return Frame{}, 0, fmt.Errorf("%w: %s payload has %d of %d bytes", ErrIncompleteFrame, h.Type, len(b)-n, h.Length)
	}
	return Frame{Type: h.Type, RequestID: h.RequestID, Payload: b[n:end:end]}, end, nil
}

// parseFrameHeader decodes and checks the header at the start of b,
// returning its size.
func parseFrameHeader(b []byte) (FrameHeader, int, error) {
	if len(b) == 0 {
		return FrameHeader{}, 0, ErrIncompleteFrame
	}
	var h FrameHeader
	var n int
	var length uint32
	shape := "v2"
	if b[0] == frameVersion2 {
		n = FrameHeaderLen
		if len(b) < n {
			return h, 0, fmt.Errorf("%w: v2 header has %d of %d bytes", ErrIncompleteFrame, len(b), n)
		}
		h.Type = FrameType(b[1])
		h.RequestID = binary.BigEndian.Uint32(b[2:6])
		length = binary.BigEndian.Uint32(b[6:10])
	} else {
		n = LegacyFrameHeaderLen
		if len(b) < n {
			return h, 0, fmt.Errorf("%w: v1 header has %d of %d bytes", ErrIncompleteFrame, len(b), n)
		}
		shape = "v1 legacy"
		h.Legacy = true
		h.Type = FrameType(b[0])
		length = binary.LittleEndian.Uint32(b[1:5])
	}
	if length > MaxPayloadLen {
		return h, 0, fmt.Errorf("%w: %s frame of type %s declares %d payload bytes, over the %d-byte maximum", ErrFrameTooLarge, shape, h.Type, length, MaxPayloadLen)
	}
	if !h.Type.Known() {
		return h, 0, fmt.Errorf("%w: %w %s in a %s frame", ErrMalformedFrame, ErrUnknownFrameType, h.Type, shape)
	}
	h.Length = int(length)
	if h.Type.EmptyPayload() && h.Length != 0 {
		return h, 0, fmt.Errorf("%w: %s frame declares %d payload bytes, but %s must be empty", ErrMalformedFrame, shape, h.Length, h.Type)
	}
	return h, n, nil
}
