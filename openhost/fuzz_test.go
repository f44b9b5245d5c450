package openhost

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// frameSeeds are every wire.json encoding plus v2 and hostile headers.
func frameSeeds(f *testing.F) {
	v := loadWireVectors(f)
	var all []string
	for _, c := range v.Roundtrip {
		all = append(all, c.EncodedHex+c.HeaderHex)
	}
	for _, c := range v.Reject {
		all = append(all, c.EncodedHex)
	}
	for _, c := range v.Partial {
		all = append(all, c.EncodedHex)
	}
	all = append(all,
		"",
		"0001000000070000001b474554202f20485454502f312e310d0a583a20790d0a0d0a", // v2 REQUEST_HEAD, id 7
		"00130000000700000000fe00000000",                                       // v2 RESPONSE_END, then v1 PING
		"0012ffffffff00ffffff61",                                               // v2 maximum length, 1 byte of it
		"0012000000000100000000",                                               // v2 one past the maximum
		"00000000000000000000",                                                 // v2 with type 0
		"00f0000000000000000462ff0a00",                                         // v2 ERROR, not UTF-8
		"3105000000",                                                           // short AUTH_CLIENT
	)
	for _, s := range all {
		b, err := hex.DecodeString(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// FuzzParseFrame: whatever ParseFrame accepts re-encodes, in the shape it
// came in (v2 by AppendFrame, v1 by the test-only encoder), to exactly
// the bytes it consumed, and the typed payload parsers round-trip too;
// whatever it refuses, the streaming Reader refuses for the same reason.
func FuzzParseFrame(f *testing.F) {
	frameSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, n, err := ParseFrame(b)
		_, rerr := NewReader(bytes.NewReader(b)).ReadFrame(MaxPayloadLen)
		if err != nil {
			if n != 0 {
				t.Fatalf("error with %d bytes used: %v", n, err)
			}
			switch {
			case errors.Is(err, ErrIncompleteFrame):
				if len(b) == 0 && rerr != io.EOF || len(b) > 0 && !errors.Is(rerr, io.ErrUnexpectedEOF) {
					t.Fatalf("incomplete %x, but the reader says %v", b, rerr)
				}
			case errors.Is(err, ErrFrameTooLarge), errors.Is(err, ErrMalformedFrame):
				if !sameClass(err, rerr) {
					t.Fatalf("ParseFrame: %v; reader: %v", err, rerr)
				}
			default:
				t.Fatalf("unclassified error: %v", err)
			}
			return
		}
		if rerr != nil {
			t.Fatalf("ParseFrame accepted %x; reader: %v", b, rerr)
		}
		if n > len(b) || len(fr.Payload) > MaxPayloadLen {
			t.Fatalf("used %d of %d bytes, payload %d", n, len(b), len(fr.Payload))
		}
		v2, err := AppendFrame(nil, fr)
		if err != nil {
			t.Fatalf("a decoded frame does not encode: %v", err)
		}
		enc := v2
		if b[0] != frameVersion2 {
			enc = appendLegacyFrame(nil, fr)
		}
		if !bytes.Equal(enc, b[:n]) {
			t.Fatalf("re-encoded\n %x\nas\n %x", b[:n], enc)
		}
		checkTypedPayload(t, fr)
	})
}

func sameClass(a, b error) bool {
	for _, e := range []error{ErrFrameTooLarge, ErrMalformedFrame, ErrUnknownFrameType} {
		if errors.Is(a, e) != errors.Is(b, e) {
			return false
		}
	}
	return true
}

// checkTypedPayload runs the payload parser for f's type, if it has one,
// and checks that what it accepts encodes back to the payload.
func checkTypedPayload(t *testing.T, f Frame) {
	t.Helper()
	p := f.Payload
	switch f.Type {
	case TypeAuthNonce:
		if n, err := ParseAuthNonce(p); err == nil && !bytes.Equal(AuthNonceFrame(n).Payload, p) {
			t.Fatal("AUTH_NONCE round trip")
		}
	case TypeAuthClient:
		if k, s, err := ParseAuthClient(p); err == nil && !bytes.Equal(AuthClientFrame(k, s).Payload, p) {
			t.Fatal("AUTH_CLIENT round trip")
		}
	case TypeAuthHost:
		if s, err := ParseAuthHost(p); err == nil && !bytes.Equal(AuthHostFrame(s).Payload, p) {
			t.Fatal("AUTH_HOST round trip")
		}
	case TypeError:
		checkDiagnostic(t, p)
	case TypeRequestHead:
		checkRequestHead(t, p)
	case TypeResponseHead:
		checkResponseHead(t, p)
	}
}

// FuzzReadFrame: the streaming Reader, over any bytes, yields frames that
// re-encode (each in its own shape) to exactly the bytes it consumed,
// fails only with a classified error, never panics, and never allocates
// much more than the bytes it was actually given, whatever the length
// fields claim. Payloads over a small limit are streamed through Read
// instead of ReadPayload, so both paths run.
func FuzzReadFrame(f *testing.F) {
	frameSeeds(f)
	f.Add(bytes.Repeat([]byte{0x01, 0xff, 0xff, 0xff, 0x00}, 3))
	f.Fuzz(func(t *testing.T, b []byte) {
		const limit = 64
		r := NewReader(bytes.NewReader(b))
		var enc []byte
		var err error
		for {
			var h FrameHeader
			if h, err = r.Next(); err != nil {
				break
			}
			var p []byte
			if h.Length <= limit {
				p, err = r.ReadPayload(limit)
				if err == nil && cap(p) != h.Length {
					t.Fatalf("payload of %d bytes has capacity %d", h.Length, cap(p))
				}
			} else {
				if _, err = r.ReadPayload(limit); !errors.Is(err, ErrFrameTooLarge) {
					t.Fatalf("ReadPayload over the limit: %v", err)
				}
				var buf bytes.Buffer
				_, err = io.Copy(&buf, r)
				p = buf.Bytes()
			}
			if err != nil {
				break
			}
			fr := Frame{Type: h.Type, RequestID: h.RequestID, Payload: p}
			if h.Legacy {
				enc = appendLegacyFrame(enc, fr)
			} else if enc, err = AppendFrame(enc, fr); err != nil {
				t.Fatalf("a decoded frame does not encode: %v", err)
			}
		}
		switch {
		case err == io.EOF:
			if !bytes.Equal(enc, b) {
				t.Fatalf("re-encoded\n %x\nas\n %x", b, enc)
			}
		case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, ErrFrameTooLarge), errors.Is(err, ErrMalformedFrame):
			if !bytes.HasPrefix(b, enc) {
				t.Fatalf("frames before the error re-encoded as %x, not a prefix of %x", enc, b)
			}
		default:
			t.Fatalf("unclassified error: %v", err)
		}

		// Allocation: read everything whole with the widest limit.
		before := heapAllocs()
		r = NewReader(bytes.NewReader(b))
		for {
			if _, err := r.ReadFrame(MaxPayloadLen); err != nil {
				break
			}
		}
		if grew := heapAllocs() - before; grew > 2*readChunk+8*uint64(len(b))+32<<10 {
			t.Fatalf("allocated %d bytes reading %d", grew, len(b))
		}
	})
}

