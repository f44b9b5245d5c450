package kps

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/pion/webrtc/v4"

	"github.com/keyhole-p2p/keyhole/identity"
)

// Setup is KPS being set up on a WebRTC peer connection that something
// else negotiates: the board's ICE rendezvous, which reaches devices
// behind NATs that a KPS address cannot. The result is the same Conn,
// with the same streams, datagrams and identity exchange, so callers do
// not care which way a connection was made.
type Setup struct {
	pc     *webrtc.PeerConnection
	dialer bool
	wait   func(context.Context) (*rtcConn, error)
}

// SetupWebRTC prepares pc to carry KPS. It must run before the offer or
// answer is made, so the SDP carries the data-channel section and no
// early stream finds this side without a handler. Exactly one side is
// the dialer: it proves its key first in the identity exchange. pc must
// detach its data channels (SettingEngine.DetachDataChannels) and carry
// no other data channels.
func SetupWebRTC(pc *webrtc.PeerConnection, dialer bool) (*Setup, error) {
	wait, err := prepare(pc, dialer)
	if err != nil {
		return nil, fmt.Errorf("kps: preparing the peer connection: %w", err)
	}
	return &Setup{pc: pc, dialer: dialer, wait: wait}, nil
}

// Finish waits for the connection to open and runs keyhole's identity
// exchange bound to both DTLS certificates. The dialer requires the peer
// to prove want (if not zero); the other side asks authorize (if not
// nil). On failure the peer connection is left for the caller to close.
func (s *Setup) Finish(ctx context.Context, key *identity.PrivateKey, want identity.PublicKey, authorize func(identity.PublicKey) error) (Conn, error) {
	if key == nil {
		return nil, errors.New("kps: an identity is required on a negotiated connection")
	}
	c, err := s.wait(ctx)
	if err != nil {
		return nil, err
	}
	remote, err := remoteCertDigest(s.pc)
	if err != nil {
		c.shutdown(&ConnError{Code: CodeProtocolError, Reason: "no peer certificate"})
		return nil, err
	}
	local, err := localCertDigest(s.pc)
	if err != nil {
		c.shutdown(&ConnError{Code: CodeProtocolError, Reason: "no local certificate"})
		return nil, err
	}
	if s.dialer {
		c.listenerDigest, c.dialerDigest = remote, local
		pub, err := dialerAuth(ctx, c, key, want)
		if err != nil {
			c.CloseWithError(CodePermissionDenied, "keyhole auth failed")
			return nil, err
		}
		return &authedConn{Conn: c, peer: pub}, nil
	}
	c.listenerDigest, c.dialerDigest = local, remote
	pub, err := listenerAuth(ctx, c, key, authorize)
	if err != nil {
		c.CloseWithError(CodePermissionDenied, "keyhole auth failed")
		return nil, fmt.Errorf("kps: %w", err)
	}
	return &authedConn{Conn: c, peer: pub}, nil
}

// localCertDigest is the SHA-256 of the certificate this side presents
// in DTLS, read from its own fingerprint.
func localCertDigest(pc *webrtc.PeerConnection) ([32]byte, error) {
	sctp := pc.SCTP()
	if sctp == nil {
		return [32]byte{}, errors.New("kps: no DTLS transport")
	}
	params, err := sctp.Transport().GetLocalParameters()
	if err != nil {
		return [32]byte{}, fmt.Errorf("kps: reading the local DTLS parameters: %w", err)
	}
	for _, fp := range params.Fingerprints {
		if strings.EqualFold(fp.Algorithm, "sha-256") {
			raw, err := hex.DecodeString(strings.ReplaceAll(fp.Value, ":", ""))
			if err == nil && len(raw) == sha256.Size {
				return [32]byte(raw), nil
			}
		}
	}
	return [32]byte{}, errors.New("kps: the local certificate has no SHA-256 fingerprint")
}
