package kps

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/datachannel"
	"github.com/pion/ice/v4"
	"github.com/pion/logging"
	"github.com/pion/webrtc/v4"
)

const (
	// rtcMaxDatagram is the KPS WebRTC datagram limit.
	rtcMaxDatagram = 1200
	// maxIncomingStreams bounds streams waiting in AcceptStream, on both
	// transports.
	maxIncomingStreams = 4096
	// controlClose, on the negotiated channel 0, carries a connection
	// close code and reason between keyhole peers. KPS has no
	// connection-level close on WebRTC; plain KPS peers never see it
	// because it is only sent to a peer that passed the keyhole auth
	// exchange.
	controlClose byte = 0x10
	// maxReason bounds a close reason on the wire.
	maxReason int = 512
	// maxOpening bounds streams this side has opened and the peer has not
	// acknowledged yet. pion's SCTP association queues at most 16 new
	// streams for acceptance and drops the rest until the sender's
	// retransmission timer (seconds) fires, so a burst of opens towards a
	// pion peer must be paced by its acknowledgements.
	maxOpening = 8
)

var errShortBuffer = io.ErrShortBuffer

// rtcConn is a KPS connection over WebRTC, for either side.
type rtcConn struct {
	pc       *webrtc.PeerConnection
	control  *webrtc.DataChannel
	controlW datachannel.ReadWriteCloser
	dgram    datachannel.ReadWriteCloser
	dgrams   *datagramQueue
	accept   chan *rtcStream
	dialer   bool
	keyhole  atomic.Bool // the peer speaks the keyhole extensions
	local    net.Addr
	remote   net.Addr
	label    atomic.Uint64
	opening  chan struct{} // a slot per unacknowledged stream open
	// listenerDigest and dialerDigest are the DTLS certificate hashes the
	// channel binding covers.
	listenerDigest, dialerDigest [32]byte

	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex
	closeE *ConnError
}

func quietLogger() logging.LoggerFactory {
	f := logging.NewDefaultLoggerFactory()
	f.DefaultLogLevel = logging.LogLevelDisabled
	return f
}

// baseSettings are the settings both sides share.
func baseSettings(v6 bool) webrtc.SettingEngine {
	var se webrtc.SettingEngine
	se.DetachDataChannels()
	se.LoggerFactory = quietLogger()
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetIncludeLoopbackCandidate(true)
	se.SetICETimeouts(5*time.Second, 15*time.Second, 2*time.Second)
	if v6 {
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP6})
	} else {
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	}
	return se
}

// reservedChannels creates the negotiated channels 0 (bootstrap, and
// keyhole's control channel) and 1 (datagrams).
func reservedChannels(pc *webrtc.PeerConnection) (ctl, dg *webrtc.DataChannel, err error) {
	neg := true
	id0, id1 := uint16(0), uint16(1)
	ordered := false
	zero := uint16(0)
	ctl, err = pc.CreateDataChannel("_kps_bootstrap", &webrtc.DataChannelInit{Negotiated: &neg, ID: &id0})
	if err != nil {
		return nil, nil, err
	}
	dg, err = pc.CreateDataChannel("_kps_datagrams", &webrtc.DataChannelInit{
		Negotiated: &neg, ID: &id1, Ordered: &ordered, MaxRetransmits: &zero,
	})
	return ctl, dg, err
}

// detachOnOpen returns a channel that yields the detached channel once it
// opens.
func detachOnOpen(dc *webrtc.DataChannel) <-chan datachannel.ReadWriteCloser {
	ch := make(chan datachannel.ReadWriteCloser, 1)
	dc.OnOpen(func() {
		raw, err := dc.Detach()
		if err != nil {
			close(ch)
			return
		}
		ch <- raw
	})
	return ch
}

