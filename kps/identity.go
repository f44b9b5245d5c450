package kps

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/keyhole-p2p/keyhole/internal/atomicfile"
	"github.com/keyhole-p2p/keyhole/record"
)

// Certificate is a listener's identity: one self-signed ECDSA P-256
// certificate (the only kind browsers accept for WebRTC) presented by
// both transports. Following the KPS specification it carries no
// identifying metadata: an empty subject and a random serial.
type Certificate struct {
	tls    tls.Certificate
	rtc    webrtc.Certificate
	der    []byte
	digest [32]byte
}

// NewCertificate makes a fresh certificate.
func NewCertificate() (*Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("kps: generating a key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, err
	}
	notBefore := time.Now().Add(-time.Hour)
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		NotBefore:    notBefore,
		NotAfter:     notBefore.AddDate(10, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("kps: creating the certificate: %w", err)
	}
	return certificateFrom(der, key)
}

func certificateFrom(der []byte, key *ecdsa.PrivateKey) (*Certificate, error) {
	x, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("kps: parsing the certificate: %w", err)
	}
	if _, ok := x.PublicKey.(*ecdsa.PublicKey); !ok || !key.PublicKey.Equal(x.PublicKey) {
		return nil, errors.New("kps: the certificate does not belong to the key")
	}
	return &Certificate{
		tls:    tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: x},
		rtc:    webrtc.CertificateFromX509(key, x),
		der:    der,
		digest: record.CertHashOf(der),
	}, nil
}

// CertHash is the SHA-256 of the certificate's DER bytes.
func (c *Certificate) CertHash() [32]byte { return c.digest }

// DER is the certificate.
func (c *Certificate) DER() []byte { return c.der }

// PEM encodes the key (PKCS#8) and the certificate, the KPS Go key-file form.
func (c *Certificate) PEM() ([]byte, error) {
	k, err := x509.MarshalPKCS8PrivateKey(c.tls.PrivateKey)
	if err != nil {
		return nil, err
	}
	out := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: k})
	return append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.der})...), nil
}

// CertificateFromPEM reads what PEM wrote.
func CertificateFromPEM(b []byte) (*Certificate, error) {
	var der []byte
	var key *ecdsa.PrivateKey
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		switch blk.Type {
		case "CERTIFICATE":
			der = blk.Bytes
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("kps: private key: %w", err)
			}
			ek, ok := k.(*ecdsa.PrivateKey)
			if !ok || ek.Curve != elliptic.P256() {
				return nil, errors.New("kps: the key must be ECDSA P-256 (the only kind browsers accept)")
			}
			key = ek
		}
	}
	if der == nil || key == nil {
		return nil, errors.New("kps: the file needs a PRIVATE KEY and a CERTIFICATE block")
	}
	return certificateFrom(der, key)
}

// LoadOrCreateCertificate reads the certificate at path, or makes one and
// stores it there (mode 0600, written atomically), so a listener keeps its
// certhash across restarts.
func LoadOrCreateCertificate(path string) (*Certificate, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		c, err := CertificateFromPEM(b)
		if err != nil {
			return nil, fmt.Errorf("%w (in %s; delete it to make a new one, which changes the certhash)", err, path)
		}
		return c, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("kps: %w", err)
	}
	c, err := NewCertificate()
	if err != nil {
		return nil, err
	}
	p, err := c.PEM()
	if err != nil {
		return nil, err
	}
	if err := atomicfile.Create(path, p, 0o600); err != nil {
		return nil, fmt.Errorf("kps: storing the certificate in %s: %w", path, err)
	}
	return c, nil
}
