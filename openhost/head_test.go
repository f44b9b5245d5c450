package openhost

import (
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// TestRequestHeadVector: the REQUEST_HEAD vector's payload is a head
// this codec reads and writes back byte for byte.
func TestRequestHeadVector(t *testing.T) {
	const wire = "GET / HTTP/1.1\r\nHost: example\r\n\r\n"
	h, err := ParseRequestHead([]byte(wire))
	want := RequestHead{Method: "GET", Target: "/", Header: Header{{"Host", "example"}}}
	if err != nil || !reflect.DeepEqual(h, want) {
		t.Fatalf("ParseRequestHead = %+v, %v", h, err)
	}
	if enc, err := AppendRequestHead(nil, h); err != nil || string(enc) != wire {
		t.Fatalf("AppendRequestHead = %q, %v", enc, err)
	}
}

func TestRequestHeadRoundTrip(t *testing.T) {
	for _, wire := range []string{
		"GET / HTTP/1.1\r\n\r\n",
		"POST /api/v1/items?x=1&y=%20 HTTP/1.1\r\nHost: openhost\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nhost: a\r\nHOST: b\r\n\r\n", // repeats and spelling kept
		"GET http://host/path HTTP/1.1\r\nX-Empty: \r\n\r\n",
		"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
		"PUT /f HTTP/1.1\r\nX-Name: caf\u00e9 \u2603\r\nX-Tab: a\tb\r\n\r\n", // UTF-8 and inner tabs in values
		"M-._~!#$%&'*+^`| /x HTTP/1.1\r\n\r\n",                               // every token character class
	} {
		h, err := ParseRequestHead([]byte(wire))
		if err != nil {
			t.Errorf("%q: %v", wire, err)
			continue
		}
		enc, err := AppendRequestHead(nil, h)
		if err != nil || string(enc) != wire {
			t.Errorf("%q re-encoded as %q, %v", wire, enc, err)
		}
	}
}

func TestResponseHeadRoundTrip(t *testing.T) {
	for _, wire := range []string{
		"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: 5\r\n\r\n",
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
		"HTTP/1.1 204 \r\n\r\n",             // empty reason
		"HTTP/1.1 999 Unknown\r\n\r\n",      // the daemon's fallback reason
		"HTTP/1.1 404  Not  Found \r\n\r\n", // spaces belong to the reason
	} {
		h, err := ParseResponseHead([]byte(wire))
		if err != nil {
			t.Errorf("%q: %v", wire, err)
			continue
		}
		enc, err := AppendResponseHead(nil, h)
		if err != nil || string(enc) != wire {
			t.Errorf("%q re-encoded as %q, %v", wire, enc, err)
		}
	}
}

// TestBadGatewayBytes: the stub 502 is byte for byte the daemon's
// literal (IMPLEMENTATION-NOTES section 1, "Errors").
func TestBadGatewayBytes(t *testing.T) {
	enc, err := AppendResponseHead(nil, BadGatewayResponse())
	if err != nil || string(enc) != "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n" {
		t.Fatalf("got %q, %v", enc, err)
	}
}

// TestHeadWhitespaceCanonical: whitespace around a value is not part of
// it, so these parse but re-encode to the one-space spelling; this is
// the only way an accepted head fails to re-encode to its own bytes.
func TestHeadWhitespaceCanonical(t *testing.T) {
	for _, wire := range []string{
		"GET / HTTP/1.1\r\nA:b\r\n\r\n",
		"GET / HTTP/1.1\r\nA: \t b \t\r\n\r\n",
		"GET / HTTP/1.1\r\nA:  b\r\n\r\n",
	} {
		h, err := ParseRequestHead([]byte(wire))
		if err != nil || h.Header.Get("a") != "b" {
			t.Fatalf("%q: %+v, %v", wire, h, err)
		}
		if enc, _ := AppendRequestHead(nil, h); string(enc) != "GET / HTTP/1.1\r\nA: b\r\n\r\n" {
			t.Errorf("%q re-encoded as %q", wire, enc)
		}
	}
}

// TestHeadRejects covers malformed heads and header-injection attempts:
// every one would let a line break, a control byte or a second request
// reach the upstream if accepted.
func TestHeadRejects(t *testing.T) {
	req := []struct{ name, wire, why string }{
		{"not UTF-8", "GET / HTTP/1.1\r\nX: \xff\r\n\r\n", "UTF-8"},
		{"overlong UTF-8", "GET / HTTP/1.1\r\nX: \xc0\xaf\r\n\r\n", "UTF-8"},
		{"UTF-16 surrogate", "GET / HTTP/1.1\r\nX: \xed\xa0\x80\r\n\r\n", "UTF-8"},
		{"no terminator", "GET / HTTP/1.1\r\nHost: a\r\n", "empty line"},
		{"LF only", "GET / HTTP/1.1\nHost: a\n\n", "empty line"},
		{"bytes after the head", "GET / HTTP/1.1\r\n\r\nGET /admin HTTP/1.1\r\n\r\n", "after the empty line"},
		{"body after the head", "POST / HTTP/1.1\r\n\r\nbody", "after the empty line"},
		{"empty", "", "empty line"},
		{"empty request line", "\r\n\r\n", "request line"},
		{"bare LF in a value", "GET / HTTP/1.1\r\nX: a\nInjected: b\r\n\r\n", "bare LF"},
		{"bare CR in a value", "GET / HTTP/1.1\r\nX: a\rInjected: b\r\n\r\n", "bare CR"},
		{"bare LF in the request line", "GET /\nX: y HTTP/1.1\r\n\r\n", "bare LF"},
		{"CR before the terminator", "GET / HTTP/1.1\r\nX: a\r\r\n\r\n", "bare CR"},
		{"NUL in a value", "GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n", "0x00"},
		{"DEL in a value", "GET / HTTP/1.1\r\nX: a\x7fb\r\n\r\n", "0x7f"},
		{"obs-fold", "GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", "folding"},
		{"space before colon", "GET / HTTP/1.1\r\nHost : evil\r\n\r\n", "colon"},
		{"no colon", "GET / HTTP/1.1\r\nHost\r\n\r\n", "no colon"},
		{"empty name", "GET / HTTP/1.1\r\n: v\r\n\r\n", "empty"},
		{"space in name", "GET / HTTP/1.1\r\nX Y: v\r\n\r\n", "token"},
		{"non-ASCII name", "GET / HTTP/1.1\r\nX\u00e9: v\r\n\r\n", "token"},
		{"HTTP/1.0", "GET / HTTP/1.0\r\n\r\n", "HTTP/1.1"},
		{"HTTP/2", "GET / HTTP/2\r\n\r\n", "HTTP/1.1"},
		{"trailing token", "GET / HTTP/1.1 x\r\n\r\n", "HTTP/1.1"},
		{"two spaces", "GET  / HTTP/1.1\r\n\r\n", "target is empty"},
		{"missing version", "GET /\r\n\r\n", "METHOD SP TARGET"},
		{"bad method", "G(T / HTTP/1.1\r\n\r\n", "token"},
		{"tab in target", "GET /a\tb HTTP/1.1\r\n\r\n", "visible ASCII"},
		{"UTF-8 in target", "GET /caf\u00e9 HTTP/1.1\r\n\r\n", "visible ASCII"},
	}
	for _, c := range req {
		_, err := ParseRequestHead([]byte(c.wire))
		if !errors.Is(err, ErrMalformedHead) || !strings.Contains(err.Error(), c.why) {
			t.Errorf("%s: %v, want an error about %q", c.name, err, c.why)
		}
	}
	resp := []struct{ name, wire, why string }{
		{"HTTP/1.0", "HTTP/1.0 200 OK\r\n\r\n", "HTTP/1.1"},
		{"two-digit status", "HTTP/1.1 20 OK\r\n\r\n", "three-digit"},
		{"status 099", "HTTP/1.1 099 X\r\n\r\n", "three-digit"},
		{"letters", "HTTP/1.1 2OO OK\r\n\r\n", "three-digit"},
		{"four digits", "HTTP/1.1 2000 OK\r\n\r\n", "space after"},
		{"no space", "HTTP/1.1 200\r\n\r\n", "space after"},
		{"NUL in reason", "HTTP/1.1 200 O\x00K\r\n\r\n", "0x00"},
		{"not UTF-8 reason", "HTTP/1.1 200 \xfe\r\n\r\n", "UTF-8"},
		{"injection", "HTTP/1.1 200 OK\r\nSet-Cookie: a\nSet-Cookie: evil\r\n\r\n", "bare LF"},
	}
	for _, c := range resp {
		_, err := ParseResponseHead([]byte(c.wire))
		if !errors.Is(err, ErrMalformedHead) || !strings.Contains(err.Error(), c.why) {
			t.Errorf("%s: %v, want an error about %q", c.name, err, c.why)
		}
	}
}

// TestHeadEncodeRefusesInjection: nothing handed to the encoders can put
// a CR, LF or other control byte into the head.
func TestHeadEncodeRefusesInjection(t *testing.T) {
	ok := RequestHead{Method: "GET", Target: "/", Header: Header{{"X", "y"}}}
	bad := []struct {
		name string
		edit func(*RequestHead)
	}{
		{"CRLF in value", func(h *RequestHead) { h.Header[0].Value = "y\r\nInjected: z" }},
		{"LF in value", func(h *RequestHead) { h.Header[0].Value = "y\nInjected: z" }},
		{"NUL in value", func(h *RequestHead) { h.Header[0].Value = "y\x00" }},
		{"CRLF in name", func(h *RequestHead) { h.Header[0].Name = "X\r\nInjected" }},
		{"colon in name", func(h *RequestHead) { h.Header[0].Name = "X:Y" }},
		{"empty name", func(h *RequestHead) { h.Header[0].Name = "" }},
		{"leading space in value", func(h *RequestHead) { h.Header[0].Value = " y" }},
		{"trailing tab in value", func(h *RequestHead) { h.Header[0].Value = "y\t" }},
		{"invalid UTF-8 value", func(h *RequestHead) { h.Header[0].Value = "\xff" }},
		{"CRLF in target", func(h *RequestHead) { h.Target = "/ HTTP/1.1\r\nX: y\r\n\r\nGET /" }},
		{"space in target", func(h *RequestHead) { h.Target = "/a b" }},
		{"empty target", func(h *RequestHead) { h.Target = "" }},
		{"space in method", func(h *RequestHead) { h.Method = "GET /x" }},
		{"too many fields", func(h *RequestHead) { h.Header = make(Header, MaxHeadFields+1) }},
	}
	for _, c := range bad {
		h := ok
		h.Header = append(Header(nil), ok.Header...)
		c.edit(&h)
		out, err := AppendRequestHead([]byte("keep"), h)
		if !errors.Is(err, ErrMalformedHead) || string(out) != "keep" {
			t.Errorf("%s: %q, %v", c.name, out, err)
		}
	}
	for _, r := range []ResponseHead{
		{StatusCode: 200, Reason: "OK\r\nSet-Cookie: x"},
		{StatusCode: 99, Reason: "x"},
		{StatusCode: 1000, Reason: "x"},
		{StatusCode: 200, Reason: "OK", Header: Header{{"Set-Cookie", "a\r\nb"}}},
	} {
		if _, err := AppendResponseHead(nil, r); !errors.Is(err, ErrMalformedHead) {
			t.Errorf("%+v: %v", r, err)
		}
	}
}

func TestHeadFieldLimit(t *testing.T) {
	head := "GET / HTTP/1.1\r\n" + strings.Repeat("a:\r\n", MaxHeadFields)
	if _, err := ParseRequestHead([]byte(head + "\r\n")); err != nil {
		t.Fatalf("%d fields: %v", MaxHeadFields, err)
	}
	if _, err := ParseRequestHead([]byte(head + "a:\r\n\r\n")); !errors.Is(err, ErrMalformedHead) {
		t.Fatalf("%d fields: %v", MaxHeadFields+1, err)
	}
}

// TestHeadErrorsStayShort: a huge hostile line is clipped in the error.
func TestHeadErrorsStayShort(t *testing.T) {
	_, err := ParseRequestHead([]byte("GET" + strings.Repeat("x", 1<<20) + "\r\n\r\n"))
	if err == nil || len(err.Error()) > 300 {
		t.Fatalf("error of %d bytes: %.100v", len(err.Error()), err)
	}
}

func TestHeaderHelpers(t *testing.T) {
	h := Header{{"Accept", "a"}, {"X-Multi", "1"}, {"x-multi", "2"}}
	if h.Get("ACCEPT") != "a" || h.Get("missing") != "" {
		t.Error("Get")
	}
	if got := h.Values("X-MULTI"); !reflect.DeepEqual(got, []string{"1", "2"}) {
		t.Errorf("Values = %v", got)
	}
	hh := h.HTTP()
	if !reflect.DeepEqual(hh, http.Header{"Accept": {"a"}, "X-Multi": {"1", "2"}}) {
		t.Errorf("HTTP = %v", hh)
	}
	back := HeaderFromHTTP(hh)
	if !reflect.DeepEqual(back, Header{{"Accept", "a"}, {"X-Multi", "1"}, {"X-Multi", "2"}}) {
		t.Errorf("HeaderFromHTTP = %v", back)
	}
}
