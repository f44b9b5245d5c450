package kps

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/stun/v4"
	"github.com/pion/webrtc/v4"
	"github.com/quic-go/quic-go"

	"github.com/keyhole-p2p/keyhole/identity"
	"github.com/keyhole-p2p/keyhole/record"
)

// Options configure a Listener.
type Options struct {
	// Certificate is the listener's KPS identity; nil makes a fresh one
	// (and so a new certhash on every start: use LoadOrCreateCertificate
	// for a stable address).
	Certificate *Certificate
	// Identity, when set, makes the listener require the keyhole auth
	// exchange: every connection proves a dialer key, and the listener
	// proves this one. When nil the listener is a plain KPS listener that
	// any KPS client can use.
	Identity *identity.PrivateKey
	// Authorize, when set, decides which dialer keys may connect.
	Authorize func(identity.PublicKey) error
	// MaxHandshakes bounds WebRTC handshakes in progress (default 128);
	// STUN for new connections beyond it is dropped and retried by the
	// client.
	MaxHandshakes int
	// Logger receives connection-level events; nil discards them.
	Logger *slog.Logger

	// iceDigest replaces the certhash the ICE password is derived from;
	// tests use it to build an impostor that knows the address but not
	// the certificate's key.
	iceDigest *[32]byte
}

// Listener serves KPS over WebRTC-direct and QUIC on one UDP socket.
//
// The socket belongs to a quic.Transport. Packets whose first byte has
// the two top bits clear (STUN, DTLS; never QUIC) come out of
// ReadNonQUICPacket and are fed to a pion ICE UDP mux, which routes them
// by source address or STUN USERNAME to the PeerConnection that owns
// them. This is the SPEC section 5.1 demultiplexing done by the two
// libraries that own each half.
type Listener struct {
	opts   Options
	cert   *Certificate
	udp    *net.UDPConn
	tr     *quic.Transport
	ql     *quic.Listener
	vconn  *muxConn
	mux    *ice.UDPMuxDefault
	log    *slog.Logger
	accept chan Conn

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	pending map[string]bool // ufrags with a handshake in progress
}

// Listen binds addr ("host:port"; ":0" picks a port) and serves both
// transports on it.
func Listen(ctx context.Context, addr string, opts Options) (*Listener, error) {
	if opts.Certificate == nil {
		c, err := NewCertificate()
		if err != nil {
			return nil, err
		}
		opts.Certificate = c
	}
	if opts.MaxHandshakes <= 0 {
		opts.MaxHandshakes = 128
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("kps: listen address %q: %w", addr, err)
	}
	udp, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, fmt.Errorf("kps: %w", err)
	}
	l := &Listener{
		opts:    opts,
		cert:    opts.Certificate,
		udp:     udp,
		log:     log,
		accept:  make(chan Conn, 64),
		pending: map[string]bool{},
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.tr = &quic.Transport{Conn: udp}
	l.ql, err = l.tr.Listen(serverTLS(l.cert), quicConfig())
	if err != nil {
		udp.Close()
		return nil, fmt.Errorf("kps: starting QUIC: %w", err)
	}
	l.vconn = newMuxConn(l.tr, l.localUDPAddr())
	l.mux = ice.NewUDPMuxDefault(ice.UDPMuxParams{
		UDPConn:           l.vconn,
		Logger:            quietLogger().NewLogger("ice"),
		OnUnhandledPacket: l.onUnhandled,
	})
	l.wg.Add(2)
	go func() { defer l.wg.Done(); l.vconn.pump(l.ctx) }()
	go func() { defer l.wg.Done(); l.acceptQUIC() }()
	return l, nil
}

// localUDPAddr is the bound address with a concrete IP where there is
// one (ICE needs it to form candidates).
func (l *Listener) localUDPAddr() *net.UDPAddr {
	return l.udp.LocalAddr().(*net.UDPAddr)
}

// Port is the bound UDP port.
func (l *Listener) Port() int { return l.localUDPAddr().Port }

// CertHash is the SHA-256 of the listener's certificate.
func (l *Listener) CertHash() [32]byte { return l.cert.CertHash() }

// Address is the KPS address at the bound IP, or at 127.0.0.1 when bound
// to a wildcard (use AddressAt for the addresses others should dial).
func (l *Listener) Address() record.KPSAddr {
	ip, _ := netip.AddrFromSlice(l.localUDPAddr().IP)
	ip = ip.Unmap()
	if !ip.IsValid() || ip.IsUnspecified() {
		ip = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	}
	return l.AddressAt(ip)
}

