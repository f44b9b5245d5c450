package kps

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/quic-go/quic-go"

	"github.com/keyhole-p2p/keyhole/identity"
	"github.com/keyhole-p2p/keyhole/record"
)

// DialOptions configure Dial.
type DialOptions struct {
	// Transport is TransportQUIC (the default for native code) or
	// TransportWebRTC.
	Transport string
	// Identity, when set, runs the keyhole auth exchange after the
	// handshake: the dialer proves this key and the listener proves its
	// own. Without it the dial is a plain KPS dial.
	Identity *identity.PrivateKey
	// PeerKey, when set (with Identity), is the key the listener must
	// prove.
	PeerKey identity.PublicKey
	// Timeout bounds the handshake (default 15 s) when ctx has no
	// earlier deadline.
	Timeout time.Duration
}

// DefaultDialTimeout bounds a dial whose context has no deadline.
const DefaultDialTimeout = 15 * time.Second

// Dial connects to a KPS address ("ip:port:certhash") and checks the
// certificate against the certhash.
func Dial(ctx context.Context, addr string, opts DialOptions) (Conn, error) {
	a, err := record.ParseKPSAddr(addr)
	if err != nil {
		return nil, err
	}
	return DialAddr(ctx, a, opts)
}

// DialAddr is Dial for a parsed address.
func DialAddr(ctx context.Context, a record.KPSAddr, opts DialOptions) (Conn, error) {
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultDialTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var c Conn
	var err error
	switch opts.Transport {
	case "", TransportQUIC:
		c, err = dialQUIC(ctx, a)
	case TransportWebRTC:
		c, err = dialWebRTC(ctx, a)
	default:
		return nil, fmt.Errorf("kps: unknown transport %q (use %q or %q)", opts.Transport, TransportQUIC, TransportWebRTC)
	}
	if err != nil {
		return nil, err
	}
	if opts.Identity == nil {
		return c, nil
	}
	pub, err := dialerAuth(ctx, c, opts.Identity, opts.PeerKey)
	if err != nil {
		c.CloseWithError(CodePermissionDenied, "keyhole auth failed")
		return nil, err
	}
	return &authedConn{Conn: c, peer: pub}, nil
}

func dialQUIC(ctx context.Context, a record.KPSAddr) (Conn, error) {
	var mismatch atomic.Bool
	tlsConf := clientTLS(a.CertHash)
	verify := tlsConf.VerifyPeerCertificate
	tlsConf.VerifyPeerCertificate = func(raw [][]byte, chains [][]*x509.Certificate) error {
		err := verify(raw, chains)
		if err != nil {
			mismatch.Store(true)
		}
		return err
	}
	network := "udp4"
	if a.AddrPort.Addr().Is6() {
		network = "udp6"
	}
	udp, err := net.ListenUDP(network, nil)
	if err != nil {
		return nil, fmt.Errorf("kps: %w", err)
	}
	tr := &quic.Transport{Conn: udp}
	qc, err := tr.Dial(ctx, net.UDPAddrFromAddrPort(a.AddrPort), tlsConf, quicConfig())
	if err != nil {
		tr.Close()
		udp.Close()
		if mismatch.Load() {
			return nil, fmt.Errorf("%w (QUIC to %s)", ErrCertHashMismatch, a.AddrPort)
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("kps: no QUIC answer from %s within the dial timeout: the listener is down or unreachable", a.AddrPort)
		}
		return nil, fmt.Errorf("kps: QUIC to %s: %w", a.AddrPort, err)
	}
	// The transport (and socket) belong to this one connection.
	context.AfterFunc(qc.Context(), func() { tr.Close(); udp.Close() })
	return &quicConn{c: qc}, nil
}

func dialWebRTC(ctx context.Context, a record.KPSAddr) (Conn, error) {
	ufrag := newUfrag()
	pwd := icePassword(a.CertHash, ufrag)
	v6 := a.AddrPort.Addr().Is6()
	se := baseSettings(v6)
	se.SetICECredentials(ufrag, pwd)
	// The pin is checked below on the certificate itself, so that a
	// mismatch is reported as one rather than as a failed connection.
	se.DisableCertificateFingerprintVerification(true)
	cert, err := NewCertificate() // per connection, so dials are unlinkable
	if err != nil {
		return nil, err
	}
	api := webrtc.NewAPI(webrtc.WithSettingEngine(se))
	pc, err := api.NewPeerConnection(webrtc.Configuration{Certificates: []webrtc.Certificate{cert.rtc}})
	if err != nil {
		return nil, err
	}
	fail := func(err error) (Conn, error) {
		pc.Close()
		return nil, err
	}
	wait, err := prepare(pc, true)
	if err != nil {
		return fail(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return fail(err)
	}
	if err := pc.SetLocalDescription(offer); err != nil {
		return fail(err)
	}
	answer := synthesizeAnswer(a.AddrPort, ufrag, pwd, a.CertHash)
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		return fail(fmt.Errorf("kps: applying the synthesized answer: %w", err))
	}
	c, err := wait(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return fail(fmt.Errorf("kps: no WebRTC answer from %s within the dial timeout: the listener is down or unreachable, or the certhash is wrong (a listener ignores ICE checks keyed to another certhash)", a.AddrPort))
		}
		return fail(fmt.Errorf("kps: WebRTC to %s: %w", a.AddrPort, err))
	}
	got, err := remoteCertDigest(pc)
	if err != nil {
		return fail(err)
	}
	if got != a.CertHash {
		c.shutdown(&ConnError{Code: CodePermissionDenied, Reason: "certhash mismatch"})
		return nil, fmt.Errorf("%w (WebRTC to %s)", ErrCertHashMismatch, a.AddrPort)
	}
	c.listenerDigest = got
	c.dialerDigest = cert.CertHash()
	return c, nil
}
