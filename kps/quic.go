package kps

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"time"

	"github.com/quic-go/quic-go"
)

// alpn is deliberately non-identifying (SPEC section 5.3).
const alpn = "h3"

// exporterLabel is the RFC 5705 label of keyhole's channel binding.
const exporterLabel = "EXPORTER-keyhole-auth-v1"

func quicConfig() *quic.Config {
	return &quic.Config{
		EnableDatagrams:        true,
		KeepAlivePeriod:        15 * time.Second, // KPS sets none, so idle connections died at 30 s
		MaxIdleTimeout:         45 * time.Second,
		MaxIncomingStreams:     4096,
		HandshakeIdleTimeout:   10 * time.Second,
		MaxStreamReceiveWindow: 6 << 20,
	}
}

func serverTLS(c *Certificate) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{c.tls},
		NextProtos:   []string{alpn},
		MinVersion:   tls.VersionTLS13,
	}
}

// clientTLS pins the certhash and does no PKI validation.
func clientTLS(digest [32]byte) *tls.Config {
	return &tls.Config{
		NextProtos:         []string{alpn},
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // replaced by the pin below
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return ErrCertHashMismatch
			}
			got := sha256.Sum256(raw[0])
			if subtle.ConstantTimeCompare(got[:], digest[:]) != 1 {
				return ErrCertHashMismatch
			}
			return nil
		},
	}
}

type quicConn struct {
	c *quic.Conn
}

func (q *quicConn) OpenStream(ctx context.Context) (Stream, error) {
	s, err := q.c.OpenStreamSync(ctx)
	if err != nil {
		return nil, q.mapErr(err)
	}
	return &quicStream{s: s, conn: q}, nil
}

func (q *quicConn) AcceptStream(ctx context.Context) (Stream, error) {
	s, err := q.c.AcceptStream(ctx)
	if err != nil {
		return nil, q.mapErr(err)
	}
	return &quicStream{s: s, conn: q}, nil
}

func (q *quicConn) SendDatagram(p []byte) error {
	err := q.c.SendDatagram(p)
	var tl *quic.DatagramTooLargeError
	if errors.As(err, &tl) {
		return &DatagramTooLargeError{MaxDatagramPayloadSize: int(tl.MaxDatagramPayloadSize)}
	}
	return q.mapErr(err)
}

func (q *quicConn) ReceiveDatagram(ctx context.Context) ([]byte, error) {
	p, err := q.c.ReceiveDatagram(ctx)
	return p, q.mapErr(err)
}

func (q *quicConn) CloseWithError(code ErrorCode, reason string) error {
	return q.c.CloseWithError(quic.ApplicationErrorCode(code), reason)
}

func (q *quicConn) Close() error             { return q.CloseWithError(CodeNone, "") }
func (q *quicConn) Context() context.Context { return q.c.Context() }
func (q *quicConn) Transport() string        { return TransportQUIC }
func (q *quicConn) RemoteAddr() net.Addr     { return q.c.RemoteAddr() }
func (q *quicConn) LocalAddr() net.Addr      { return q.c.LocalAddr() }

func (q *quicConn) binding() (bindingMode, [32]byte, error) {
	var out [32]byte
	st := q.c.ConnectionState().TLS
	b, err := st.ExportKeyingMaterial(exporterLabel, nil, 32)
	if err != nil {
		return 0, out, err
	}
	copy(out[:], b)
	return bindingExporter, out, nil
}

// mapErr turns quic-go's errors into the package's.
func (q *quicConn) mapErr(err error) error {
	if err == nil {
		return nil
	}
	var ae *quic.ApplicationError
	if errors.As(err, &ae) {
		return &ConnError{Code: ErrorCode(ae.ErrorCode).Normalize(), Reason: ae.ErrorMessage, Remote: ae.Remote}
	}
	return err
}

type quicStream struct {
	s    *quic.Stream
	conn *quicConn
}

func (s *quicStream) Read(p []byte) (int, error) {
	n, err := s.s.Read(p)
	return n, s.mapErr(err)
}

func (s *quicStream) Write(p []byte) (int, error) {
	n, err := s.s.Write(p)
	return n, s.mapErr(err)
}

func (s *quicStream) CloseWrite() error         { return s.mapErr(s.s.Close()) }
func (s *quicStream) CancelRead(code ErrorCode) { s.s.CancelRead(quic.StreamErrorCode(code)) }
func (s *quicStream) Reset(code ErrorCode)      { s.s.CancelWrite(quic.StreamErrorCode(code)) }

func (s *quicStream) Close() error {
	s.s.CancelRead(quic.StreamErrorCode(CodeClosed))
	return s.mapErr(s.s.Close())
}

func (s *quicStream) mapErr(err error) error {
	var se *quic.StreamError
	if errors.As(err, &se) {
		return &StreamError{Code: ErrorCode(se.ErrorCode).Normalize(), Remote: se.Remote}
	}
	return s.conn.mapErr(err)
}
