// Package rawquic is the plain quic-go peer the benchmarks measure keyhole
// against: a listener and a dialer with the same knobs as kps's QUIC, so
// a ratio measures kps and not a different configuration.
package rawquic

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"time"

	"github.com/quic-go/quic-go"
)

// Config has the knobs of kps's quic.Config (kps/quic.go).
func Config() *quic.Config {
	return &quic.Config{
		EnableDatagrams:        true,
		KeepAlivePeriod:        15 * time.Second,
		MaxIdleTimeout:         45 * time.Second,
		MaxIncomingStreams:     4096,
		HandshakeIdleTimeout:   10 * time.Second,
		MaxStreamReceiveWindow: 6 << 20,
	}
}

// selfSigned is an ECDSA P-256 certificate, the kind kps presents.
func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

const alpn = "bench"

// Listen is a quic-go listener on 127.0.0.1 with a fresh certificate.
func Listen() (*quic.Listener, error) {
	cert, err := selfSigned()
	if err != nil {
		return nil, err
	}
	return quic.ListenAddr("127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{alpn},
		MinVersion:   tls.VersionTLS13,
	}, Config())
}

// Dial connects to a Listen listener.
func Dial(ctx context.Context, addr string) (*quic.Conn, error) {
	return quic.DialAddr(ctx, addr, &tls.Config{
		NextProtos:         []string{alpn},
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // loopback bench; kps pins a certhash instead
	}, Config())
}

// Serve hands every stream of every connection ln accepts to handle, in
// its own goroutine, until ctx ends or ln closes.
func Serve(ctx context.Context, ln *quic.Listener, handle func(*quic.Stream)) {
	for {
		c, err := ln.Accept(ctx)
		if err != nil {
			return
		}
		go func() {
			for {
				s, err := c.AcceptStream(ctx)
				if err != nil {
					return
				}
				go handle(s)
			}
		}()
	}
}
