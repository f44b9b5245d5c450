package kps

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/keyhole-p2p/keyhole/identity"
)

// The keyhole auth exchange runs on the first stream of a connection,
// right after the handshake. KPS pins only the listener's certificate;
// this step adds keyhole's identity keys on both sides. Each side signs
// the connection's channel binding with its Ed25519 key, so a signature
// cannot be replayed on another connection, and the role byte stops a
// peer from reflecting the dialer's own proof back at it.
//
//	dialer   -> listener: authMagic 0x00 | mode | dialer key (32) | signature (64)
//	listener -> dialer:   authMagic 0x01 | mode | listener key (32) | signature (64)
//
// A listener that refuses closes the connection with CodePermissionDenied
// and the reason.

// bindingMode says how the channel binding was derived; both sides must
// agree on it.
type bindingMode byte

const (
	// bindingExporter: TLS exporter (RFC 5705 / RFC 8446 section 7.5)
	// with exporterLabel, used on QUIC.
	bindingExporter bindingMode = 1
	// bindingFingerprints: SHA-256 over the label and both DTLS
	// certificates' SHA-256 digests (listener first), used on WebRTC
	// because neither pion nor the browser exposes the DTLS exporter.
	// The dialer pins the listener's certificate and only the holder of
	// each certificate's key can complete the DTLS handshake, so the pair
	// names this one connection.
	bindingFingerprints bindingMode = 2
)

const (
	authMagic        = "KHAUTH1"
	authSignLabel    = "keyhole-kps-auth-v1"
	fingerprintLabel = "keyhole-kps-binding-webrtc-v1"
	authMsgLen       = len(authMagic) + 1 + 1 + identity.PublicKeySize + 64
	roleDialer       = 0
	roleListener     = 1
	// authTimeout bounds the exchange on both sides.
	authTimeout = 10 * time.Second
)

// Errors of the auth exchange, each naming the check that failed.
var (
	// ErrAuthSignature: the peer's signature over the channel binding
	// does not verify: the peer does not hold the key it claims, or the
	// connection is not the one it signed for.
	ErrAuthSignature = errors.New("kps: identity check failed: the peer's signature over the channel binding does not verify")
	// ErrAuthWrongKey: the listener proved a key other than the one dialed.
	ErrAuthWrongKey = errors.New("kps: identity check failed: the listener holds a different key than the one dialed")
	// ErrAuthProtocol: the peer did not speak the exchange (a plain KPS
	// endpoint, or garbage).
	ErrAuthProtocol = errors.New("kps: identity check failed: the peer did not answer the keyhole auth exchange (a plain KPS listener? dial it without an identity)")
	// ErrAuthRefused: the listener checked the dialer's key and refused it.
	ErrAuthRefused = errors.New("kps: the listener refused this identity")
)

// errAuthRequired is the reason a listener gives a dialer that did not
// speak the exchange.
var errAuthRequired = errors.New("this listener requires the keyhole identity exchange (dial with an identity, not --plain)")

// markKeyhole records that the peer speaks the exchange, so on WebRTC it
// can be sent close reasons on the control channel.
func markKeyhole(c Conn) {
	if rc, ok := c.(*rtcConn); ok {
		rc.keyhole.Store(true)
	}
}