// AddressAt is the KPS address at ip and the bound port.
func (l *Listener) AddressAt(ip netip.Addr) record.KPSAddr {
	return record.KPSAddr{AddrPort: netip.AddrPortFrom(ip.Unmap(), uint16(l.Port())), CertHash: l.cert.CertHash()}
}

// Accept waits for the next connection that finished its handshake (and
// the keyhole auth exchange, when the listener has an Identity).
func (l *Listener) Accept(ctx context.Context) (Conn, error) {
	select {
	case c := <-l.accept:
		return c, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-l.ctx.Done():
		return nil, ErrListenerClosed
	}
}

// Close stops listening and closes the socket. Accepted connections are
// closed too.
func (l *Listener) Close() error {
	l.cancel()
	l.ql.Close()
	l.mux.Close()
	err := l.tr.Close()
	l.udp.Close()
	l.wg.Wait()
	return err
}

func (l *Listener) acceptQUIC() {
	for {
		qc, err := l.ql.Accept(l.ctx)
		if err != nil {
			return
		}
		go l.ready(&quicConn{c: qc})
	}
}

// ready runs the auth exchange if required and hands the connection to
// Accept.
func (l *Listener) ready(c Conn) {
	var out Conn = c
	if l.opts.Identity != nil {
		pub, err := listenerAuth(l.ctx, c, l.opts.Identity, l.opts.Authorize)
		if err != nil {
			l.log.Debug("kps: dialer failed auth", "transport", c.Transport(), "err", err)
			c.CloseWithError(CodePermissionDenied, err.Error())
			return
		}
		out = &authedConn{Conn: c, peer: pub}
	}
	select {
	case l.accept <- out:
	case <-l.ctx.Done():
		c.CloseWithError(CodeClosed, "listener closed")
	}
}

// onUnhandled sees STUN from addresses no PeerConnection owns yet. It
// must not block. A handshake is started only for a binding request
// whose MESSAGE-INTEGRITY verifies under the password derived from this
// listener's certhash, so probers without the address cost one HMAC.
func (l *Listener) onUnhandled(data []byte, from netip.AddrPort) {
	if !stun.IsMessage(data) {
		return
	}
	m := &stun.Message{Raw: append([]byte(nil), data...)}
	if err := m.Decode(); err != nil || m.Type != stun.BindingRequest {
		return
	}
	user, err := m.Get(stun.AttrUsername)
	if err != nil {
		return
	}
	ufrag, _, ok := strings.Cut(string(user), ":")
	if !ok || !validUfrag(ufrag) {
		return
	}
	digest := l.cert.CertHash()
	if l.opts.iceDigest != nil {
		digest = *l.opts.iceDigest
	}
	pwd := icePassword(digest, ufrag)
	if err := stun.NewShortTermIntegrity(pwd).Check(m); err != nil {
		return
	}
	l.mu.Lock()
	if l.pending[ufrag] || len(l.pending) >= l.opts.MaxHandshakes || l.ctx.Err() != nil {
		l.mu.Unlock()
		return
	}
	l.pending[ufrag] = true
	l.mu.Unlock()
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		defer func() { l.mu.Lock(); delete(l.pending, ufrag); l.mu.Unlock() }()
		c, err := l.answer(ufrag, pwd, from, m.Raw)
		if err != nil {
			l.log.Debug("kps: WebRTC handshake failed", "err", err)
			return
		}
		go l.ready(c)
	}()
}

