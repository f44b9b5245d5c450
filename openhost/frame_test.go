package openhost

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
)

// wireVectors is testdata/wire.json, a copy of openhost's
// spec/test-vectors/wire.json (identical to reference/openhost/test-vectors).
type wireVectors struct {
	Constants  map[string]int `json:"constants"`
	FrameTypes map[string]int `json:"frame_types"`
	Roundtrip  []struct {
		Name          string  `json:"name"`
		FrameType     string  `json:"frame_type"`
		PayloadHex    string  `json:"payload_hex"`
		PayloadASCII  *string `json:"payload_ascii"` // optional; nil when absent
		RepeatByte    string  `json:"payload_repeat_byte"`
		PayloadLength int     `json:"payload_length"`
		EncodedHex    string  `json:"encoded_hex"`
		HeaderHex     string  `json:"encoded_header_hex"`
	} `json:"encode_roundtrip"`
	Reject []struct {
		Name       string `json:"name"`
		EncodedHex string `json:"encoded_hex"`
		Expect     string `json:"expect"`
	} `json:"reject"`
	Partial []struct {
		Name       string `json:"name"`
		EncodedHex string `json:"encoded_hex"`
		Expect     string `json:"expect"`
	} `json:"partial"`
}

func loadWireVectors(t testing.TB) wireVectors {
	t.Helper()
	raw, err := os.ReadFile("testdata/wire.json")
	if err != nil {
		t.Fatal(err)
	}
	var v wireVectors
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Roundtrip) != 9 || len(v.Reject) != 4 || len(v.Partial) != 2 {
		t.Fatalf("wire.json changed shape: %d/%d/%d cases", len(v.Roundtrip), len(v.Reject), len(v.Partial))
	}
	return v
}

// appendLegacyFrame writes the v1 shape. Only tests need it: openhost's
// vectors are all v1 (IMPLEMENTATION-NOTES section 5), and spec 01
// section 4 forbids emitting v1, so the package itself never does.
func appendLegacyFrame(dst []byte, f Frame) []byte {
	dst = append(dst, byte(f.Type))
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(f.Payload)))
	return append(dst, f.Payload...)
}

func typeByName(t *testing.T, name string) FrameType {
	t.Helper()
	for code, n := range frameTypeNames {
		if n == name {
			return code
		}
	}
	t.Fatalf("no frame type named %q", name)
	return 0
}

func TestWireVectorConstants(t *testing.T) {
	v := loadWireVectors(t)
	if v.Constants["FRAME_HEADER_LEN"] != LegacyFrameHeaderLen || v.Constants["MAX_PAYLOAD_LEN"] != MaxPayloadLen {
		t.Errorf("constants = %v, want header %d, max %d", v.Constants, LegacyFrameHeaderLen, MaxPayloadLen)
	}
	if len(v.FrameTypes) != len(frameTypeNames) {
		t.Errorf("wire.json names %d types, the codec %d", len(v.FrameTypes), len(frameTypeNames))
	}
	for name, code := range v.FrameTypes {
		if got := FrameType(code).String(); got != name {
			t.Errorf("type %d is %q, want %q", code, got, name)
		}
	}
}

