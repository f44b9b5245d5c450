package client

// The blindness proof (ORP sections 2.1 and 11): real sessions through a
// real board, with everything the board received, sent and logged
// captured and searched for every secret of the session in every
// encoding; the wire proof: every UDP datagram the process sent and
// received, searched for the data channel's plaintext and the keys; and
// the candidate policy as the peer sees it (section 2.2).

import (
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/keyhole-p2p/keyhole/board"
	"github.com/keyhole-p2p/keyhole/board/wire"
	"github.com/keyhole-p2p/keyhole/identity"
)

// sdpInfo is what an SDP says about its device.
type sdpInfo struct {
	fingerprint string // sha-256 value, colon hex
	ufrag, pwd  string
	candidates  []string // "candidate:..." as in the a= line
}

func parseSDP(s string) sdpInfo {
	var in sdpInfo
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimRight(l, "\r")
		switch {
		case strings.HasPrefix(l, "a=fingerprint:"):
			f := strings.Fields(strings.TrimPrefix(l, "a=fingerprint:"))
			if len(f) == 2 {
				in.fingerprint = f[1]
			}
		case strings.HasPrefix(l, "a=ice-ufrag:"):
			in.ufrag = strings.TrimPrefix(l, "a=ice-ufrag:")
		case strings.HasPrefix(l, "a=ice-pwd:"):
			in.pwd = strings.TrimPrefix(l, "a=ice-pwd:")
		case strings.HasPrefix(l, "a=candidate:"):
			in.candidates = append(in.candidates, strings.TrimPrefix(l, "a="))
		}
	}
	return in
}

// candidate is the parsed form of one candidate attribute.
type candidate struct {
	addr, port, typ string
	ext             map[string]string
}

func parseCandidate(c string) candidate {
	f := strings.Fields(c)
	out := candidate{ext: map[string]string{}}
	if len(f) < 8 {
		return out
	}
	out.addr, out.port, out.typ = f[4], f[5], f[7]
	for i := 8; i+1 < len(f); i += 2 {
		out.ext[f[i]] = f[i+1]
	}
	return out
}

// dtlsKey is a peer connection's DTLS certificate: its private key and
// fingerprint.
type dtlsKey struct {
	pkcs8, scalar []byte
	pemKey        string
	fingerprint   string
}

func dtlsKeyOf(t *testing.T, s *Session) dtlsKey {
	t.Helper()
	certs := s.PC.GetConfiguration().Certificates
	if len(certs) != 1 {
		t.Fatalf("%d DTLS certificates", len(certs))
	}
	p, err := certs[0].PEM()
	if err != nil {
		t.Fatal(err)
	}
	var k dtlsKey
	rest := []byte(p)
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type == "PRIVATE KEY" {
			k.pkcs8 = blk.Bytes
			k.pemKey = string(pem.EncodeToMemory(blk))
		}
	}
	priv, err := x509.ParsePKCS8PrivateKey(k.pkcs8)
	if err != nil {
		t.Fatal(err)
	}
	ec, ok := priv.(*ecdsa.PrivateKey)
	if !ok {
		t.Fatalf("DTLS key is a %T", priv)
	}
	eh, err := ec.ECDH()
	if err != nil {
		t.Fatal(err)
	}
	k.scalar = eh.Bytes()
	fps, err := certs[0].GetFingerprints()
	if err != nil {
		t.Fatal(err)
	}
	for _, fp := range fps {
		if fp.Algorithm == "sha-256" {
			k.fingerprint = strings.ToUpper(fp.Value)
		}
	}
	return k
}

// blindRun is one real session and everything the board and the wire
// saw of it.
type blindRun struct {
	relay          bool
	b              *testBoard
	tap            *tapLog
	logs           *lockedBuffer
	a, z           *identity.PrivateKey
	ta, tz         *identity.TransportKey
	sa, sz         *Session
	localA, localZ string
	keyA, keyZ     dtlsKey
	netA, netZ     *recNet
	plain          [][]byte
	bulk           int // bytes of DTLS application data A sent for bulkSize bytes of plaintext
}