// prepare sets up a connection on pc: the reserved channels and the
// handler for streams the peer opens. It must run before the offer or
// answer is made, so that the SDP carries the data-channel section and
// no early stream finds this side without a handler. The returned wait
// blocks until the reserved channels are open, which means DTLS and SCTP
// are up.
func prepare(pc *webrtc.PeerConnection, dialer bool) (wait func(context.Context) (*rtcConn, error), err error) {
	ctl, dg, err := reservedChannels(pc)
	if err != nil {
		return nil, err
	}
	ctlOpen, dgOpen := detachOnOpen(ctl), detachOnOpen(dg)
	failed := make(chan struct{})
	var failOnce sync.Once
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateFailed || s == webrtc.PeerConnectionStateClosed {
			failOnce.Do(func() { close(failed) })
		}
	})
	c := &rtcConn{
		pc:      pc,
		control: ctl,
		dgrams:  newDatagramQueue(),
		accept:  make(chan *rtcStream, maxIncomingStreams),
		opening: make(chan struct{}, maxOpening),
		dialer:  dialer,
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	pc.OnDataChannel(func(dc *webrtc.DataChannel) {
		if dc.Negotiated() {
			return
		}
		opened := detachOnOpen(dc)
		go func() {
			raw, ok := <-opened
			if !ok {
				return
			}
			s := newRTCStream(c, dc, raw)
			select {
			case c.accept <- s:
			default:
				s.Reset(CodeQueueFull)
				s.CancelRead(CodeQueueFull)
			}
		}()
	})
	wait = func(ctx context.Context) (*rtcConn, error) {
		if err := c.open(ctx, ctlOpen, dgOpen, failed); err != nil {
			c.cancel()
			return nil, err
		}
		return c, nil
	}
	return wait, nil
}

// open waits for the reserved channels and then watches the connection.
func (c *rtcConn) open(ctx context.Context, ctlOpen, dgOpen <-chan datachannel.ReadWriteCloser, failed <-chan struct{}) error {
	for c.controlW == nil || c.dgram == nil {
		select {
		case raw, ok := <-ctlOpen:
			if !ok {
				return errors.New("kps: opening the control channel failed")
			}
			c.controlW, ctlOpen = raw, nil
		case raw, ok := <-dgOpen:
			if !ok {
				return errors.New("kps: opening the datagram channel failed")
			}
			c.dgram, dgOpen = raw, nil
		case <-failed:
			return errors.New("kps: the WebRTC connection failed")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	pc := c.pc
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		switch s {
		case webrtc.PeerConnectionStateFailed:
			c.shutdown(&ConnError{Code: CodeTimeout, Reason: "the peer stopped answering", Remote: true})
		case webrtc.PeerConnectionStateClosed:
			c.shutdown(&ConnError{Code: CodeNone, Remote: true})
		}
	})
	// The state may have moved before the handler was replaced.
	if st := pc.ConnectionState(); st == webrtc.PeerConnectionStateFailed || st == webrtc.PeerConnectionStateClosed {
		return errors.New("kps: the WebRTC connection failed")
	}
	if sctp := pc.SCTP(); sctp != nil {
		sctp.OnClose(func(error) { c.shutdown(&ConnError{Code: CodeNone, Remote: true}) })
		if pair, err := sctp.Transport().ICETransport().GetSelectedCandidatePair(); err == nil && pair != nil {
			c.local = &net.UDPAddr{IP: net.ParseIP(pair.Local.Address), Port: int(pair.Local.Port)}
			c.remote = &net.UDPAddr{IP: net.ParseIP(pair.Remote.Address), Port: int(pair.Remote.Port)}
		}
	}
	go c.datagramLoop()
	go c.controlLoop()
	return nil
}

func (c *rtcConn) datagramLoop() {
	buf := make([]byte, 64<<10)
	for {
		n, _, err := c.dgram.ReadDataChannel(buf)
		if errors.Is(err, errShortBuffer) {
			continue // larger than any KPS peer sends: drop
		}
		if err != nil {
			return
		}
		c.dgrams.push(append([]byte(nil), buf[:n]...))
	}
}

func (c *rtcConn) controlLoop() {
	buf := make([]byte, 1+4+maxReason)
	for {
		n, _, err := c.controlW.ReadDataChannel(buf)
		if errors.Is(err, errShortBuffer) {
			continue
		}
		if err != nil {
			return
		}
		if n >= 5 && buf[0] == controlClose {
			code := ErrorCode(binary.BigEndian.Uint32(buf[1:5])).Normalize()
			c.shutdown(&ConnError{Code: code, Reason: string(buf[5:n]), Remote: true})
			return
		}
	}
}

// err is the close error, or nil while the connection is open.
func (c *rtcConn) err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closeE == nil {
		return nil
	}
	return c.closeE
}

// shutdown records why the connection ended (the first reason wins) and
// tears it down.
func (c *rtcConn) shutdown(e *ConnError) bool {
	c.mu.Lock()
	if c.closeE != nil {
		c.mu.Unlock()
		return false
	}
	c.closeE = e
	c.mu.Unlock()
	c.cancel()
	go c.pc.Close()
	return true
}