// TestWireVectors runs every encode_roundtrip vector both ways, byte for
// byte: the vector decodes to the frame, and the frame encodes to the
// vector. The vectors are in the v1 shape, which keyhole only decodes
// (IMPLEMENTATION-NOTES section 5), so the encoding direction uses the
// test-only v1 encoder; each case is also carried through the v2 shape
// keyhole emits, whose bytes follow from the vector field by field.
func TestWireVectors(t *testing.T) {
	for _, c := range loadWireVectors(t).Roundtrip {
		t.Run(c.Name, func(t *testing.T) {
			payload := mustHex(t, c.PayloadHex)
			if c.RepeatByte != "" {
				payload = bytes.Repeat(mustHex(t, c.RepeatByte), c.PayloadLength)
			}
			if c.PayloadASCII != nil && *c.PayloadASCII != string(payload) {
				t.Fatalf("payload_ascii and payload_hex disagree")
			}
			wire := mustHex(t, c.EncodedHex)
			if c.HeaderHex != "" {
				wire = append(mustHex(t, c.HeaderHex), payload...)
			}
			want := Frame{Type: typeByName(t, c.FrameType), Payload: payload}

			// Decode, whole buffer.
			got, n, err := ParseFrame(wire)
			if err != nil || n != len(wire) {
				t.Fatalf("ParseFrame = %d, %v; want %d bytes", n, err, len(wire))
			}
			assertFrame(t, got, want)
			// Decode, streaming, one byte per Read.
			r := NewReader(&oneByteReader{wire})
			got, err = r.ReadFrame(MaxPayloadLen)
			if err != nil {
				t.Fatal(err)
			}
			assertFrame(t, got, want)
			if _, err := r.Next(); err != io.EOF {
				t.Fatalf("after the frame: %v, want io.EOF", err)
			}
			// Encode, v1 shape.
			if enc := appendLegacyFrame(nil, want); !bytes.Equal(enc, wire) {
				t.Fatalf("v1 encoding\n got %x\nwant %x", enc, wire)
			}
			// Encode and decode, v2 shape.
			v2 := append([]byte{0x00, wire[0], 0, 0, 0, 0}, binary.BigEndian.AppendUint32(nil, uint32(len(payload)))...)
			v2 = append(v2, payload...)
			enc, err := AppendFrame(nil, want)
			if err != nil || !bytes.Equal(enc, v2) {
				t.Fatalf("v2 encoding = %x, %v\nwant %x", enc, err, v2)
			}
			got, _, err = ParseFrame(v2)
			if err != nil {
				t.Fatal(err)
			}
			assertFrame(t, got, want)
		})
	}
}

func assertFrame(t *testing.T, got, want Frame) {
	t.Helper()
	if got.Type != want.Type || got.RequestID != want.RequestID || !bytes.Equal(got.Payload, want.Payload) {
		t.Fatalf("frame = %s id %d %x, want %s id %d %x", got.Type, got.RequestID, got.Payload, want.Type, want.RequestID, want.Payload)
	}
}

// TestWireVectorRejects: each reject vector fails with the error class
// its "expect" names, except one. unknown_type_code (50 ffffff7f) expects
// MalformedFrame, but its length field, 0x7fffffff, is over the maximum,
// and openhost's decoder checks the length before the type, so the code
// returns OversizedFrame (IMPLEMENTATION-NOTES sections 1 and 5; its own
// test accepts either). We follow the code's order.
func TestWireVectorRejects(t *testing.T) {
	for _, c := range loadWireVectors(t).Reject {
		t.Run(c.Name, func(t *testing.T) {
			want := ErrMalformedFrame
			if strings.HasPrefix(c.Expect, "OversizedFrame") || c.Name == "unknown_type_code" {
				want = ErrFrameTooLarge
			}
			wire := mustHex(t, c.EncodedHex)
			if _, _, err := ParseFrame(wire); !errors.Is(err, want) {
				t.Fatalf("ParseFrame: %v, want %v", err, want)
			}
			r := NewReader(bytes.NewReader(wire))
			if _, err := r.Next(); !errors.Is(err, want) {
				t.Fatalf("Reader.Next: %v, want %v", err, want)
			}
		})
	}
}

// TestWireVectorPartials: a cut-off frame is "need more bytes" to the
// buffer parser and an unexpected EOF to the stream reader.
func TestWireVectorPartials(t *testing.T) {
	for _, c := range loadWireVectors(t).Partial {
		t.Run(c.Name, func(t *testing.T) {
			wire := mustHex(t, c.EncodedHex)
			if _, n, err := ParseFrame(wire); !errors.Is(err, ErrIncompleteFrame) || n != 0 {
				t.Fatalf("ParseFrame = %d, %v; want ErrIncompleteFrame", n, err)
			}
			if _, err := NewReader(bytes.NewReader(wire)).ReadFrame(MaxPayloadLen); !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("ReadFrame: %v, want io.ErrUnexpectedEOF", err)
			}
		})
	}
}