const bulkSize = 48 << 10

func runBlind(t *testing.T, relay bool) *blindRun {
	t.Helper()
	r := &blindRun{relay: relay, tap: &tapLog{}, logs: &lockedBuffer{}}
	// An unreachable neighbour makes the board log (at Debug) while the
	// session runs, so the log capture is known to be live.
	r.b = startBoard(t, board.Options{Tap: r.tap.tap, Logger: debugLogger(r.logs),
		PublicURL: "ws://board.test/", Peers: []string{"ws://127.0.0.1:9/"}})
	r.a, r.z = mustKey(t), mustKey(t)
	r.ta, r.tz = mustTK(t), mustTK(t)
	r.netA, r.netZ = newRecNet(t), newRecNet(t)
	oa := Options{Identity: r.a, TransportKey: r.ta, WebRTC: withNet(r.netA, relay)}
	oz := Options{Identity: r.z, TransportKey: r.tz, WebRTC: withNet(r.netZ, relay)}
	if relay {
		oa.RelayOnly, oa.ICEServers = true, turnServer(r.b)
		oz.RelayOnly, oz.ICEServers = true, turnServer(r.b)
	}
	ca, cz := dialBoard(t, r.b, oa), dialBoard(t, r.b, oz)
	r.sa, r.sz = pair(t, ca, cz)

	for _, dir := range []struct {
		tag      string
		from, to *Session
	}{{"A->Z", r.sa, r.sz}, {"Z->A", r.sz, r.sa}} {
		msg := []byte(fmt.Sprintf("keyhole plaintext %s %s: the board must never read this line", dir.tag, hex.EncodeToString(randBytes(12))))
		exchange(t, dir.from, dir.to, msg)
		r.plain = append(r.plain, msg)
	}
	before := appDataBytes(r.netA, true)
	bulk := make([]byte, bulkSize)
	for i := range bulk {
		bulk[i] = "keyhole-bulk-"[i%13]
	}
	exchange(t, r.sa, r.sz, bulk)
	r.bulk = appDataBytes(r.netA, true) - before

	r.localA, r.localZ = r.sa.PC.LocalDescription().SDP, r.sz.PC.LocalDescription().SDP
	r.keyA, r.keyZ = dtlsKeyOf(t, r.sa), dtlsKeyOf(t, r.sz)

	// The board's last messages (the answer's relay, channel_closed)
	// reach the Tap just after the device has them.
	deadline := time.Now().Add(5 * time.Second)
	for r.tap.count(false, func(e *wire.Envelope, _ *wire.Frame) bool { return e.Kind == wire.KindChannelClosed }) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the board never closed the channel")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return r
}

// sdpSecrets are the parts of an SDP that would give a device away:
// the whole text, the DTLS fingerprint (as text and as bytes), the ICE
// credentials, every candidate line and every address in one.
func sdpSecrets(t *testing.T, who, sdp string) []secret {
	t.Helper()
	in := parseSDP(sdp)
	if in.fingerprint == "" || in.ufrag == "" || in.pwd == "" || len(in.candidates) == 0 {
		t.Fatalf("%s: an SDP without fingerprint, credentials or candidates:\n%s", who, sdp)
	}
	fp, err := hex.DecodeString(strings.ReplaceAll(in.fingerprint, ":", ""))
	if err != nil || len(fp) != 32 {
		t.Fatalf("%s: fingerprint %q", who, in.fingerprint)
	}
	out := []secret{
		textSecret(who+" SDP", sdp),
		textSecret(who+" fingerprint", in.fingerprint),
		binSecret(who+" fingerprint bytes", fp),
		textSecret(who+" ice-ufrag", in.ufrag),
		textSecret(who+" ice-pwd", in.pwd),
	}
	for i, c := range in.candidates {
		out = append(out, textSecret(fmt.Sprintf("%s candidate %d", who, i), c))
		p := parseCandidate(c)
		out = append(out, textSecret(fmt.Sprintf("%s address %s %s", who, p.addr, p.port), p.addr+" "+p.port))
		if ra := p.ext["raddr"]; ra != "" && ra != "0.0.0.0" {
			out = append(out, textSecret(fmt.Sprintf("%s raddr %s %s", who, ra, p.ext["rport"]), "raddr "+ra+" rport "+p.ext["rport"]))
		}
	}
	return out
}