// heapAllocs is the cumulative heap allocation. runtime/metrics would be
// cheaper, but it counts small objects only when their span is flushed,
// so a GC inside the measured window charges it with earlier work;
// ReadMemStats flushes first and is exact.
func heapAllocs() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.TotalAlloc
}

// FuzzParseRequestHead: any head ParseRequestHead accepts encodes, its
// encoding parses to the same head, and that encoding is a fixed point.
// The encoding equals the input except where the input spelled the
// whitespace around a field value other than as one space before and
// none after (whitespace is not part of a value, RFC 9110 section 5.5);
// checkCanonical pins exactly that, so nothing else can differ.
func FuzzParseRequestHead(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: example\r\n\r\n",
		"POST /x?y=1 HTTP/1.1\r\nA:b\r\nA: \tc \r\nX-Empty:\r\n\r\n",
		"GET / HTTP/1.1\r\nX: a\nInjected: b\r\n\r\n",
		"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
		"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
		"GET /caf\u00e9 HTTP/1.1\r\nX: \xff\r\n\r\n",
		"GET / HTTP/1.1\r\n\r\n\r\n",
		"\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkRequestHead(t, b) })
}

func checkRequestHead(t *testing.T, b []byte) {
	t.Helper()
	h, err := ParseRequestHead(b)
	if err != nil {
		if !errors.Is(err, ErrMalformedHead) {
			t.Fatalf("unclassified error: %v", err)
		}
		return
	}
	enc, err := AppendRequestHead(nil, h)
	if err != nil {
		t.Fatalf("a parsed head does not encode: %v", err)
	}
	h2, err := ParseRequestHead(enc)
	if err != nil || !reflect.DeepEqual(h, h2) {
		t.Fatalf("%q re-parsed as %+v, %v", enc, h2, err)
	}
	if enc2, _ := AppendRequestHead(nil, h2); !bytes.Equal(enc, enc2) {
		t.Fatalf("not a fixed point: %q then %q", enc, enc2)
	}
	checkCanonical(t, b, enc)
}