// TestTruncatedEverywhere cuts every vector (v1 and v2) at every length.
func TestTruncatedEverywhere(t *testing.T) {
	for _, c := range loadWireVectors(t).Roundtrip {
		if c.EncodedHex == "" {
			continue
		}
		v1 := mustHex(t, c.EncodedHex)
		f, _, err := ParseFrame(v1)
		if err != nil {
			t.Fatal(err)
		}
		f.RequestID = 0x01020304
		v2, _ := AppendFrame(nil, f)
		for _, wire := range [][]byte{v1, v2} {
			for i := range len(wire) {
				if _, _, err := ParseFrame(wire[:i]); !errors.Is(err, ErrIncompleteFrame) {
					t.Errorf("%s cut at %d: %v", c.Name, i, err)
				}
				_, err := NewReader(bytes.NewReader(wire[:i])).ReadFrame(MaxPayloadLen)
				if want := io.ErrUnexpectedEOF; i == 0 && err != io.EOF || i > 0 && !errors.Is(err, want) {
					t.Errorf("%s cut at %d: reader %v", c.Name, i, err)
				}
			}
		}
	}
}

func TestV2KeepsRequestID(t *testing.T) {
	f := Frame{Type: TypeResponseBody, RequestID: 0xdeadbeef, Payload: []byte("hello")}
	wire, err := AppendFrame(nil, f)
	if err != nil {
		t.Fatal(err)
	}
	if want := "0012deadbeef0000000568656c6c6f"; hex.EncodeToString(wire) != want {
		t.Fatalf("wire = %x, want %s", wire, want)
	}
	got, n, err := ParseFrame(append(wire, 0xff)) // the next frame's first byte
	if err != nil || n != len(wire) {
		t.Fatalf("ParseFrame = %d, %v", n, err)
	}
	assertFrame(t, got, f)
	if &got.Payload[0] != &wire[FrameHeaderLen] || cap(got.Payload) != len(f.Payload) {
		t.Error("payload should alias the input and be capped at its length")
	}
}

// TestOversizeLengths: a length one past the maximum, and the largest a
// field can hold, are refused in both shapes from the header alone.
func TestOversizeLengths(t *testing.T) {
	for _, length := range []uint32{MaxPayloadLen + 1, 1 << 31, 1<<32 - 1} {
		v1 := binary.LittleEndian.AppendUint32([]byte{byte(TypeRequestBody)}, length)
		v2 := binary.BigEndian.AppendUint32([]byte{0, byte(TypeRequestBody), 0, 0, 0, 7}, length)
		for _, wire := range [][]byte{v1, v2} {
			_, _, err := ParseFrame(wire)
			if !errors.Is(err, ErrFrameTooLarge) {
				t.Errorf("%x: %v", wire, err)
			}
			if _, err := NewReader(bytes.NewReader(wire)).Next(); !errors.Is(err, ErrFrameTooLarge) {
				t.Errorf("%x: reader %v", wire, err)
			}
		}
	}
	// The maximum itself is a valid header; only the payload is missing.
	max := binary.BigEndian.AppendUint32([]byte{0, byte(TypeRequestBody), 0, 0, 0, 0}, MaxPayloadLen)
	if _, _, err := ParseFrame(max); !errors.Is(err, ErrIncompleteFrame) {
		t.Errorf("a maximum-length header: %v", err)
	}
	if _, err := AppendFrame(nil, Frame{Type: TypeRequestBody, Payload: make([]byte, MaxPayloadLen+1)}); !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("encoding an oversized payload: %v", err)
	}
}