// keySecrets are the private keys of both devices.
func (r *blindRun) keySecrets() []secret {
	ax, zx := r.a.X25519(), r.z.X25519()
	sa, sz := r.ta.Secret(), r.tz.Secret()
	return []secret{
		binSecret("A identity seed", r.a.Seed()),
		binSecret("Z identity seed", r.z.Seed()),
		binSecret("A identity scalar", ax[:]),
		binSecret("Z identity scalar", zx[:]),
		binSecret("A transport secret", sa[:]),
		binSecret("Z transport secret", sz[:]),
		binSecret("A DTLS private key", r.keyA.scalar),
		binSecret("Z DTLS private key", r.keyZ.scalar),
		binSecret("A DTLS PKCS8", r.keyA.pkcs8),
		binSecret("Z DTLS PKCS8", r.keyZ.pkcs8),
		textSecret("A DTLS PEM", r.keyA.pemKey),
		textSecret("Z DTLS PEM", r.keyZ.pemKey),
	}
}

func (r *blindRun) plainSecrets() []secret {
	var out []secret
	for i, p := range r.plain {
		out = append(out, textSecret(fmt.Sprintf("plaintext %d", i), string(p)))
	}
	return out
}

// boardSecrets is everything the board must not learn.
func (r *blindRun) boardSecrets(t *testing.T) []secret {
	out := []secret{textSecret("host IP", hostIP)}
	out = append(out, sdpSecrets(t, "A local", r.localA)...)
	out = append(out, sdpSecrets(t, "Z local", r.localZ)...)
	out = append(out, sdpSecrets(t, "A sent", r.sz.RemoteSDP)...)
	out = append(out, sdpSecrets(t, "Z sent", r.sa.RemoteSDP)...)
	out = append(out, r.keySecrets()...)
	out = append(out, r.plainSecrets()...)
	return dedupeSecrets(out)
}

func dedupeSecrets(in []secret) []secret {
	seen := map[string]bool{}
	var out []secret
	for _, s := range in {
		if seen[string(s.raw)] {
			continue
		}
		seen[string(s.raw)] = true
		out = append(out, s)
	}
	return out
}

// appDataBytes sums the DTLS application data datagrams one recorded
// network sent (out) or received, bare or inside TURN ChannelData.
func appDataBytes(n *recNet, out bool) int {
	sum := 0
	for _, d := range n.datagrams() {
		if d.out == out && dtlsType(d.b) == 23 {
			sum += len(d.b)
		}
	}
	return sum
}

// dtlsType is the content type of the first DTLS 1.2 record in a
// datagram (unwrapping TURN ChannelData), or 0.
func dtlsType(b []byte) byte {
	if len(b) >= 4 && b[0] >= 0x40 && b[0] <= 0x7f {
		b = b[4:]
	}
	if len(b) >= 13 && b[0] >= 20 && b[0] <= 25 && b[1] == 0xfe && (b[2] == 0xfd || b[2] == 0xff) {
		return b[0]
	}
	return 0
}

func isChannelData(b []byte) bool { return len(b) >= 4 && b[0] >= 0x40 && b[0] <= 0x7f }

