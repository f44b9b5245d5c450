package openhost

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/keyhole-p2p/keyhole/identity"
)

// Payloads of the session frames: the channel binding of spec 01
// section 3 step 9 and the ERROR frame of section 5. These frames
// belong to the channel, not to a transaction, so they carry request id 0.
const (
	// AuthNonceLen is the AUTH_NONCE payload: the host's fresh nonce.
	AuthNonceLen = 32
	// AuthClientLen is the AUTH_CLIENT payload: the client's key, then
	// its signature over the bound auth bytes (see AuthBytesBound).
	AuthClientLen = identity.PublicKeySize + identity.SignatureSize
	// AuthHostLen is the AUTH_HOST payload: the host's signature.
	AuthHostLen = identity.SignatureSize

	// MaxDiagnosticLen bounds, in bytes, the diagnostic ParseErrorPayload
	// keeps: spec 01 section 5 has a client show it only truncated, so
	// a host cannot flood the user's screen or logs through it.
	MaxDiagnosticLen = 256
)

// AuthNonceFrame is the host's first frame on a new channel.
func AuthNonceFrame(nonce [AuthNonceLen]byte) Frame {
	return Frame{Type: TypeAuthNonce, Payload: nonce[:]}
}

// ParseAuthNonce reads an AUTH_NONCE payload. openhost's client refuses
// any length but 32 (IMPLEMENTATION-NOTES section 1), and so does this.
func ParseAuthNonce(p []byte) ([AuthNonceLen]byte, error) {
	var n [AuthNonceLen]byte
	if len(p) != AuthNonceLen {
		return n, sizeErr(TypeAuthNonce, len(p), AuthNonceLen, "a nonce")
	}
	copy(n[:], p)
	return n, nil
}

// AuthClientFrame is the client's proof of its key.
func AuthClientFrame(client identity.PublicKey, sig [identity.SignatureSize]byte) Frame {
	p := make([]byte, 0, AuthClientLen)
	p = append(p, client[:]...)
	return Frame{Type: TypeAuthClient, Payload: append(p, sig[:]...)}
}

// ParseAuthClient splits an AUTH_CLIENT payload. It checks only the
// length: whether the key is a valid point and the signature verifies
// strictly is the binding's job (identity.VerifyStrict), which must see
// the bytes exactly as sent.
func ParseAuthClient(p []byte) (identity.PublicKey, [identity.SignatureSize]byte, error) {
	var k identity.PublicKey
	var sig [identity.SignatureSize]byte
	if len(p) != AuthClientLen {
		return k, sig, sizeErr(TypeAuthClient, len(p), AuthClientLen, "a client key and a signature")
	}
	copy(k[:], p)
	copy(sig[:], p[identity.PublicKeySize:])
	return k, sig, nil
}

// AuthHostFrame is the host's answering signature.
func AuthHostFrame(sig [identity.SignatureSize]byte) Frame {
	return Frame{Type: TypeAuthHost, Payload: sig[:]}
}

// ParseAuthHost reads an AUTH_HOST payload, refusing any length but 64
// as openhost's client does.
func ParseAuthHost(p []byte) ([identity.SignatureSize]byte, error) {
	var sig [identity.SignatureSize]byte
	if len(p) != AuthHostLen {
		return sig, sizeErr(TypeAuthHost, len(p), AuthHostLen, "a signature")
	}
	copy(sig[:], p)
	return sig, nil
}

func sizeErr(t FrameType, got, want int, what string) error {
	return fmt.Errorf("%w: %s payload is %d bytes; it must be %d (%s)", ErrMalformedFrame, t, got, want, what)
}

// ErrorFrame is the frame spec 01 section 5 has a peer send before it
// tears the channel down, such as "malformed frame" (the text openhost's
// daemon uses for undecodable input). The spec requires UTF-8, so
// invalid bytes in diagnostic become U+FFFD; it cannot fail, because it
// is built on the way out of an error path. Diagnostics should be short
// and must not contain secrets: the peer may display them.
func ErrorFrame(diagnostic string) Frame {
	d := strings.ToValidUTF8(diagnostic, "\uFFFD")
	if len(d) > MaxPayloadLen {
		d = truncateUTF8(d, MaxPayloadLen)
	}
	return Frame{Type: TypeError, Payload: []byte(d)}
}

// RemoteError is an ERROR frame received from the peer. Spec 01 section
// 5 has a client turn it into an HTTP 502 for the application and show
// the diagnostic only as inert text, which is why Diagnostic is already
// sanitised.
type RemoteError struct {
	// Diagnostic is valid UTF-8 without control or formatting
	// characters, at most MaxDiagnosticLen bytes.
	Diagnostic string
}

// Error quotes the diagnostic, so even a sanitised one cannot pass for
// part of the message around it.
func (e *RemoteError) Error() string {
	return "openhost: peer sent ERROR " + strconv.Quote(e.Diagnostic)
}

// ParseErrorPayload turns an ERROR payload into something safe to log
// or show. Like openhost, which decodes it lossily, it accepts any
// bytes: the channel is being torn down anyway, and refusing a garbled
// diagnostic would only lose it. Invalid UTF-8 becomes U+FFFD, control
// and formatting characters (which could fake lines or reorder text on
// screen) become spaces, and the result is cut to MaxDiagnosticLen bytes
// at a character boundary. So the result re-encodes to the payload only
// when the payload was already short, valid and free of such characters.
func ParseErrorPayload(p []byte) *RemoteError {
	var b strings.Builder
	for len(p) > 0 {
		r, size := utf8.DecodeRune(p)
		p = p[size:]
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			r = ' '
		}
		if b.Len()+utf8.RuneLen(r) > MaxDiagnosticLen {
			break
		}
		b.WriteRune(r)
	}
	return &RemoteError{Diagnostic: b.String()}
}

// truncateUTF8 cuts valid UTF-8 s to at most n bytes without splitting
// a character.
func truncateUTF8(s string, n int) string {
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