// validUfrag accepts ICE ufrags of ice-chars (RFC 8839), 4 to 256 long.
func validUfrag(u string) bool {
	if len(u) < 4 || len(u) > 256 {
		return false
	}
	for _, r := range u {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '+' || r == '/' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// answer builds the server side of a WebRTC-direct connection for ufrag.
func (l *Listener) answer(ufrag, pwd string, from netip.AddrPort, first []byte) (*rtcConn, error) {
	ctx, cancel := context.WithTimeout(l.ctx, 15*time.Second)
	defer cancel()
	se := baseSettings(from.Addr().Is6() && !from.Addr().Is4In6())
	se.SetLite(true)
	se.SetICECredentials(ufrag, pwd)
	se.DisableCertificateFingerprintVerification(true)
	se.SetICEUDPMux(l.mux)
	if err := se.SetAnsweringDTLSRole(webrtc.DTLSRoleServer); err != nil {
		return nil, err
	}
	api := webrtc.NewAPI(webrtc.WithSettingEngine(se))
	pc, err := api.NewPeerConnection(webrtc.Configuration{Certificates: []webrtc.Certificate{l.cert.rtc}})
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*rtcConn, error) {
		pc.Close()
		return nil, err
	}
	wait, err := prepare(pc, false)
	if err != nil {
		return fail(err)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: fakeOffer(from, ufrag, pwd)}); err != nil {
		return fail(fmt.Errorf("kps: applying the reconstructed offer: %w", err))
	}
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		return fail(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(ans); err != nil {
		return fail(err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return fail(ctx.Err())
	}
	// The mux now routes this ufrag: replay the request that started it
	// rather than waiting for the client's retransmission.
	l.vconn.inject(first, from)
	c, err := wait(ctx)
	if err != nil {
		return fail(err)
	}
	c.listenerDigest = l.cert.CertHash()
	d, err := remoteCertDigest(pc)
	if err != nil {
		return fail(err)
	}
	c.dialerDigest = d
	context.AfterFunc(l.ctx, func() { c.CloseWithError(CodeClosed, "listener closed") })
	return c, nil
}

// muxConn is the packet conn the ICE mux reads: the non-QUIC packets of
// the shared socket. Writes go out through the QUIC transport.
type muxConn struct {
	tr    *quic.Transport
	local *net.UDPAddr
	in    chan packet
	done  chan struct{}
	once  sync.Once
}

type packet struct {
	b    []byte
	from net.Addr
}

func newMuxConn(tr *quic.Transport, local *net.UDPAddr) *muxConn {
	return &muxConn{tr: tr, local: local, in: make(chan packet, 1024), done: make(chan struct{})}
}

// pump moves non-QUIC packets from the transport into the mux.
func (m *muxConn) pump(ctx context.Context) {
	buf := make([]byte, 1<<16)
	for {
		n, from, err := m.tr.ReadNonQUICPacket(ctx, buf)
		if err != nil {
			m.Close()
			return
		}
		m.deliver(append([]byte(nil), buf[:n]...), from)
	}
}

func (m *muxConn) deliver(b []byte, from net.Addr) {
	if ua, ok := from.(*net.UDPAddr); ok {
		// Unmap v4-in-v6 so one peer has one key in the mux's tables.
		if ip4 := ua.IP.To4(); ip4 != nil {
			from = &net.UDPAddr{IP: ip4, Port: ua.Port}
		}
	}
	select {
	case m.in <- packet{b, from}:
	case <-m.done:
	default: // full: drop, as a socket buffer would
	}
}

func (m *muxConn) inject(b []byte, from netip.AddrPort) {
	m.deliver(b, net.UDPAddrFromAddrPort(from))
}

func (m *muxConn) ReadFrom(p []byte) (int, net.Addr, error) {
	select {
	case pk := <-m.in:
		return copy(p, pk.b), pk.from, nil
	case <-m.done:
		return 0, nil, net.ErrClosed
	}
}

func (m *muxConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	select {
	case <-m.done:
		return 0, net.ErrClosed
	default:
	}
	return m.tr.WriteTo(p, addr)
}

func (m *muxConn) Close() error {
	m.once.Do(func() { close(m.done) })
	return nil
}

func (m *muxConn) LocalAddr() net.Addr { return m.local }

func (m *muxConn) SetDeadline(time.Time) error      { return nil }
func (m *muxConn) SetReadDeadline(time.Time) error  { return nil }
func (m *muxConn) SetWriteDeadline(time.Time) error { return nil }

var _ net.PacketConn = (*muxConn)(nil)

// authedConn is a connection whose peer proved an identity key.
type authedConn struct {
	Conn
	peer identity.PublicKey
}

func (a *authedConn) PeerKey() identity.PublicKey { return a.peer }

// PeerKey is the identity key the peer proved in the keyhole auth
// exchange, or the zero key for a plain KPS connection.
func PeerKey(c Conn) identity.PublicKey {
	if a, ok := c.(*authedConn); ok {
		return a.peer
	}
	return identity.PublicKey{}
}