func TestBlindness(t *testing.T) {
	for _, mode := range []struct {
		name  string
		relay bool
	}{{"direct", false}, {"relay-only", true}} {
		t.Run(mode.name, func(t *testing.T) {
			r := runBlind(t, mode.relay)
			traffic := joinCapture(r.tap.all())
			logs := r.logs.Bytes()
			secrets := r.boardSecrets(t)

			// The capture is the whole rendezvous: both transport keys
			// and both sealed SDPs, in and out, and each box is the
			// SDP its recipient used, opening only with its key.
			t.Run("capture is complete", func(t *testing.T) {
				for _, in := range []bool{true, false} {
					if n := r.tap.count(in, isSignaling); n != 2 {
						t.Errorf("in=%v: %d signaling frames, want 2", in, n)
					}
					if n := r.tap.count(in, func(e *wire.Envelope, f *wire.Frame) bool {
						return e.Kind == wire.KindRelay && f.Phase == wire.PhaseKey && f.Binding != nil
					}); n != 2 {
						t.Errorf("in=%v: %d key frames, want 2", in, n)
					}
				}
				for _, e := range r.tap.envelopes(false) {
					if e.Kind != wire.KindRelay {
						continue
					}
					f := frameOf(t, e)
					if f.Phase != wire.PhaseSignaling {
						continue
					}
					to, other, want := r.tz, r.ta, r.sz.RemoteSDP
					if e.FrameKind == wire.FrameAnswer {
						to, other, want = r.ta, r.tz, r.sa.RemoteSDP
					}
					p, err := openFrame(f, to)
					if err != nil || p.SDP != want {
						t.Fatalf("the captured %s does not open to the SDP its recipient used: %v", e.FrameKind, err)
					}
					if _, err := openFrame(f, other); err == nil {
						t.Fatalf("the captured %s opens with the sender's own transport key", e.FrameKind)
					}
					if _, err := openFrame(f, mustTK(t)); err == nil {
						t.Fatalf("the captured %s opens with an unrelated key", e.FrameKind)
					}
				}
			})
			t.Run("every secret is known", func(t *testing.T) {
				// The list is only as good as the SDPs it came from:
				// both sides' local SDPs carry their candidates, and
				// in direct mode the host candidate at hostIP.
				if n := len(secrets); n < 30 {
					t.Fatalf("only %d secrets", n)
				}
				for _, l := range []string{r.localA, r.localZ} {
					if mode.relay != !strings.Contains(l, hostIP) {
						t.Fatalf("relay=%v, local SDP host candidates:\n%s", mode.relay, l)
					}
				}
				if r.keyA.fingerprint != parseSDP(r.localA).fingerprint || r.keyA.fingerprint != parseSDP(r.sz.RemoteSDP).fingerprint {
					t.Fatalf("A's DTLS key (%s) is not the one its SDP pins", r.keyA.fingerprint)
				}
				if r.keyZ.fingerprint != parseSDP(r.localZ).fingerprint || r.keyZ.fingerprint != parseSDP(r.sa.RemoteSDP).fingerprint {
					t.Fatalf("Z's DTLS key (%s) is not the one its SDP pins", r.keyZ.fingerprint)
				}
			})
			t.Run("board traffic leaks nothing", func(t *testing.T) {
				if leaks := newScanner(secrets...).leaked(traffic); len(leaks) != 0 {
					t.Fatalf("the board saw: %v", leaks)
				}
			})
			t.Run("board log leaks nothing", func(t *testing.T) {
				if !strings.Contains(string(logs), "level=DEBUG") || !strings.Contains(string(logs), `"level":"DEBUG"`) {
					t.Fatalf("the log capture is not live (text and JSON at Debug):\n%s", logs)
				}
				if leaks := newScanner(secrets...).leaked(logs); len(leaks) != 0 {
					t.Fatalf("the board logged: %v\n%s", leaks, logs)
				}
			})
			// Positive control: each secret planted in a copy of this
			// very capture, in each leak form, is found.
			t.Run("scanner finds planted secrets", func(t *testing.T) {
				sc := newScanner(secrets...)
				for _, lf := range leakForms {
					var leaks [][]byte
					var want []string
					for _, s := range secrets {
						if lf.textOnly && !s.text {
							continue
						}
						leaks = append(leaks, lf.leak(s.raw))
						want = append(want, s.name)
					}
					got := sc.leaked(plantAll(traffic, leaks))
					for _, w := range want {
						if len(got[w]) == 0 {
							t.Errorf("%s: %s planted, not found", lf.name, w)
						}
					}
				}
			})
			t.Run("wire carries no plaintext or key", func(t *testing.T) {
				wire := append(r.netA.capture(), r.netZ.capture()...)
				sc := newScanner(append(r.plainSecrets(), r.keySecrets()...)...)
				if leaks := sc.leaked(wire); len(leaks) != 0 {
					t.Fatalf("on the wire: %v", leaks)
				}
			})
			t.Run("wire capture is the session", func(t *testing.T) {
				for _, n := range []*recNet{r.netA, r.netZ} {
					var in, out, stun, hs, app, cd int
					for _, d := range n.datagrams() {
						if d.out {
							out++
						} else {
							in++
						}
						switch {
						case isSTUN(d.b):
							stun++
						case dtlsType(d.b) == 22:
							hs++
						case dtlsType(d.b) == 23:
							app++
						}
						if isChannelData(d.b) {
							cd++
						}
					}
					if in == 0 || out == 0 || stun == 0 || hs == 0 || app == 0 {
						t.Fatalf("datagrams in=%d out=%d stun=%d handshake=%d appdata=%d", in, out, stun, hs, app)
					}
					if mode.relay && cd == 0 {
						t.Fatal("relay-only, yet no TURN ChannelData datagram")
					}
				}
				// The devices checked each other's candidates directly
				// (what a tampered-SDP test looks for), unless relayed.
				if !mode.relay {
					for _, n := range []*recNet{r.netA, r.netZ} {
						if outboundChecks(n, r.b.stun.Addr().String()) == 0 {
							t.Fatal("no connectivity check toward the peer was recorded")
						}
					}
				}
				// The bulk transfer travelled through the recorded
				// sockets, as DTLS application data.
				if r.bulk < bulkSize {
					t.Fatalf("%d bytes of plaintext went out as %d bytes of application data", bulkSize, r.bulk)
				}
			})
			if mode.relay {
				t.Run("relay-only data flows via TURN only", func(t *testing.T) {
					turn := r.b.stun.Addr().String()
					for _, n := range []*recNet{r.netA, r.netZ} {
						for _, d := range n.datagrams() {
							if dtlsType(d.b) != 0 && d.remote != turn {
								t.Fatalf("DTLS datagram with %s, not the TURN server %s", d.remote, turn)
							}
						}
					}
				})
			}
			t.Run("peer sees the candidate policy", func(t *testing.T) {
				for _, c := range []struct {
					who             string
					remote          string
					senderNet       *recNet
					senderLocalSDP  string
					receiverSession *Session
				}{{"A", r.sz.RemoteSDP, r.netA, r.localA, r.sz}, {"Z", r.sa.RemoteSDP, r.netZ, r.localZ, r.sa}} {
					checkPolicy(t, c.who, c.remote, mode.relay)
					// The device's own sockets: in relay-only mode the
					// peer must not see any of them (only the TURN
					// server's relay addresses).
					if mode.relay {
						for _, la := range c.senderNet.localAddrs() {
							host, port, _ := net.SplitHostPort(la)
							if strings.Contains(c.remote, " "+port+" typ") {
								t.Errorf("%s's socket %s (%s) is in what the peer saw:\n%s", c.who, la, host, c.remote)
							}
						}
					}
					// The peer's view is a strict subset of the local
					// SDP's candidates.
					if n, m := len(parseSDP(c.remote).candidates), len(parseSDP(c.senderLocalSDP).candidates); n == 0 || n >= m && !mode.relay {
						t.Errorf("%s: the peer saw %d of %d candidates", c.who, n, m)
					}
				}
			})
		})
	}
}

