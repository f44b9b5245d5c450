package openhost

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/keyhole-p2p/keyhole/identity"
)

// TestSessionVectors builds the AUTH_* and ERROR vectors of wire.json
// with the typed helpers and reads their payloads back.
func TestSessionVectors(t *testing.T) {
	frames := map[string]Frame{}
	for _, c := range loadWireVectors(t).Roundtrip {
		f, _, err := ParseFrame(mustHex(t, c.EncodedHex+c.HeaderHex))
		if err != nil && !errors.Is(err, ErrIncompleteFrame) {
			t.Fatal(err)
		}
		frames[c.Name] = f
	}

	nonce, err := ParseAuthNonce(frames["auth_nonce_32_bytes"].Payload)
	if err != nil {
		t.Fatal(err)
	}
	assertFrame(t, AuthNonceFrame(nonce), frames["auth_nonce_32_bytes"])

	pk, sig, err := ParseAuthClient(frames["auth_client_client_pk_plus_sig"].Payload)
	if err != nil || pk != identity.PublicKey(bytes.Repeat([]byte{0xaa}, 32)) || sig[0] != 0xbb {
		t.Fatalf("ParseAuthClient = %x, %x, %v", pk, sig, err)
	}
	assertFrame(t, AuthClientFrame(pk, sig), frames["auth_client_client_pk_plus_sig"])

	hsig, err := ParseAuthHost(frames["auth_host_sig"].Payload)
	if err != nil {
		t.Fatal(err)
	}
	assertFrame(t, AuthHostFrame(hsig), frames["auth_host_sig"])

	e := ParseErrorPayload(frames["error_utf8"].Payload)
	if e.Diagnostic != "upstream-unreachable" || e.Error() != `openhost: peer sent ERROR "upstream-unreachable"` {
		t.Fatalf("ParseErrorPayload = %q (%v)", e.Diagnostic, e)
	}
	assertFrame(t, ErrorFrame(e.Diagnostic), frames["error_utf8"])
}

func TestAuthPayloadLengths(t *testing.T) {
	for _, n := range []int{0, 31, 33, 63, 65, 95, 97, 1000} {
		if _, err := ParseAuthNonce(make([]byte, n)); (n == AuthNonceLen) != (err == nil) || err != nil && !errors.Is(err, ErrMalformedFrame) {
			t.Errorf("nonce of %d: %v", n, err)
		}
		if _, _, err := ParseAuthClient(make([]byte, n)); (n == AuthClientLen) != (err == nil) {
			t.Errorf("AUTH_CLIENT of %d: %v", n, err)
		}
		if _, err := ParseAuthHost(make([]byte, n)); (n == AuthHostLen) != (err == nil) {
			t.Errorf("AUTH_HOST of %d: %v", n, err)
		}
	}
	for _, f := range []Frame{AuthNonceFrame([32]byte{}), AuthClientFrame(identity.PublicKey{}, [64]byte{}), AuthHostFrame([64]byte{}), ErrorFrame("x")} {
		if f.RequestID != 0 {
			t.Errorf("%s is session-scoped but has id %d", f.Type, f.RequestID)
		}
		if _, err := AppendFrame(nil, f); err != nil {
			t.Errorf("%s: %v", f.Type, err)
		}
	}
}

// TestErrorPayloadSanitised: a hostile diagnostic cannot carry invalid
// UTF-8, control sequences, bidi overrides or unbounded length to the
// user (spec 01 section 5: an inert, truncated text blob).
func TestErrorPayloadSanitised(t *testing.T) {
	cases := []struct{ in, want string }{
		{"plain", "plain"},
		{"not \xff utf-8 \xc0\xaf", "not \uFFFD utf-8 \uFFFD\uFFFD"},
		{"\x1b[2J\r\nfake: line\x00", " [2J  fake: line "},
		{"\u202egnp.exe\u200b\ufeff", " gnp.exe  "},
		{"\u0085c1", " c1"},
		{"caf\u00e9 \u2603", "caf\u00e9 \u2603"},
	}
	for _, c := range cases {
		if got := ParseErrorPayload([]byte(c.in)).Diagnostic; got != c.want {
			t.Errorf("%q: got %q, want %q", c.in, got, c.want)
		}
	}
	long := ParseErrorPayload([]byte(strings.Repeat("\u2603", 1000))).Diagnostic
	if len(long) > MaxDiagnosticLen || len(long) < MaxDiagnosticLen-3 || !utf8.ValidString(long) {
		t.Errorf("long diagnostic kept %d bytes", len(long))
	}
}

func TestErrorFrameAlwaysEncodes(t *testing.T) {
	f := ErrorFrame("bad \xff byte")
	if string(f.Payload) != "bad \uFFFD byte" {
		t.Errorf("payload %q", f.Payload)
	}
	huge := ErrorFrame(strings.Repeat("\u2603", MaxPayloadLen/3+1))
	if len(huge.Payload) > MaxPayloadLen || !utf8.Valid(huge.Payload) {
		t.Errorf("huge diagnostic: %d bytes", len(huge.Payload))
	}
	if _, err := AppendFrame(nil, huge); err != nil {
		t.Error(err)
	}
}
