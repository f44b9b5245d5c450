package kps

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/keyhole-p2p/keyhole/identity"
	"github.com/keyhole-p2p/keyhole/record"
)

func mustKey(t testing.TB) *identity.PrivateKey {
	t.Helper()
	k, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func tryDial(t testing.TB, a record.KPSAddr, opts DialOptions) (Conn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := DialAddr(ctx, a, opts)
	if c != nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

// TestMutualAuth: both sides learn the other's key, over both transports.
func TestMutualAuth(t *testing.T) {
	server, client := mustKey(t), mustKey(t)
	seen := make(chan identity.PublicKey, 2)
	l := serve(t, Options{Identity: server}, func(c Conn) { seen <- PeerKey(c) })
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			c, err := tryDial(t, l.Address(), DialOptions{Transport: tr, Identity: client, PeerKey: server.Public()})
			if err != nil {
				t.Fatal(err)
			}
			if PeerKey(c) != server.Public() {
				t.Fatalf("dialer sees %s, want %s", PeerKey(c), server.Public())
			}
			if got := <-seen; got != client.Public() {
				t.Fatalf("listener sees %s, want %s", got, client.Public())
			}
		})
	}
}

// TestAuthFailures: every way the identity check can fail is reported
// as the check that failed.
func TestAuthFailures(t *testing.T) {
	server, client, other := mustKey(t), mustKey(t), mustKey(t)
	authed := serve(t, Options{Identity: server}, func(Conn) {})
	refusing := serve(t, Options{Identity: server, Authorize: func(k identity.PublicKey) error {
		return fmt.Errorf("%s is not on the list", k)
	}}, func(Conn) {})
	// A plain KPS echo listener reflects the dialer's own auth message:
	// the role byte must catch it.
	reflecting := echoServer(t, Options{})
	cases := []struct {
		name string
		l    *Listener
		opts DialOptions
		want error
		text string
	}{
		{"listener proves another key", authed, DialOptions{Identity: client, PeerKey: other.Public()}, ErrAuthWrongKey, ""},
		{"listener refuses the dialer", refusing, DialOptions{Identity: client}, ErrAuthRefused, "not on the list"},
		{"plain KPS echo reflects the message", reflecting, DialOptions{Identity: client}, ErrAuthSignature, "reflected"},
	}
	for _, tr := range transports {
		for _, tc := range cases {
			t.Run(tr+"/"+tc.name, func(t *testing.T) {
				tc.opts.Transport = tr
				_, err := tryDial(t, tc.l.Address(), tc.opts)
				if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
					t.Fatalf("got %v, want %v containing %q", err, tc.want, tc.text)
				}
			})
		}
		t.Run(tr+"/dialer without identity is refused", func(t *testing.T) {
			c, err := tryDial(t, authed.Address(), DialOptions{Transport: tr})
			if err != nil {
				t.Fatal(err) // the handshake itself succeeds
			}
			s, err := c.OpenStream(ctxT(t))
			if err != nil {
				t.Fatal(err)
			}
			s.Write(make([]byte, authMsgLen)) // not an auth message
			_, err = io.ReadAll(s)
			var ce *ConnError
			if tr == TransportQUIC && (!errors.As(err, &ce) || ce.Code != CodePermissionDenied) {
				t.Fatalf("got %v, want permission-denied", err)
			}
			if err == nil {
				t.Fatal("a dialer without an identity got through")
			}
		})
	}
}

// TestAuthNotReplayable: a valid auth message from one connection does
// not verify on another, and a forged signature does not verify at all.
func TestAuthNotReplayable(t *testing.T) {
	k := mustKey(t)
	var b1, b2 [32]byte
	b1[0], b2[0] = 1, 2
	for _, mode := range []bindingMode{bindingExporter, bindingFingerprints} {
		msg := authMessage(roleDialer, mode, b1, k)
		if pub, err := parseAuthMessage(msg, roleDialer, mode, b1); err != nil || pub != k.Public() {
			t.Fatalf("positive control: %v", err)
		}
		if _, err := parseAuthMessage(msg, roleDialer, mode, b2); !errors.Is(err, ErrAuthSignature) {
			t.Fatalf("replayed on another binding: %v", err)
		}
		other := bindingExporter + bindingFingerprints - mode
		if _, err := parseAuthMessage(msg, roleDialer, other, b1); !errors.Is(err, ErrAuthSignature) {
			t.Fatalf("accepted under another mode: %v", err)
		}
		forged := append([]byte(nil), msg...)
		forged[len(forged)-1] ^= 1
		if _, err := parseAuthMessage(forged, roleDialer, mode, b1); !errors.Is(err, ErrAuthSignature) {
			t.Fatalf("forged signature: %v", err)
		}
		swapped := append([]byte(nil), msg...)
		copy(swapped[len(authMagic)+2:], func() []byte { p := mustKey(t).Public(); return p[:] }())
		if _, err := parseAuthMessage(swapped, roleDialer, mode, b1); !errors.Is(err, ErrAuthSignature) {
			t.Fatalf("someone else's key on this signature: %v", err)
		}
	}
}