// checkPolicy: what the peer saw of a device keeps only srflx (or, in
// relay-only mode, relay) candidates, each with raddr/rport scrubbed, no
// host address, and no local address in c=, o= or a=rtcp lines.
func checkPolicy(t *testing.T, who, remote string, relay bool) {
	t.Helper()
	in := parseSDP(remote)
	if len(in.candidates) == 0 {
		t.Fatalf("%s: no candidate at all:\n%s", who, remote)
	}
	want := "srflx"
	if relay {
		want = "relay"
	}
	for _, c := range in.candidates {
		p := parseCandidate(c)
		if p.typ != want {
			t.Errorf("%s: a %s candidate, want only %s: %s", who, p.typ, want, c)
		}
		if p.ext["raddr"] != "0.0.0.0" || p.ext["rport"] != "0" {
			t.Errorf("%s: raddr/rport not scrubbed: %s", who, c)
		}
		if p.addr == hostIP {
			t.Errorf("%s: the host address: %s", who, c)
		}
	}
	for _, bad := range []string{hostIP, "typ host", "a=rtcp:", ".local"} {
		if strings.Contains(remote, bad) {
			t.Errorf("%s: %q in what the peer saw", who, bad)
		}
	}
	if relay && strings.Contains(remote, "typ srflx") {
		t.Errorf("%s: a server-reflexive candidate in relay-only mode", who)
	}
	for _, l := range strings.Split(remote, "\r\n") {
		if (strings.HasPrefix(l, "c=") || strings.HasPrefix(l, "o=")) && !strings.HasSuffix(l, "IN IP4 0.0.0.0") {
			t.Errorf("%s: %q names an address", who, l)
		}
	}
}