// FuzzParseResponseHead is FuzzParseRequestHead for status lines.
func FuzzParseResponseHead(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
		"HTTP/1.1 204 \r\n\r\n",
		"HTTP/1.1 200\r\n\r\n",
		"HTTP/1.1 200 OK\r\nSet-Cookie: a\nSet-Cookie: b\r\n\r\n",
		"HTTP/1.0 200 OK\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkResponseHead(t, b) })
}

func checkResponseHead(t *testing.T, b []byte) {
	t.Helper()
	h, err := ParseResponseHead(b)
	if err != nil {
		if !errors.Is(err, ErrMalformedHead) {
			t.Fatalf("unclassified error: %v", err)
		}
		return
	}
	enc, err := AppendResponseHead(nil, h)
	if err != nil {
		t.Fatalf("a parsed head does not encode: %v", err)
	}
	h2, err := ParseResponseHead(enc)
	if err != nil || !reflect.DeepEqual(h, h2) {
		t.Fatalf("%q re-parsed as %+v, %v", enc, h2, err)
	}
	checkCanonical(t, b, enc)
}

// checkCanonical allows in and out to differ only in the whitespace
// around header field values; start lines and names must be identical.
func checkCanonical(t *testing.T, in, out []byte) {
	t.Helper()
	if bytes.Equal(in, out) {
		return
	}
	inLines := strings.Split(string(in), "\r\n")
	outLines := strings.Split(string(out), "\r\n")
	if len(inLines) != len(outLines) {
		t.Fatalf("%q re-encoded with a different line count: %q", in, out)
	}
	for i, l := range inLines {
		if l == outLines[i] {
			continue
		}
		name, value, ok := strings.Cut(l, ":")
		if i == 0 || !ok || outLines[i] != name+": "+strings.Trim(value, " \t") {
			t.Fatalf("line %d %q re-encoded as %q", i, l, outLines[i])
		}
	}
}

// FuzzParseErrorPayload: any bytes give a diagnostic that is valid,
// bounded, free of control and formatting characters, and equal to the
// payload when the payload already was all of those. It cannot be exact
// otherwise: sanitising is the point (see ParseErrorPayload).
func FuzzParseErrorPayload(f *testing.F) {
	for _, s := range []string{"upstream-unreachable", "malformed frame", "\xff\xfe", "\x1b[31mred\u202e", strings.Repeat("\u2603", 100)} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkDiagnostic(t, b) })
}

func checkDiagnostic(t *testing.T, b []byte) {
	t.Helper()
	d := ParseErrorPayload(b).Diagnostic
	if !utf8.ValidString(d) || len(d) > MaxDiagnosticLen {
		t.Fatalf("diagnostic %q: invalid or %d bytes", d, len(d))
	}
	clean := utf8.Valid(b) && len(b) <= MaxDiagnosticLen
	for _, r := range d {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			t.Fatalf("diagnostic %q keeps %U", d, r)
		}
	}
	for _, r := range string(b) {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			clean = false
		}
	}
	if clean && (d != string(b) || !bytes.Equal(ErrorFrame(d).Payload, b)) {
		t.Fatalf("clean payload %q became %q", b, d)
	}
}