// fingerprintBinding is the WebRTC binding from both certificates.
func fingerprintBinding(listenerCertDigest, dialerCertDigest [32]byte) [32]byte {
	h := sha256.New()
	h.Write([]byte(fingerprintLabel))
	h.Write(listenerCertDigest[:])
	h.Write(dialerCertDigest[:])
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

func authSigned(role byte, mode bindingMode, binding [32]byte) []byte {
	msg := make([]byte, 0, len(authSignLabel)+2+32)
	msg = append(msg, authSignLabel...)
	msg = append(msg, role, byte(mode))
	return append(msg, binding[:]...)
}

func authMessage(role byte, mode bindingMode, binding [32]byte, key *identity.PrivateKey) []byte {
	pub := key.Public()
	msg := make([]byte, 0, authMsgLen)
	msg = append(msg, authMagic...)
	msg = append(msg, role, byte(mode))
	msg = append(msg, pub[:]...)
	return append(msg, key.Sign(authSigned(role, mode, binding))...)
}

// parseAuthMessage checks the framing and the signature of a peer's
// message, sent in role, against our binding.
func parseAuthMessage(b []byte, role byte, mode bindingMode, binding [32]byte) (identity.PublicKey, error) {
	var pub identity.PublicKey
	if len(b) != authMsgLen || !bytes.Equal(b[:len(authMagic)], []byte(authMagic)) {
		return pub, ErrAuthProtocol
	}
	b = b[len(authMagic):]
	if b[0] != role {
		return pub, fmt.Errorf("%w (wrong role: a reflected message?)", ErrAuthSignature)
	}
	if bindingMode(b[1]) != mode {
		return pub, fmt.Errorf("%w (the peer derived its binding another way)", ErrAuthSignature)
	}
	copy(pub[:], b[2:2+identity.PublicKeySize])
	sig := b[2+identity.PublicKeySize:]
	if err := identity.VerifyStrict(pub, authSigned(role, mode, binding), sig); err != nil {
		return pub, ErrAuthSignature
	}
	return pub, nil
}

// dialerAuth runs the dialer's half. want, if not zero, is the key the
// listener must prove.
func dialerAuth(ctx context.Context, c Conn, key *identity.PrivateKey, want identity.PublicKey) (identity.PublicKey, error) {
	var zero identity.PublicKey
	ctx, cancel := context.WithTimeout(ctx, authTimeout)
	defer cancel()
	mode, binding, err := c.binding()
	if err != nil {
		return zero, fmt.Errorf("kps: deriving the channel binding: %w", err)
	}
	s, err := c.OpenStream(ctx)
	if err != nil {
		return zero, fmt.Errorf("kps: opening the auth stream: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { s.Reset(CodeTimeout); s.CancelRead(CodeTimeout) })
	defer stop()
	if _, err := s.Write(authMessage(roleDialer, mode, binding, key)); err != nil {
		return zero, fmt.Errorf("kps: sending the auth message: %w", err)
	}
	if err := s.CloseWrite(); err != nil {
		return zero, fmt.Errorf("kps: sending the auth message: %w", err)
	}
	reply := make([]byte, authMsgLen)
	if _, err := io.ReadFull(s, reply); err != nil {
		var ce *ConnError
		if errors.As(err, &ce) && ce.Code == CodePermissionDenied {
			return zero, fmt.Errorf("%w: %s", ErrAuthRefused, ce.Reason)
		}
		if ctx.Err() != nil {
			return zero, fmt.Errorf("%w (no answer within %s)", ErrAuthProtocol, authTimeout)
		}
		if errors.As(err, &ce) {
			return zero, fmt.Errorf("kps: the connection closed during the auth exchange: %w", err)
		}
		return zero, ErrAuthProtocol
	}
	// Wait for the listener's end of stream before closing: closing
	// first would cancel its send side while it is still finishing, and
	// it would take that for a failed exchange.
	extra, err := io.ReadAll(io.LimitReader(s, 1))
	if err != nil {
		return zero, fmt.Errorf("kps: the auth stream failed after the reply: %w", err)
	}
	if len(extra) != 0 {
		return zero, fmt.Errorf("%w (extra bytes after the reply)", ErrAuthProtocol)
	}
	s.Close()
	pub, err := parseAuthMessage(reply, roleListener, mode, binding)
	if err != nil {
		return pub, err
	}
	markKeyhole(c)
	if !want.IsZero() && pub != want {
		return pub, fmt.Errorf("%w (dialed %s, got %s)", ErrAuthWrongKey, want, pub)
	}
	return pub, nil
}

// listenerAuth runs the listener's half; authorize may refuse the key.
func listenerAuth(ctx context.Context, c Conn, key *identity.PrivateKey, authorize func(identity.PublicKey) error) (identity.PublicKey, error) {
	var zero identity.PublicKey
	ctx, cancel := context.WithTimeout(ctx, authTimeout)
	defer cancel()
	mode, binding, err := c.binding()
	if err != nil {
		return zero, fmt.Errorf("deriving the channel binding: %w", err)
	}
	s, err := c.AcceptStream(ctx)
	if err != nil {
		return zero, fmt.Errorf("waiting for the auth stream: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { s.Reset(CodeTimeout); s.CancelRead(CodeTimeout) })
	defer stop()
	msg := make([]byte, authMsgLen)
	if _, err := io.ReadFull(s, msg); err != nil {
		return zero, errAuthRequired
	}
	pub, err := parseAuthMessage(msg, roleDialer, mode, binding)
	if !errors.Is(err, ErrAuthProtocol) {
		markKeyhole(c)
	}
	if errors.Is(err, ErrAuthProtocol) {
		return pub, errAuthRequired
	}
	if err != nil {
		return pub, err
	}
	if authorize != nil {
		if err := authorize(pub); err != nil {
			return pub, err
		}
	}
	if _, err := s.Write(authMessage(roleListener, mode, binding, key)); err != nil {
		return pub, fmt.Errorf("sending the auth reply: %w", err)
	}
	// The dialer is verified and the reply is queued. A failing end of
	// stream here means the dialer already went away or gave up on the
	// stream; the connection itself shows that, so it is not an auth
	// failure.
	s.CloseWrite()
	return pub, nil
}