// TestBlindnessControlLeakyPeer is the protocol-level positive control:
// a responder that "forgets" to seal (its sealed field carries the
// payload base64url-encoded, re-signed so the board relays it) is
// caught by the same scanner on the same kind of capture, and its
// initiator refuses the frame.
func TestBlindnessControlLeakyPeer(t *testing.T) {
	tap, logs := &tapLog{}, &lockedBuffer{}
	b := startBoard(t, board.Options{Tap: tap.tap, Logger: debugLogger(logs)})
	a, z := mustKey(t), mustKey(t)
	ta, tz := mustTK(t), mustTK(t)
	var mu sync.Mutex
	var leakedSDP string
	oz := Options{Identity: z, TransportKey: tz, ConnectTimeout: time.Second, tamper: func(phase string, f *wire.Frame) {
		if phase != wire.PhaseSignaling {
			return
		}
		p, err := openFrame(f, ta)
		if err != nil {
			return
		}
		pt, _ := json.Marshal(p)
		f.Sealed = wire.B64.EncodeToString(pt)
		if wire.Sign(f, z) != nil {
			return
		}
		mu.Lock()
		leakedSDP = p.SDP
		mu.Unlock()
	}}
	ca := dialBoard(t, b, Options{Identity: a, TransportKey: ta})
	cz := dialBoard(t, b, oz)
	acc, cancel := goBG(t, 30*time.Second, cz.Accept)
	waitPresence(t, cz)
	_, err := ca.Connect(ctxT(t, 20*time.Second), z.Public())
	wantErr(t, err, ErrPeerCheck)
	cancel()
	wait(t, acc, 10*time.Second)

	mu.Lock()
	sdp := leakedSDP
	mu.Unlock()
	if sdp == "" {
		t.Fatal("the leaky responder never sent its answer")
	}
	// Everything the SDP spells out (its fingerprint as text: the bytes
	// themselves are not in it).
	var leaked []secret
	for _, s := range sdpSecrets(t, "Z sent", sdp) {
		if !strings.HasSuffix(s.name, "fingerprint bytes") {
			leaked = append(leaked, s)
		}
	}
	traffic := joinCapture(tap.all())
	got := newScanner(leaked...).leaked(traffic)
	for _, s := range leaked {
		if len(got[s.name]) == 0 {
			t.Errorf("the unsealed answer went through the board, yet %s was not found", s.name)
		}
	}
	// What was not leaked is still not found: the keys, and the
	// initiator's sealed offer.
	za, zz := ta.Secret(), tz.Secret()
	clean := newScanner(binSecret("A seed", a.Seed()), binSecret("Z seed", z.Seed()), binSecret("A transport", za[:]), binSecret("Z transport", zz[:]))
	if leaks := clean.leaked(append(traffic, logs.Bytes()...)); len(leaks) != 0 {
		t.Fatalf("keys in the capture: %v", leaks)
	}
}