// TestCertHashMismatch: an endpoint that does not hold the certificate
// in the address is refused on both transports, and the error says so.
func TestCertHashMismatch(t *testing.T) {
	l := echoServer(t, Options{})
	wrong := l.Address()
	wrong.CertHash[0] ^= 0xff
	t.Run("quic", func(t *testing.T) {
		_, err := tryDial(t, wrong, DialOptions{Transport: TransportQUIC})
		if !errors.Is(err, ErrCertHashMismatch) {
			t.Fatalf("got %v, want ErrCertHashMismatch", err)
		}
	})
	t.Run("webrtc, listener does not know the certhash", func(t *testing.T) {
		// Its ICE password comes from its own certhash, so it never
		// answers: the dial times out and says the certhash may be wrong.
		_, err := tryDial(t, wrong, DialOptions{Transport: TransportWebRTC, Timeout: 2 * time.Second})
		if err == nil || !strings.Contains(err.Error(), "certhash is wrong") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("webrtc, impostor that knows the address", func(t *testing.T) {
		// The impostor derives ICE passwords from the real certhash (it
		// is public in the address) but presents its own certificate.
		target := wrong.CertHash
		imp := echoServer(t, Options{iceDigest: &target})
		a := imp.Address()
		a.CertHash = target
		_, err := tryDial(t, a, DialOptions{Transport: TransportWebRTC})
		if !errors.Is(err, ErrCertHashMismatch) {
			t.Fatalf("got %v, want ErrCertHashMismatch", err)
		}
	})
}

// TestUnauthenticatedSTUNIsIgnored: a STUN binding request whose
// MESSAGE-INTEGRITY does not verify under the certhash-derived password
// starts no handshake.
func TestUnauthenticatedSTUNIsIgnored(t *testing.T) {
	l := echoServer(t, Options{})
	ufrag := newUfrag()
	good := icePassword(l.CertHash(), ufrag)
	for _, tc := range []struct {
		pwd     string
		pending bool
	}{{"not-the-password", false}, {good, true}} {
		l.onUnhandled(stunRequest(t, ufrag, tc.pwd), l.Address().AddrPort)
		l.mu.Lock()
		started := l.pending[ufrag]
		l.mu.Unlock()
		if started != tc.pending {
			t.Fatalf("password %q: handshake started = %v, want %v", tc.pwd, started, tc.pending)
		}
	}
}

func stunRequest(t testing.TB, ufrag, pwd string) []byte {
	t.Helper()
	m, err := stun.Build(stun.TransactionID, stun.BindingRequest,
		stun.NewUsername(ufrag+":"+ufrag), stun.NewShortTermIntegrity(pwd), stun.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	return m.Raw
}

// TestAuthHastyDialer: a dialer that drops the auth stream the moment it
// has the reply (as a browser may) still gets its connection accepted.
// The listener once took the cancelled end of stream for a failed
// exchange and closed the connection with permission-denied.
func TestAuthHastyDialer(t *testing.T) {
	server, client := mustKey(t), mustKey(t)
	accepted := make(chan identity.PublicKey, 1)
	l := serve(t, Options{Identity: server}, func(c Conn) { accepted <- PeerKey(c) })
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			for i := 0; i < 40; i++ {
				c := dial(t, l, tr, DialOptions{})
				mode, binding, err := c.binding()
				if err != nil {
					t.Fatal(err)
				}
				s, err := c.OpenStream(ctxT(t))
				if err != nil {
					t.Fatal(err)
				}
				s.Write(authMessage(roleDialer, mode, binding, client))
				s.CloseWrite()
				reply := make([]byte, authMsgLen)
				if _, err := io.ReadFull(s, reply); err != nil {
					t.Fatalf("reading the reply: %v", err)
				}
				s.CancelRead(CodeClosed)
				s.Reset(CodeClosed)
				select {
				case got := <-accepted:
					if got != client.Public() {
						t.Fatalf("listener sees %s", got)
					}
				case <-c.Context().Done():
					t.Fatalf("round %d: the listener closed the connection: %v", i, context.Cause(c.Context()))
				case <-time.After(10 * time.Second):
					t.Fatalf("round %d: the listener never accepted", i)
				}
				c.Close()
			}
		})
	}
}