func (c *rtcConn) OpenStream(ctx context.Context) (Stream, error) {
	if err := c.err(); err != nil {
		return nil, err
	}
	select {
	case c.opening <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.ctx.Done():
		return nil, c.err()
	}
	var once sync.Once
	release := func() { once.Do(func() { <-c.opening }) }
	ordered := true
	dc, err := c.pc.CreateDataChannel(fmt.Sprintf("kps-%d", c.label.Add(1)), &webrtc.DataChannelInit{Ordered: &ordered})
	if err != nil {
		release()
		if cerr := c.err(); cerr != nil {
			return nil, cerr
		}
		return nil, fmt.Errorf("kps: opening a stream: %w", err)
	}
	opened := detachOnOpen(dc)
	select {
	case raw, ok := <-opened:
		if !ok {
			release()
			return nil, errors.New("kps: opening a stream failed")
		}
		if d, ok := raw.(*datachannel.DataChannel); ok {
			d.OnOpen(release) // the peer's DATA_CHANNEL_ACK
			time.AfterFunc(2*time.Second, release)
		} else {
			release()
		}
		return newRTCStream(c, dc, raw), nil
	case <-ctx.Done():
		release()
		dc.Close()
		return nil, ctx.Err()
	case <-c.ctx.Done():
		release()
		return nil, c.err()
	}
}

func (c *rtcConn) AcceptStream(ctx context.Context) (Stream, error) {
	select {
	case s := <-c.accept:
		return s, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.ctx.Done():
		return nil, c.err()
	}
}

func (c *rtcConn) SendDatagram(p []byte) error {
	if len(p) > rtcMaxDatagram {
		return &DatagramTooLargeError{MaxDatagramPayloadSize: rtcMaxDatagram}
	}
	if err := c.err(); err != nil {
		return err
	}
	_, err := c.dgram.Write(p)
	if err != nil {
		if cerr := c.err(); cerr != nil {
			return cerr
		}
		return fmt.Errorf("kps: sending a datagram: %w", err)
	}
	return nil
}

func (c *rtcConn) ReceiveDatagram(ctx context.Context) ([]byte, error) {
	return c.dgrams.pop(ctx, c.ctx.Done(), c.err)
}

func (c *rtcConn) CloseWithError(code ErrorCode, reason string) error {
	if len(reason) > maxReason {
		reason = reason[:maxReason]
	}
	c.mu.Lock()
	if c.closeE != nil {
		c.mu.Unlock()
		return nil
	}
	c.closeE = &ConnError{Code: code, Reason: reason}
	c.mu.Unlock()
	if c.keyhole.Load() {
		msg := make([]byte, 5, 5+len(reason))
		msg[0] = controlClose
		binary.BigEndian.PutUint32(msg[1:], uint32(code))
		msg = append(msg, reason...)
		if _, err := c.controlW.Write(msg); err == nil {
			// Give the close a moment to be acknowledged before the
			// association goes away.
			for i := 0; i < 50 && c.control.BufferedAmount() > 0; i++ {
				time.Sleep(5 * time.Millisecond)
			}
		}
	}
	c.cancel()
	return c.pc.Close()
}

func (c *rtcConn) Close() error             { return c.CloseWithError(CodeNone, "") }
func (c *rtcConn) Context() context.Context { return c.ctx }
func (c *rtcConn) Transport() string        { return TransportWebRTC }
func (c *rtcConn) RemoteAddr() net.Addr     { return c.remote }
func (c *rtcConn) LocalAddr() net.Addr      { return c.local }

func (c *rtcConn) binding() (bindingMode, [32]byte, error) {
	return bindingFingerprints, fingerprintBinding(c.listenerDigest, c.dialerDigest), nil
}

// remoteCertDigest is the hash of the certificate the peer presented in
// DTLS.
func remoteCertDigest(pc *webrtc.PeerConnection) ([32]byte, error) {
	sctp := pc.SCTP()
	if sctp == nil {
		return [32]byte{}, errors.New("kps: no DTLS transport")
	}
	der := sctp.Transport().GetRemoteCertificate()
	if len(der) == 0 {
		return [32]byte{}, errors.New("kps: the peer presented no certificate")
	}
	return sha256.Sum256(der), nil
}