// TestWireCaptureSeesRawDatagram is the wire scanner's positive
// control: plaintext sent as a bare UDP datagram through the recording
// network is found, in both directions.
func TestWireCaptureSeesRawDatagram(t *testing.T) {
	n := newRecNet(t)
	a, err := n.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	z, err := n.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	msg := []byte("keyhole plaintext on the wire " + hex.EncodeToString(randBytes(8)))
	if _, err := a.WriteTo(msg, z.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	z.SetReadDeadline(time.Now().Add(5 * time.Second))
	k, _, err := z.ReadFrom(buf)
	if err != nil || string(buf[:k]) != string(msg) {
		t.Fatalf("read %q, %v", buf[:k], err)
	}
	ds := n.datagrams()
	if len(ds) != 2 || !ds[0].out || ds[1].out {
		t.Fatalf("recorded %d datagrams: %+v", len(ds), ds)
	}
	sc := newScanner(textSecret("plaintext", string(msg)))
	if len(sc.leaked(n.capture())["plaintext"]) == 0 {
		t.Fatal("the scanner missed a plaintext datagram")
	}
	// And sealed, it is not found: the scanner looks at content.
	box := sealTo(t, mustTK(t).Public(), wire.SealedPayload{SDP: string(msg)})
	if len(sc.leaked([]byte(box))) != 0 {
		t.Fatal("the plaintext was found inside a sealed box")
	}
}

// TestRelayOnlyFailsClosed: a relay-only device that cannot get a relay
// candidate never falls back to revealing its address: it sends no
// signaling frame at all.
func TestRelayOnlyFailsClosed(t *testing.T) {
	for _, c := range []struct {
		name    string
		servers func(*testBoard) []webrtc.ICEServer
	}{
		{"wrong TURN password", func(b *testBoard) []webrtc.ICEServer {
			s := turnServer(b)
			s[0].Credential = "wrong"
			return s
		}},
		{"no TURN server", func(*testBoard) []webrtc.ICEServer { return nil }},
	} {
		t.Run(c.name, func(t *testing.T) {
			tap := &tapLog{}
			b := startBoard(t, board.Options{Tap: tap.tap})
			a, z := mustKey(t), mustKey(t)
			ca := dialBoard(t, b, Options{Identity: a, RelayOnly: true, ICEServers: c.servers(b), WebRTC: loopbackRelay})
			cz := dialBoard(t, b, Options{Identity: z})
			goBG(t, 30*time.Second, cz.Accept)
			waitPresence(t, cz)
			_, err := ca.Connect(ctxT(t, 20*time.Second), z.Public())
			if err == nil || !strings.Contains(err.Error(), "relay-only") {
				t.Fatalf("got %v, want the relay-only failure", err)
			}
			if n := tap.count(true, isSignaling); n != 0 {
				t.Fatalf("%d signaling frames sent", n)
			}
			if n := tap.count(true, func(e *wire.Envelope, f *wire.Frame) bool {
				return e.Kind == wire.KindRelay && f.Phase == wire.PhaseKey
			}); n != 2 {
				t.Fatalf("%d key frames; the failure should come after the KEY phase", n)
			}
		})
	}
}
