package kps

import (
	"encoding/binary"
	"fmt"
)

// WebRTC stream framing (SPEC section 6.2): every data-channel message is
// one frame, a type byte and a payload.
const (
	frameData        byte = 0x00
	frameFin         byte = 0x01
	frameReset       byte = 0x02
	frameStopSending byte = 0x03

	// maxFramePayload bounds a DATA frame; larger writes are split.
	maxFramePayload = 16 * 1024
)

type frame struct {
	typ     byte
	payload []byte    // DATA
	code    ErrorCode // RESET, STOP_SENDING
}

// parseFrame decodes one message. An empty message is a no-op (nil, nil);
// a code shorter than 4 bytes reads as 0, as KPS implementations do.
func parseFrame(msg []byte) (*frame, error) {
	if len(msg) == 0 {
		return nil, nil
	}
	f := &frame{typ: msg[0]}
	switch f.typ {
	case frameData:
		f.payload = msg[1:]
	case frameFin:
	case frameReset, frameStopSending:
		if len(msg) >= 5 {
			f.code = ErrorCode(binary.BigEndian.Uint32(msg[1:5])).Normalize()
		}
	default:
		return nil, fmt.Errorf("kps: unknown frame type 0x%02x", f.typ)
	}
	return f, nil
}

func codeFrame(typ byte, code ErrorCode) []byte {
	b := []byte{typ, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], uint32(code))
	return b
}