// TestEveryTypeCode walks all 256 codes in both shapes: exactly the 14
// spec types decode, and the rest are refused as unknown.
func TestEveryTypeCode(t *testing.T) {
	known := 0
	for c := range 256 {
		ft := FrameType(c)
		for _, wire := range [][]byte{{byte(c), 0, 0, 0, 0}, {0, byte(c), 0, 0, 0, 1, 0, 0, 0, 0}} {
			if wire[0] == 0 && len(wire) == 5 {
				continue // a leading 0x00 is the v2 marker, not type 0
			}
			_, _, err := ParseFrame(wire)
			switch {
			case ft.Known() && err != nil:
				t.Errorf("%s (%x): %v", ft, wire, err)
			case !ft.Known() && (!errors.Is(err, ErrMalformedFrame) || !errors.Is(err, ErrUnknownFrameType)):
				t.Errorf("%s (%x): %v, want an unknown-type error", ft, wire, err)
			}
		}
		if _, err := AppendFrame(nil, Frame{Type: ft}); ft.Known() != (err == nil) {
			t.Errorf("encoding %s: %v", ft, err)
		}
		if ft.Known() {
			known++
		}
	}
	if known != 14 {
		t.Errorf("%d known types, want 14", known)
	}
}

func TestMarkersMustBeEmpty(t *testing.T) {
	for _, ft := range []FrameType{TypeRequestEnd, TypeResponseEnd, TypePing, TypePong} {
		if !ft.EmptyPayload() {
			t.Errorf("%s should require an empty payload", ft)
		}
		v1 := []byte{byte(ft), 1, 0, 0, 0, 'x'}
		v2 := []byte{0, byte(ft), 0, 0, 0, 0, 0, 0, 0, 1, 'x'}
		for _, wire := range [][]byte{v1, v2, v1[:5], v2[:10]} {
			// Refused from the header, before the payload arrives.
			if _, _, err := ParseFrame(wire); !errors.Is(err, ErrMalformedFrame) {
				t.Errorf("%s %x: %v", ft, wire, err)
			}
		}
		if _, err := AppendFrame(nil, Frame{Type: ft, Payload: []byte{0}}); !errors.Is(err, ErrMalformedFrame) {
			t.Errorf("encoding %s with a payload: %v", ft, err)
		}
	}
}

// TestMixedShapes: a v1 frame followed by v2 frames in one buffer, as a
// channel might carry during openhost's rollout of v2.
func TestMixedShapes(t *testing.T) {
	buf := appendLegacyFrame(nil, Frame{Type: TypeResponseHead, Payload: []byte("HTTP/1.1 200 OK\r\n\r\n")})
	buf, _ = AppendFrame(buf, Frame{Type: TypeResponseBody, RequestID: 42, Payload: []byte("body")})
	buf, _ = AppendFrame(buf, Frame{Type: TypeResponseEnd, RequestID: 42})
	want := []Frame{
		{Type: TypeResponseHead, Payload: []byte("HTTP/1.1 200 OK\r\n\r\n")},
		{Type: TypeResponseBody, RequestID: 42, Payload: []byte("body")},
		{Type: TypeResponseEnd, RequestID: 42},
	}
	rest := buf
	r := NewReader(bytes.NewReader(buf))
	for i, w := range want {
		f, n, err := ParseFrame(rest)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		assertFrame(t, f, w)
		rest = rest[n:]
		h, err := r.Next()
		if err != nil || h.Legacy != (i == 0) {
			t.Fatalf("frame %d: header %+v, %v", i, h, err)
		}
	}
	if len(rest) != 0 {
		t.Fatalf("%d bytes left", len(rest))
	}
}

func TestFrameTypeString(t *testing.T) {
	if TypeWSFrame.String() != "WS_FRAME" || FrameType(0x50).String() != "0x50" {
		t.Errorf("got %q, %q", TypeWSFrame, FrameType(0x50))
	}
}

type oneByteReader struct{ b []byte }

func (r *oneByteReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	p[0] = r.b[0]
	r.b = r.b[1:]
	return 1, nil
}
