package client

// Adversarial tests (ORP sections 3.2, 5 and 11): a hostile board
// (scripted, or a man in the middle in front of the real board) and a
// hostile peer (the tamper hook) try transport-key substitution, forged
// bindings and signatures, frames from the wrong sender or match,
// tampered and re-addressed sealed boxes, replays, early answers,
// malformed messages and closed channels. Each must end the rendezvous
// with the right error, and the device must never have sealed anything
// to a key it did not verify, nor applied an SDP it did not open.

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/keyhole-p2p/keyhole/board"
	"github.com/keyhole-p2p/keyhole/board/wire"
	"github.com/keyhole-p2p/keyhole/identity"
	"github.com/keyhole-p2p/keyhole/seal"
)

// forgedSDP is a well-formed SDP whose only candidate is sink: if the
// device applies it, its ICE agent sends STUN checks there.
func forgedSDP(kind string, sink *udpSink) string {
	setup := "active"
	if kind == "offer" {
		setup = "actpass"
	}
	fp := make([]string, 32)
	for i, b := range randBytes(32) {
		fp[i] = fmt.Sprintf("%02X", b)
	}
	ufrag := strings.ToUpper(hex.EncodeToString(randBytes(8)))[:16]
	pwd := hex.EncodeToString(randBytes(16))
	return "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n" +
		"a=fingerprint:sha-256 " + strings.Join(fp, ":") + "\r\n" +
		"a=group:BUNDLE 0\r\n" +
		"m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n" +
		"a=setup:" + setup + "\r\na=mid:0\r\na=sendrecv\r\na=sctp-port:5000\r\n" +
		"a=ice-ufrag:" + ufrag + "\r\na=ice-pwd:" + pwd + "\r\n" +
		fmt.Sprintf("a=candidate:1 1 udp 1694498815 127.0.0.1 %d typ srflx raddr 0.0.0.0 rport 0\r\n", sink.port) +
		"a=end-of-candidates\r\n"
}

// ---- the device as initiator, facing a scripted board ----

type initRig struct {
	eb       *evilBoard
	ec       *evilConn
	c        *Client
	id       *identity.PrivateKey
	tk       *identity.TransportKey
	peer     *fakePeer
	match    string
	sink     *errSink
	res      <-chan result[*Session]
	keyOffer *wire.Frame
}

// newInitRig connects a device to a scripted board, has it Connect to a
// simulated peer, matches them and returns once the device has sent its
// KEY offer (which it checks).
func newInitRig(t *testing.T) *initRig {
	t.Helper()
	r := &initRig{eb: startEvilBoard(t, nil), id: mustKey(t), tk: mustTK(t), peer: newFakePeer(t), match: wire.NewNonce(), sink: newErrSink()}
	r.c = dialBoard(t, &testBoard{url: r.eb.url}, Options{Identity: r.id, TransportKey: r.tk, Logger: slog.New(r.sink), ConnectTimeout: 5 * time.Second})
	r.ec = r.eb.accept(t)
	r.res, _ = goBG(t, 30*time.Second, func(ctx context.Context) (*Session, error) { return r.c.Connect(ctx, r.peer.pub()) })
	r.ec.next(t, wire.KindIntent)
	r.ec.sendT(t, matchMsg(r.match, wire.RoleInitiator, r.peer.pub()))
	r.keyOffer = frameOf(t, r.ec.next(t, wire.KindRelay))
	f := r.keyOffer
	if f.Phase != wire.PhaseKey || f.MatchID != r.match || f.FromKey != wire.EncodeKey(r.id.Public()) || f.ToKey != wire.EncodeKey(r.peer.pub()) || f.Sealed != "" {
		t.Fatalf("key offer %+v", f)
	}
	if _, tk, err := f.Binding.Verify(r.id.Public(), time.Now()); err != nil || tk != r.tk.Public() {
		t.Fatalf("the device's own binding: %v", err)
	}
	blob, _ := json.Marshal(f)
	if err := wire.VerifyRaw(blob, r.id.Public()); err != nil {
		t.Fatalf("the device's own frame: %v", err)
	}
	return r
}

func (r *initRig) keyAnswer(t *testing.T) *wire.Frame {
	return signFrame(t, r.peer.frame(wire.FrameAnswer, wire.PhaseKey, r.match, r.id.Public()), r.peer.id)
}

// payload is the sealed payload the genuine peer would send.
func (r *initRig) payload(sdp string) wire.SealedPayload {
	return wire.SealedPayload{Type: wire.TypeSignaling, MatchID: r.match, FromKey: wire.EncodeKey(r.peer.pub()), ToKey: wire.EncodeKey(r.id.Public()), SDPType: "answer", SDP: sdp}
}

// sigAnswer is the peer's signed signaling answer carrying sealed.
func (r *initRig) sigAnswer(t *testing.T, sealed string) *wire.Frame {
	f := r.peer.frame(wire.FrameAnswer, wire.PhaseSignaling, r.match, r.id.Public())
	f.Sealed = sealed
	return signFrame(t, f, r.peer.id)
}

// toSignaling completes the KEY phase genuinely and returns the
// device's sealed offer, checked: sealed to the peer's verified key,
// naming this match, the device and the peer.
func (r *initRig) toSignaling(t *testing.T) string {
	t.Helper()
	r.ec.sendT(t, relayMsg(wire.FrameAnswer, r.keyAnswer(t)))
	e := r.ec.next(t, wire.KindRelay)
	f := frameOf(t, e)
	if f.Phase != wire.PhaseSignaling || e.FrameKind != wire.FrameOffer {
		t.Fatalf("expected the sealed offer, got a %s %s", f.Phase, e.FrameKind)
	}
	p, err := openFrame(f, r.peer.tk)
	if err != nil {
		t.Fatalf("the offer does not open with the peer's transport key: %v", err)
	}
	if p.MatchID != r.match || p.FromKey != wire.EncodeKey(r.id.Public()) || p.ToKey != wire.EncodeKey(r.peer.pub()) || p.SDPType != "offer" {
		t.Fatalf("sealed payload names %+v", p)
	}
	return p.SDP
}

// result waits for Connect.
func (r *initRig) result(t *testing.T) error {
	t.Helper()
	s, err := wait(t, r.res, 20*time.Second)
	if s != nil {
		s.Close()
		t.Fatal("a session was set up")
	}
	if ids := inboxIDs(r.c); len(ids) != 0 {
		t.Fatalf("the failed rendezvous left inboxes behind: %v", ids)
	}
	return err
}

// inboxIDs lists the matches a client holds an inbox for.
func inboxIDs(c *Client) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ids []string
	for id := range c.inboxes {
		ids = append(ids, id)
	}
	return ids
}

// sealedNothing: after the KEY offer the device sent no frame at all,
// so it sealed nothing to any key.
func (r *initRig) sealedNothing(t *testing.T) {
	t.Helper()
	fs := r.ec.relaysSent(t)
	if len(fs) != 1 || fs[0].Phase != wire.PhaseKey {
		t.Fatalf("the device sent %d frames after rejecting the peer's key", len(fs)-1)
	}
}

// low-order X25519 points (and non-canonical encodings of them): with
// any of these every shared secret is zero.
var lowOrder = []string{
	"0000000000000000000000000000000000000000000000000000000000000000",
	"0100000000000000000000000000000000000000000000000000000000000000",
	"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
	"5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
	"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
}

// bindingOf signs a binding of tk to id's key, dated at.
func bindingOf(t *testing.T, id *identity.PrivateKey, tk [32]byte, at time.Time) *identity.Binding {
	b, err := identity.NewBinding(id, tk, at)
	if err != nil {
		t.Fatal(err)
	}
	return &b
}

func flipB64(s string, byteIndex int) string {
	b, _ := wire.B64.DecodeString(s)
	if byteIndex < 0 {
		byteIndex += len(b)
	}
	b[byteIndex] ^= 0x01
	return wire.B64.EncodeToString(b)
}

// TestKeyPhaseAttacks: the KEY answer a hostile board or peer forges.
// Each must fail Connect with ErrPeerCheck (or, for frames the client
// must not even route, leave it waiting until the channel closes), and
// the device must seal nothing afterwards.
func TestKeyPhaseAttacks(t *testing.T) {
	cases := []struct {
		name string
		msgs func(t *testing.T, r *initRig) [][]byte
		want error
	}{
		{"board substitutes its own key and identity, signs the frame itself", func(t *testing.T, r *initRig) [][]byte {
			evil := newFakePeer(t)
			f := r.peer.frame(wire.FrameAnswer, wire.PhaseKey, r.match, r.id.Public())
			f.Binding = &evil.b
			return [][]byte{relayMsg(wire.FrameAnswer, signFrame(t, f, evil.id))}
		}, ErrPeerCheck},
		{"board substitutes its own binding under the peer's signature", func(t *testing.T, r *initRig) [][]byte {
			f := r.keyAnswer(t)
			f.Binding = &newFakePeer(t).b
			return [][]byte{relayMsg(wire.FrameAnswer, f)}
		}, ErrPeerCheck},
		{"board substitutes the peer's binding of another transport key", func(t *testing.T, r *initRig) [][]byte {
			f := r.keyAnswer(t)
			f.Binding = bindingOf(t, r.peer.id, mustTK(t).Public(), time.Now().Add(-time.Minute))
			return [][]byte{relayMsg(wire.FrameAnswer, f)}
		}, ErrPeerCheck},
		{"board impersonates the peer with its own from_key", func(t *testing.T, r *initRig) [][]byte {
			evil := newFakePeer(t)
			f := evil.frame(wire.FrameAnswer, wire.PhaseKey, r.match, r.id.Public())
			return [][]byte{relayMsg(wire.FrameAnswer, signFrame(t, f, evil.id))}
		}, ErrPeerCheck},
		{"binding for another identity, frame signed by the peer", func(t *testing.T, r *initRig) [][]byte {
			f := r.peer.frame(wire.FrameAnswer, wire.PhaseKey, r.match, r.id.Public())
			f.Binding = &newFakePeer(t).b
			return [][]byte{relayMsg(wire.FrameAnswer, signFrame(t, f, r.peer.id))}
		}, ErrPeerCheck},
		{"binding naming the peer, signed by another key", func(t *testing.T, r *initRig) [][]byte {
			evil := newFakePeer(t)
			b := *bindingOf(t, evil.id, evil.tk.Public(), time.Now())
			b.IdentityKey = wire.EncodeKey(r.peer.pub())
			f := r.peer.frame(wire.FrameAnswer, wire.PhaseKey, r.match, r.id.Public())
			f.Binding = &b
			return [][]byte{relayMsg(wire.FrameAnswer, signFrame(t, f, r.peer.id))}
		}, ErrPeerCheck},
		{"binding_sig with a flipped bit", func(t *testing.T, r *initRig) [][]byte {
			b := r.peer.b
			b.BindingSig = flipB64(b.BindingSig, 7)
			f := r.peer.frame(wire.FrameAnswer, wire.PhaseKey, r.match, r.id.Public())
			f.Binding = &b
			return [][]byte{relayMsg(wire.FrameAnswer, signFrame(t, f, r.peer.id))}
		}, ErrPeerCheck},
		{"binding re-dated after signing", func(t *testing.T, r *initRig) [][]byte {
			b := r.peer.b
			b.CreatedUTC = wire.FormatTime(time.Now().Add(-time.Second))
			f := r.peer.frame(wire.FrameAnswer, wire.PhaseKey, r.match, r.id.Public())
			f.Binding = &b
			return [][]byte{relayMsg(wire.FrameAnswer, signFrame(t, f, r.peer.id))}
		}, ErrPeerCheck},
		{"binding created in the future", func(t *testing.T, r *initRig) [][]byte {
			f := r.peer.frame(wire.FrameAnswer, wire.PhaseKey, r.match, r.id.Public())
			f.Binding = bindingOf(t, r.peer.id, r.peer.tk.Public(), time.Now().Add(identity.BindingMaxSkew+time.Minute))
			return [][]byte{relayMsg(wire.FrameAnswer, signFrame(t, f, r.peer.id))}
		}, ErrPeerCheck},
		{"binding created_utc that is no date", func(t *testing.T, r *initRig) [][]byte {
			b := r.peer.b
			b.CreatedUTC = "2026-13-45T25:61:61.000Z"
			f := r.peer.frame(wire.FrameAnswer, wire.PhaseKey, r.match, r.id.Public())
			f.Binding = &b
			return [][]byte{relayMsg(wire.FrameAnswer, signFrame(t, f, r.peer.id))}
		}, ErrPeerCheck},
		{"outer signature by another key", func(t *testing.T, r *initRig) [][]byte {
			f := r.peer.frame(wire.FrameAnswer, wire.PhaseKey, r.match, r.id.Public())
			return [][]byte{relayMsg(wire.FrameAnswer, signFrame(t, f, mustKey(t)))}
		}, ErrPeerCheck},
		{"outer signature with a flipped bit", func(t *testing.T, r *initRig) [][]byte {
			f := r.keyAnswer(t)
			f.Signature = flipB64(f.Signature, 10)
			return [][]byte{relayMsg(wire.FrameAnswer, f)}
		}, ErrPeerCheck},
		{"frame re-timed after signing", func(t *testing.T, r *initRig) [][]byte {
			f := r.keyAnswer(t)
			f.Timestamp = wire.FormatTime(time.Now().Add(time.Second))
			return [][]byte{relayMsg(wire.FrameAnswer, f)}
		}, ErrPeerCheck},
		{"frame addressed to another device", func(t *testing.T, r *initRig) [][]byte {
			f := r.peer.frame(wire.FrameAnswer, wire.PhaseKey, r.match, mustKey(t).Public())
			return [][]byte{relayMsg(wire.FrameAnswer, signFrame(t, f, r.peer.id))}
		}, ErrPeerCheck},
		{"frame from a third device that signs as itself", func(t *testing.T, r *initRig) [][]byte {
			x := newFakePeer(t)
			return [][]byte{relayMsg(wire.FrameAnswer, signFrame(t, x.frame(wire.FrameAnswer, wire.PhaseKey, r.match, r.id.Public()), x.id))}
		}, ErrPeerCheck},
		{"an offer where the answer belongs", func(t *testing.T, r *initRig) [][]byte {
			f := r.peer.frame(wire.FrameOffer, wire.PhaseKey, r.match, r.id.Public())
			return [][]byte{relayMsg(wire.FrameOffer, signFrame(t, f, r.peer.id))}
		}, ErrPeerCheck},
		{"stale frame", func(t *testing.T, r *initRig) [][]byte {
			f := r.peer.frame(wire.FrameAnswer, wire.PhaseKey, r.match, r.id.Public())
			f.Timestamp = wire.FormatTime(time.Now().Add(-3 * time.Minute))
			return [][]byte{relayMsg(wire.FrameAnswer, signFrame(t, f, r.peer.id))}
		}, ErrPeerCheck},
		{"frame from the future", func(t *testing.T, r *initRig) [][]byte {
			f := r.peer.frame(wire.FrameAnswer, wire.PhaseKey, r.match, r.id.Public())
			f.Timestamp = wire.FormatTime(time.Now().Add(2 * time.Minute))
			return [][]byte{relayMsg(wire.FrameAnswer, signFrame(t, f, r.peer.id))}
		}, ErrPeerCheck},
		{"spoofed early signaling answer before the keys", func(t *testing.T, r *initRig) [][]byte {
			sink := newUDPSink(t)
			return [][]byte{relayMsg(wire.FrameAnswer, r.sigAnswer(t, sealTo(t, r.tk.Public(), r.payload(forgedSDP("answer", sink)))))}
		}, ErrPeerCheck},
		{"frame of another match (board drops it), then the channel closes", func(t *testing.T, r *initRig) [][]byte {
			f := r.peer.frame(wire.FrameAnswer, wire.PhaseKey, wire.NewNonce(), r.id.Public())
			f.Binding = &newFakePeer(t).b
			return [][]byte{relayMsg(wire.FrameAnswer, signFrame(t, f, r.peer.id)), closedMsg(r.match, "timeout")}
		}, ErrChannelClosed},
		{"frame of another match in this match's envelope, then the channel closes", func(t *testing.T, r *initRig) [][]byte {
			f := r.peer.frame(wire.FrameAnswer, wire.PhaseKey, wire.NewNonce(), r.id.Public())
			blob, _ := json.Marshal(signFrame(t, f, r.peer.id))
			env := wire.Marshal(&wire.Envelope{Kind: wire.KindRelay, MatchID: r.match, FrameKind: wire.FrameAnswer, Blob: blob})
			return [][]byte{env, closedMsg(r.match, "timeout")}
		}, ErrChannelClosed},
	}
	for _, h := range lowOrder {
		cases = append(cases, struct {
			name string
			msgs func(t *testing.T, r *initRig) [][]byte
			want error
		}{"low-order transport key " + h[:8], func(t *testing.T, r *initRig) [][]byte {
			var tk [32]byte
			hex.Decode(tk[:], []byte(h))
			f := r.peer.frame(wire.FrameAnswer, wire.PhaseKey, r.match, r.id.Public())
			f.Binding = bindingOf(t, r.peer.id, tk, time.Now())
			return [][]byte{relayMsg(wire.FrameAnswer, signFrame(t, f, r.peer.id))}
		}, ErrPeerCheck})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newInitRig(t)
			for _, m := range c.msgs(t, r) {
				r.ec.sendT(t, m)
			}
			wantErr(t, r.result(t), c.want)
			r.sealedNothing(t)
		})
	}
}

// TestKeyPhaseGenuine is the rig's positive control: the genuine KEY
// answer is accepted and the device seals its offer to the peer's bound
// key; a binding dated a little ahead (within the allowed skew) is
// accepted too.
func TestKeyPhaseGenuine(t *testing.T) {
	for _, skew := range []time.Duration{0, identity.BindingMaxSkew - time.Minute} {
		t.Run(skew.String(), func(t *testing.T) {
			r := newInitRig(t)
			r.peer.b = *bindingOf(t, r.peer.id, r.peer.tk.Public(), time.Now().Add(skew))
			sdp := r.toSignaling(t)
			if !strings.Contains(sdp, "a=fingerprint:") {
				t.Fatalf("offer:\n%s", sdp)
			}
			checkPolicy(t, "device", sdp, false)
			r.ec.sendT(t, closedMsg(r.match, "timeout"))
			wantErr(t, r.result(t), ErrChannelClosed)
		})
	}
}

// TestSignalingAnswerAttacks: a tampered, re-addressed or foreign sealed
// answer fails with ErrPeerCheck and its SDP is never applied: the
// device sends no STUN check to the candidate inside it.
func TestSignalingAnswerAttacks(t *testing.T) {
	cases := []struct {
		name   string
		answer func(t *testing.T, r *initRig, sdp string) []byte
	}{
		{"ephemeral key bit flipped", func(t *testing.T, r *initRig, sdp string) []byte {
			return relayMsg(wire.FrameAnswer, r.sigAnswer(t, flipB64(sealTo(t, r.tk.Public(), r.payload(sdp)), 3)))
		}},
		{"ciphertext bit flipped", func(t *testing.T, r *initRig, sdp string) []byte {
			return relayMsg(wire.FrameAnswer, r.sigAnswer(t, flipB64(sealTo(t, r.tk.Public(), r.payload(sdp)), 100)))
		}},
		{"tag bit flipped", func(t *testing.T, r *initRig, sdp string) []byte {
			return relayMsg(wire.FrameAnswer, r.sigAnswer(t, flipB64(sealTo(t, r.tk.Public(), r.payload(sdp)), -1)))
		}},
		{"box truncated", func(t *testing.T, r *initRig, sdp string) []byte {
			b, _ := wire.B64.DecodeString(sealTo(t, r.tk.Public(), r.payload(sdp)))
			return relayMsg(wire.FrameAnswer, r.sigAnswer(t, wire.B64.EncodeToString(b[:len(b)-1])))
		}},
		{"box with a low-order ephemeral key", func(t *testing.T, r *initRig, sdp string) []byte {
			box, _ := hex.DecodeString(lowOrder[2])
			return relayMsg(wire.FrameAnswer, r.sigAnswer(t, wire.B64.EncodeToString(append(box, randBytes(200)...))))
		}},
		{"box of an empty plaintext", func(t *testing.T, r *initRig, sdp string) []byte {
			return relayMsg(wire.FrameAnswer, r.sigAnswer(t, sealRaw(t, r.tk.Public(), nil)))
		}},
		{"box sealed to another key", func(t *testing.T, r *initRig, sdp string) []byte {
			return relayMsg(wire.FrameAnswer, r.sigAnswer(t, sealTo(t, mustTK(t).Public(), r.payload(sdp))))
		}},
		{"board seals its own SDP to the device and signs as itself", func(t *testing.T, r *initRig, sdp string) []byte {
			evil := newFakePeer(t)
			f := r.peer.frame(wire.FrameAnswer, wire.PhaseSignaling, r.match, r.id.Public())
			f.Sealed = sealTo(t, r.tk.Public(), r.payload(sdp))
			return relayMsg(wire.FrameAnswer, signFrame(t, f, evil.id))
		}},
		{"board swaps the box under the peer's signature", func(t *testing.T, r *initRig, sdp string) []byte {
			f := r.sigAnswer(t, sealTo(t, r.tk.Public(), r.payload("v=0\r\n")))
			f.Sealed = sealTo(t, r.tk.Public(), r.payload(sdp))
			return relayMsg(wire.FrameAnswer, f)
		}},
		{"payload names another match", func(t *testing.T, r *initRig, sdp string) []byte {
			p := r.payload(sdp)
			p.MatchID = wire.NewNonce()
			return relayMsg(wire.FrameAnswer, r.sigAnswer(t, sealTo(t, r.tk.Public(), p)))
		}},
		{"payload names another sender", func(t *testing.T, r *initRig, sdp string) []byte {
			p := r.payload(sdp)
			p.FromKey = wire.EncodeKey(mustKey(t).Public())
			return relayMsg(wire.FrameAnswer, r.sigAnswer(t, sealTo(t, r.tk.Public(), p)))
		}},
		{"payload names another recipient", func(t *testing.T, r *initRig, sdp string) []byte {
			p := r.payload(sdp)
			p.ToKey = wire.EncodeKey(r.peer.pub())
			return relayMsg(wire.FrameAnswer, r.sigAnswer(t, sealTo(t, r.tk.Public(), p)))
		}},
		{"payload is an offer", func(t *testing.T, r *initRig, sdp string) []byte {
			p := r.payload(sdp)
			p.SDPType = "offer"
			return relayMsg(wire.FrameAnswer, r.sigAnswer(t, sealTo(t, r.tk.Public(), p)))
		}},
		{"payload with an extra field", func(t *testing.T, r *initRig, sdp string) []byte {
			pt, _ := json.Marshal(struct {
				wire.SealedPayload
				IP string `json:"ip"`
			}{r.payload(sdp), "127.0.0.42"})
			return relayMsg(wire.FrameAnswer, r.sigAnswer(t, sealRaw(t, r.tk.Public(), pt)))
		}},
		{"payload that is bare SDP, not JSON", func(t *testing.T, r *initRig, sdp string) []byte {
			return relayMsg(wire.FrameAnswer, r.sigAnswer(t, sealRaw(t, r.tk.Public(), []byte(sdp))))
		}},
		{"payload of the wrong record type", func(t *testing.T, r *initRig, sdp string) []byte {
			p := r.payload(sdp)
			p.Type = "presence"
			return relayMsg(wire.FrameAnswer, r.sigAnswer(t, sealTo(t, r.tk.Public(), p)))
		}},
		{"answer signed by the peer for another recipient", func(t *testing.T, r *initRig, sdp string) []byte {
			f := r.peer.frame(wire.FrameAnswer, wire.PhaseSignaling, r.match, mustKey(t).Public())
			f.Sealed = sealTo(t, r.tk.Public(), r.payload(sdp))
			return relayMsg(wire.FrameAnswer, signFrame(t, f, r.peer.id))
		}},
		{"a KEY frame again where the sealed answer belongs", func(t *testing.T, r *initRig, sdp string) []byte {
			return relayMsg(wire.FrameAnswer, r.keyAnswer(t))
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newInitRig(t)
			sink := newUDPSink(t)
			r.toSignaling(t)
			r.ec.sendT(t, c.answer(t, r, forgedSDP("answer", sink)))
			wantErr(t, r.result(t), ErrPeerCheck)
			if sink.stunWithin(300 * time.Millisecond) {
				t.Fatal("the device applied the SDP: it sent STUN checks to the forged candidate")
			}
		})
	}
	// An answer whose box opens but whose SDP is garbage fails at
	// SetRemoteDescription, still as the peer's fault.
	t.Run("SDP that is not an SDP", func(t *testing.T) {
		r := newInitRig(t)
		r.toSignaling(t)
		r.ec.sendT(t, relayMsg(wire.FrameAnswer, r.sigAnswer(t, sealTo(t, r.tk.Public(), r.payload("this is no SDP")))))
		wantErr(t, r.result(t), ErrPeerCheck)
	})
}

func sealRaw(t *testing.T, to [32]byte, pt []byte) string {
	t.Helper()
	box, err := seal.Seal(to, pt)
	if err != nil {
		t.Fatal(err)
	}
	return wire.B64.EncodeToString(box)
}

// TestSignalingAnswerGenuineIsApplied is the control for the test
// above: the same forged SDP, correctly sealed and signed by the peer,
// is applied, and the device does send STUN checks to its candidate.
func TestSignalingAnswerGenuineIsApplied(t *testing.T) {
	r := newInitRig(t)
	sink := newUDPSink(t)
	r.toSignaling(t)
	r.ec.sendT(t, relayMsg(wire.FrameAnswer, r.sigAnswer(t, sealTo(t, r.tk.Public(), r.payload(forgedSDP("answer", sink))))))
	if !sink.stunWithin(10 * time.Second) {
		t.Fatal("the device never checked the candidate of an answer it accepted")
	}
}

// TestSpoofedEarlyAnswer: the board sends a signaling answer right
// behind the genuine KEY answer, before the device's offer is out. It
// is not the peer's, so it is refused and never applied.
func TestSpoofedEarlyAnswer(t *testing.T) {
	r := newInitRig(t)
	sink := newUDPSink(t)
	evil := newFakePeer(t)
	spoof := r.peer.frame(wire.FrameAnswer, wire.PhaseSignaling, r.match, r.id.Public())
	spoof.Sealed = sealTo(t, r.tk.Public(), r.payload(forgedSDP("answer", sink)))
	r.ec.sendT(t, relayMsg(wire.FrameAnswer, r.keyAnswer(t)))
	r.ec.sendT(t, relayMsg(wire.FrameAnswer, signFrame(t, spoof, evil.id)))
	wantErr(t, r.result(t), ErrPeerCheck)
	if sink.stunWithin(300 * time.Millisecond) {
		t.Fatal("the spoofed answer was applied")
	}
}

// TestReplayFromEarlierSession: frames the genuine peer sent in an
// earlier match are useless in a later one. The device keeps its
// transport key across matches, so the old sealed answer still opens:
// what stops it is the match named inside the box.
func TestReplayFromEarlierSession(t *testing.T) {
	r := newInitRig(t)
	sink := newUDPSink(t)
	old := r.match
	oldKey := r.keyAnswer(t)
	r.toSignaling(t)
	oldAnswer := r.sigAnswer(t, sealTo(t, r.tk.Public(), r.payload(forgedSDP("answer", sink))))
	r.ec.sendT(t, closedMsg(old, "timeout"))
	wantErr(t, r.result(t), ErrChannelClosed)

	// A second match with the same device and peer.
	next := func(t *testing.T) {
		r.match = wire.NewNonce()
		r.res, _ = goBG(t, 30*time.Second, func(ctx context.Context) (*Session, error) { return r.c.Connect(ctx, r.peer.pub()) })
		r.ec.next(t, wire.KindIntent)
		r.ec.sendT(t, matchMsg(r.match, wire.RoleInitiator, r.peer.pub()))
		if f := frameOf(t, r.ec.next(t, wire.KindRelay)); f.MatchID != r.match {
			t.Fatal("the key offer names another match")
		}
	}
	rewrap := func(kind string, f *wire.Frame) []byte {
		blob, _ := json.Marshal(f)
		return wire.Marshal(&wire.Envelope{Kind: wire.KindRelay, MatchID: r.match, FrameKind: kind, Blob: blob})
	}
	sent := func() int { return len(r.ec.relaysSent(t)) }

	t.Run("old KEY answer, as relayed and re-wrapped", func(t *testing.T) {
		next(t)
		before := sent()
		r.ec.sendT(t, relayMsg(wire.FrameAnswer, oldKey))
		r.ec.sendT(t, rewrap(wire.FrameAnswer, oldKey))
		r.ec.sendT(t, closedMsg(r.match, "timeout"))
		wantErr(t, r.result(t), ErrChannelClosed)
		if sent() != before {
			t.Fatal("the device sent a frame after a replayed KEY answer")
		}
	})
	t.Run("old signaling answer, as relayed and re-wrapped", func(t *testing.T) {
		next(t)
		r.toSignaling(t)
		r.ec.sendT(t, relayMsg(wire.FrameAnswer, oldAnswer))
		r.ec.sendT(t, rewrap(wire.FrameAnswer, oldAnswer))
		r.ec.sendT(t, closedMsg(r.match, "timeout"))
		wantErr(t, r.result(t), ErrChannelClosed)
		if sink.stunWithin(300 * time.Millisecond) {
			t.Fatal("a replayed answer was applied")
		}
	})
	t.Run("old box in a fresh frame signed by the peer", func(t *testing.T) {
		next(t)
		r.toSignaling(t)
		r.ec.sendT(t, relayMsg(wire.FrameAnswer, r.sigAnswer(t, oldAnswer.Sealed)))
		wantErr(t, r.result(t), ErrPeerCheck)
		if sink.stunWithin(300 * time.Millisecond) {
			t.Fatal("a replayed box was applied")
		}
	})
}

// TestChannelClosedByBoard: whenever the board ends the channel, the
// rendezvous ends with ErrChannelClosed and the reason.
func TestChannelClosedByBoard(t *testing.T) {
	for _, reason := range []string{"timeout", "peer_gone", "shutdown", "complete"} {
		t.Run("key phase/"+reason, func(t *testing.T) {
			r := newInitRig(t)
			r.ec.sendT(t, closedMsg(r.match, reason))
			err := r.result(t)
			wantErr(t, err, ErrChannelClosed)
			if !strings.Contains(err.Error(), reason) {
				t.Fatalf("the reason is lost: %v", err)
			}
			r.sealedNothing(t)
		})
	}
	t.Run("signaling phase", func(t *testing.T) {
		r := newInitRig(t)
		r.toSignaling(t)
		r.ec.sendT(t, closedMsg(r.match, "peer_gone"))
		wantErr(t, r.result(t), ErrChannelClosed)
	})
	t.Run("another match's channel closing is not ours", func(t *testing.T) {
		r := newInitRig(t)
		r.ec.sendT(t, closedMsg(wire.NewNonce(), "timeout"))
		r.toSignaling(t)
		r.ec.sendT(t, closedMsg(r.match, "timeout"))
		wantErr(t, r.result(t), ErrChannelClosed)
	})
}

// TestBoardDropsConnection: a board that vanishes mid-rendezvous ends
// Connect at once (not at its deadline), and the client reports the
// connection gone.
func TestBoardDropsConnection(t *testing.T) {
	r := newInitRig(t)
	start := time.Now()
	r.ec.ws.CloseNow()
	err := r.result(t)
	if err == nil || errors.Is(err, ErrPeerCheck) {
		t.Fatalf("got %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Connect took %s to notice", d)
	}
	select {
	case <-r.c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the client did not notice the board left")
	}
}

// TestBoardRejects: the board's refusals reach the caller as ErrRejected
// with their code, and a refused KEY offer ends the rendezvous.
func TestBoardRejects(t *testing.T) {
	t.Run("intent", func(t *testing.T) {
		eb := startEvilBoard(t, nil)
		c := dialBoard(t, &testBoard{url: eb.url}, Options{Identity: mustKey(t)})
		ec := eb.accept(t)
		ec.setNoAck()
		res, _ := goBG(t, 20*time.Second, func(ctx context.Context) (*Session, error) { return c.Connect(ctx, mustKey(t).Public()) })
		in := ec.next(t, wire.KindIntent)
		ec.sendT(t, wire.Marshal(&wire.Envelope{Kind: wire.KindRejected, Req: in.Req, Code: "rate_limited", Reason: "slow down"}))
		_, err := wait(t, res, 10*time.Second)
		wantErr(t, err, ErrRejected)
		var re *RejectedError
		if !errors.As(err, &re) || re.Code != "rate_limited" {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("key offer", func(t *testing.T) {
		eb := startEvilBoard(t, nil)
		peer := newFakePeer(t)
		c := dialBoard(t, &testBoard{url: eb.url}, Options{Identity: mustKey(t)})
		ec := eb.accept(t)
		res, _ := goBG(t, 20*time.Second, func(ctx context.Context) (*Session, error) { return c.Connect(ctx, peer.pub()) })
		ec.next(t, wire.KindIntent)
		ec.setNoAck()
		m := wire.NewNonce()
		ec.sendT(t, matchMsg(m, wire.RoleInitiator, peer.pub()))
		off := ec.next(t, wire.KindRelay)
		ec.sendT(t, wire.Marshal(&wire.Envelope{Kind: wire.KindRejected, Req: off.Req, Code: "no_channel", Reason: "gone"}))
		_, err := wait(t, res, 10*time.Second)
		wantErr(t, err, ErrRejected)
		if n := len(ec.relaysSent(t)); n != 1 {
			t.Fatalf("%d frames sent", n)
		}
	})
}

// TestDialNeedsHello: a board whose first message is not a hello is not
// a board.
func TestDialNeedsHello(t *testing.T) {
	for name, first := range map[string][]byte{
		"ack first":                 wire.Marshal(&wire.Envelope{Kind: wire.KindAck, Req: "1"}),
		"garbage first":             []byte("HTTP/1.1 200 OK"),
		"hello with an extra field": []byte(`{"kind":"hello","version":1,"pow_bits":0,"max_frame":65536,"freshness_ms":120000,"ip":"127.0.0.42"}`),
	} {
		t.Run(name, func(t *testing.T) {
			eb := startEvilBoard(t, first)
			_, err := Dial(ctxT(t, 10*time.Second), eb.url, Options{Identity: mustKey(t)})
			wantErr(t, err, ErrBoard)
		})
	}
}

// TestMatchForSomeoneElse: a match naming a counterparty the device did
// not ask for is ignored; the right one is used.
func TestMatchForSomeoneElse(t *testing.T) {
	eb := startEvilBoard(t, nil)
	peer := newFakePeer(t)
	c := dialBoard(t, &testBoard{url: eb.url}, Options{Identity: mustKey(t)})
	ec := eb.accept(t)
	goBG(t, 20*time.Second, func(ctx context.Context) (*Session, error) { return c.Connect(ctx, peer.pub()) })
	ec.next(t, wire.KindIntent)
	ec.sendT(t, matchMsg(wire.NewNonce(), wire.RoleInitiator, mustKey(t).Public()))
	want := wire.NewNonce()
	ec.sendT(t, matchMsg(want, wire.RoleInitiator, peer.pub()))
	f := frameOf(t, ec.next(t, wire.KindRelay))
	if f.MatchID != want || f.ToKey != wire.EncodeKey(peer.pub()) {
		t.Fatalf("the device answered the wrong match: %+v", f)
	}
	if ids := inboxIDs(c); len(ids) != 1 || ids[0] != want {
		t.Fatalf("inboxes %v, want only %s", ids, want)
	}
}

// garbage is what a broken or hostile board may send; malformed ones
// fail the schema (the client logs a warning and goes on), the others
// are valid but concern nobody here.
func garbage(t *testing.T, r *initRig) []struct {
	name      string
	msg       []byte
	binary    bool
	malformed bool
} {
	genuineOther := r.peer.frame(wire.FrameAnswer, wire.PhaseKey, wire.NewNonce(), r.id.Public())
	noSig := r.keyAnswer(t)
	noSig.Signature = ""
	otherMatch := r.keyAnswer(t)
	otherMatchBlob, _ := json.Marshal(otherMatch)
	typeMismatch := r.keyAnswer(t)
	tmBlob, _ := json.Marshal(typeMismatch)
	noSigBlob, _ := json.Marshal(noSig)
	ms := int64(1)
	return []struct {
		name      string
		msg       []byte
		binary    bool
		malformed bool
	}{
		{"not JSON", []byte("not json at all"), false, true},
		{"empty object", []byte(`{}`), false, true},
		{"unknown kind", []byte(`{"kind":"bogus"}`), false, true},
		{"a device's kind", []byte(`{"kind":"presence","record":{}}`), false, true},
		{"extra field", []byte(`{"kind":"ack","req":"1","ip":"127.0.0.42"}`), false, true},
		{"duplicate key", []byte(`{"kind":"ack","kind":"rejected","code":"busy","reason":"x"}`), false, true},
		{"invalid UTF-8", []byte("{\"kind\":\"ack\",\"req\":\"\xff\xfe\"}"), false, true},
		{"NaN", []byte(`{"kind":"hello","version":NaN}`), false, true},
		{"deep nesting", []byte(`{"kind":"ack","req":` + strings.Repeat("[", 200000) + strings.Repeat("]", 200000) + `}`), false, true},
		{"binary frame", randBytes(300), true, true},
		{"frame without signature", wire.Marshal(&wire.Envelope{Kind: wire.KindRelay, MatchID: r.match, FrameKind: wire.FrameAnswer, Blob: noSigBlob}), false, true},
		{"frame naming another match than its envelope", wire.Marshal(&wire.Envelope{Kind: wire.KindRelay, MatchID: wire.NewNonce(), FrameKind: wire.FrameAnswer, Blob: otherMatchBlob}), false, true},
		{"answer envelope around an offer", wire.Marshal(&wire.Envelope{Kind: wire.KindRelay, MatchID: r.match, FrameKind: wire.FrameOffer, Blob: tmBlob}), false, true},
		{"match with a malformed key", []byte(`{"kind":"match","match_id":"` + r.match + `","role":"initiator","counterparty_key":"AAAA","expires_in_ms":5}`), false, true},
		{"hello again", wire.Marshal(&wire.Envelope{Kind: wire.KindHello, Version: 1, PoWBits: new(int), MaxFrame: 2048, FreshnessMS: 1000}), false, false},
		{"ack of nothing", wire.Marshal(&wire.Envelope{Kind: wire.KindAck, Req: "zzz"}), false, false},
		{"rejection of nothing", wire.Marshal(&wire.Envelope{Kind: wire.KindRejected, Req: "zzz", Code: "busy", Reason: "x"}), false, false},
		{"eviction of another record", wire.Marshal(&wire.Envelope{Kind: wire.KindEvicted, RecordKind: "presence", SessionNonce: wire.NewNonce(), Reason: "capacity"}), false, false},
		{"genuine frame of an unknown match", relayMsg(wire.FrameAnswer, signFrame(t, genuineOther, r.peer.id)), false, false},
		{"channel_closed of an unknown match", closedMsg(wire.NewNonce(), "timeout"), false, false},
		{"referral for someone else", wire.Marshal(&wire.Envelope{Kind: wire.KindReferral, CounterpartyKey: wire.EncodeKey(mustKey(t).Public()), Role: wire.RoleInitiator, Board: "ws://127.0.0.1:1/"}), false, false},
		{"match with someone else", wire.Marshal(&wire.Envelope{Kind: wire.KindMatch, MatchID: wire.NewNonce(), Role: wire.RoleInitiator, CounterpartyKey: wire.EncodeKey(mustKey(t).Public()), ExpiresInMS: &ms}), false, false},
	}
}

func (c *evilConn) sendBinary(t *testing.T, b []byte) {
	t.Helper()
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.ws.Write(context.Background(), websocket.MessageBinary, b); err != nil {
		t.Fatal(err)
	}
}

func malformedWarnings(s *errSink) int {
	n := 0
	for _, w := range s.warnings() {
		if strings.Contains(w, "malformed") {
			n++
		}
	}
	return n
}

// TestMalformedBoardMessages: each bad message is ignored (a warning for
// the malformed ones), the client keeps its connection, and the
// rendezvous still ends the way the board ends it.
func TestMalformedBoardMessages(t *testing.T) {
	probe := &initRig{id: mustKey(t), peer: newFakePeer(t), match: wire.NewNonce()}
	for i, g := range garbage(t, probe) {
		t.Run(g.name, func(t *testing.T) {
			r := newInitRig(t)
			g := garbage(t, r)[i]
			if g.binary {
				r.ec.sendBinary(t, g.msg)
			} else {
				r.ec.sendT(t, g.msg)
			}
			r.ec.sendT(t, closedMsg(r.match, "timeout"))
			wantErr(t, r.result(t), ErrChannelClosed)
			want := 0
			if g.malformed {
				want = 1
			}
			if n := malformedWarnings(r.sink); n != want {
				t.Fatalf("%d malformed-message warnings, want %d", n, want)
			}
			select {
			case <-r.c.Done():
				t.Fatal("the client dropped the board over it")
			default:
			}
			r.sealedNothing(t)
		})
	}
	t.Run("all of it, then a genuine rendezvous", func(t *testing.T) {
		r := newInitRig(t)
		n := 0
		for _, g := range garbage(t, r) {
			if g.binary {
				r.ec.sendBinary(t, g.msg)
			} else {
				r.ec.sendT(t, g.msg)
			}
			if g.malformed {
				n++
			}
		}
		r.toSignaling(t)
		if got := malformedWarnings(r.sink); got != n {
			t.Fatalf("%d warnings for %d malformed messages", got, n)
		}
	})
	t.Run("a message over the read limit ends the connection", func(t *testing.T) {
		r := newInitRig(t)
		r.ec.send([]byte(`{"kind":"ack","req":"` + strings.Repeat("a", 1<<20) + `"}`))
		if err := r.result(t); err == nil {
			t.Fatal("no error")
		}
		select {
		case <-r.c.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("the client kept a connection it cannot read")
		}
	})
}

// ---- the device as responder, facing a scripted board ----

type respRig struct {
	eb   *evilBoard
	ec   *evilConn
	c    *Client
	id   *identity.PrivateKey
	tk   *identity.TransportKey
	sink *errSink
	res  <-chan result[*Session]
}

func newRespRig(t *testing.T, authorize func(identity.PublicKey) error) *respRig {
	t.Helper()
	r := &respRig{eb: startEvilBoard(t, nil), id: mustKey(t), tk: mustTK(t), sink: newErrSink()}
	r.c = dialBoard(t, &testBoard{url: r.eb.url}, Options{Identity: r.id, TransportKey: r.tk, Logger: slog.New(r.sink), ConnectTimeout: 2 * time.Second, Authorize: authorize})
	r.ec = r.eb.accept(t)
	r.res, _ = goBG(t, 30*time.Second, r.c.Accept)
	r.ec.next(t, wire.KindPresence)
	return r
}

// match announces a match with p and sends p's genuine KEY offer.
func (r *respRig) match(t *testing.T, p *fakePeer) string {
	id := wire.NewNonce()
	r.ec.sendT(t, matchMsg(id, wire.RoleResponder, p.pub()))
	return id
}

func (r *respRig) keyOffer(t *testing.T, p *fakePeer, id string) *wire.Frame {
	return signFrame(t, p.frame(wire.FrameOffer, wire.PhaseKey, id, r.id.Public()), p.id)
}

func (r *respRig) sigOffer(t *testing.T, p *fakePeer, id string, pl wire.SealedPayload) *wire.Frame {
	f := p.frame(wire.FrameOffer, wire.PhaseSignaling, id, r.id.Public())
	f.Sealed = sealTo(t, r.tk.Public(), pl)
	return signFrame(t, f, p.id)
}

func (r *respRig) offerPayload(p *fakePeer, id, sdp string) wire.SealedPayload {
	return wire.SealedPayload{Type: wire.TypeSignaling, MatchID: id, FromKey: wire.EncodeKey(p.pub()), ToKey: wire.EncodeKey(r.id.Public()), SDPType: "offer", SDP: sdp}
}

// TestResponderAttacks: the same checks on the answering side. Accept
// logs the failure and keeps waiting; the device must not have answered
// an unverified key, nor applied a bad offer.
func TestResponderAttacks(t *testing.T) {
	t.Run("substituted binding in the KEY offer", func(t *testing.T) {
		r := newRespRig(t, nil)
		p, evil := newFakePeer(t), newFakePeer(t)
		id := r.match(t, p)
		f := p.frame(wire.FrameOffer, wire.PhaseKey, id, r.id.Public())
		f.Binding = &evil.b
		r.ec.sendT(t, relayMsg(wire.FrameOffer, signFrame(t, f, evil.id)))
		wantErr(t, r.sink.next(t), ErrPeerCheck)
		if n := len(r.ec.relaysSent(t)); n != 0 {
			t.Fatalf("the device answered an unverified key (%d frames)", n)
		}
	})
	t.Run("binding for another identity under the initiator's signature", func(t *testing.T) {
		r := newRespRig(t, nil)
		p := newFakePeer(t)
		id := r.match(t, p)
		f := p.frame(wire.FrameOffer, wire.PhaseKey, id, r.id.Public())
		f.Binding = &newFakePeer(t).b
		r.ec.sendT(t, relayMsg(wire.FrameOffer, signFrame(t, f, p.id)))
		wantErr(t, r.sink.next(t), ErrPeerCheck)
		if n := len(r.ec.relaysSent(t)); n != 0 {
			t.Fatalf("%d frames sent", n)
		}
	})
	t.Run("an answer where the offer belongs", func(t *testing.T) {
		r := newRespRig(t, nil)
		p := newFakePeer(t)
		id := r.match(t, p)
		r.ec.sendT(t, relayMsg(wire.FrameAnswer, signFrame(t, p.frame(wire.FrameAnswer, wire.PhaseKey, id, r.id.Public()), p.id)))
		wantErr(t, r.sink.next(t), ErrPeerCheck)
	})
	for _, c := range []struct {
		name string
		mod  func(t *testing.T, r *respRig, p *fakePeer, id string, pl *wire.SealedPayload) *wire.Frame
	}{
		{"sealed offer with a flipped bit", func(t *testing.T, r *respRig, p *fakePeer, id string, pl *wire.SealedPayload) *wire.Frame {
			f := p.frame(wire.FrameOffer, wire.PhaseSignaling, id, r.id.Public())
			f.Sealed = flipB64(sealTo(t, r.tk.Public(), *pl), 60)
			return signFrame(t, f, p.id)
		}},
		{"sealed offer that is an answer", func(t *testing.T, r *respRig, p *fakePeer, id string, pl *wire.SealedPayload) *wire.Frame {
			pl.SDPType = "answer"
			return r.sigOffer(t, p, id, *pl)
		}},
		{"sealed offer of another match", func(t *testing.T, r *respRig, p *fakePeer, id string, pl *wire.SealedPayload) *wire.Frame {
			pl.MatchID = wire.NewNonce()
			return r.sigOffer(t, p, id, *pl)
		}},
		{"sealed offer sealed to the initiator itself", func(t *testing.T, r *respRig, p *fakePeer, id string, pl *wire.SealedPayload) *wire.Frame {
			f := p.frame(wire.FrameOffer, wire.PhaseSignaling, id, r.id.Public())
			f.Sealed = sealTo(t, p.tk.Public(), *pl)
			return signFrame(t, f, p.id)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRespRig(t, nil)
			sink := newUDPSink(t)
			p := newFakePeer(t)
			id := r.match(t, p)
			r.ec.sendT(t, relayMsg(wire.FrameOffer, r.keyOffer(t, p, id)))
			ka := frameOf(t, r.ec.next(t, wire.KindRelay))
			if ka.Phase != wire.PhaseKey || ka.MatchID != id {
				t.Fatalf("key answer %+v", ka)
			}
			pl := r.offerPayload(p, id, forgedSDP("offer", sink))
			r.ec.sendT(t, relayMsg(wire.FrameOffer, c.mod(t, r, p, id, &pl)))
			wantErr(t, r.sink.next(t), ErrPeerCheck)
			if n := len(r.ec.relaysSent(t)); n != 1 {
				t.Fatalf("the device answered a bad offer (%d frames)", n)
			}
			if sink.stunWithin(300 * time.Millisecond) {
				t.Fatal("the bad offer was applied")
			}
		})
	}
	t.Run("channel closed before the KEY offer", func(t *testing.T) {
		r := newRespRig(t, nil)
		id := r.match(t, newFakePeer(t))
		r.ec.sendT(t, closedMsg(id, "peer_gone"))
		wantErr(t, r.sink.next(t), ErrChannelClosed)
	})
}

// TestResponderRecovers: after a hostile match fails, and after a match
// the device refuses to answer, the same Accept serves a genuine one;
// the genuine offer's SDP is applied (STUN reaches its candidate).
func TestResponderRecovers(t *testing.T) {
	bad, good := newFakePeer(t), newFakePeer(t)
	refused := newFakePeer(t)
	r := newRespRig(t, func(k identity.PublicKey) error {
		if k == refused.pub() {
			return errors.New("not a contact")
		}
		return nil
	})
	sink := newUDPSink(t)
	id := r.match(t, bad)
	f := bad.frame(wire.FrameOffer, wire.PhaseKey, id, r.id.Public())
	f.Binding = &newFakePeer(t).b
	r.ec.sendT(t, relayMsg(wire.FrameOffer, signFrame(t, f, bad.id)))
	wantErr(t, r.sink.next(t), ErrPeerCheck)

	// Refused by Authorize: the device sends nothing for it.
	r.match(t, refused)

	id = r.match(t, good)
	r.ec.sendT(t, relayMsg(wire.FrameOffer, r.keyOffer(t, good, id)))
	ka := frameOf(t, r.ec.next(t, wire.KindRelay))
	if ka.MatchID != id || ka.ToKey != wire.EncodeKey(good.pub()) {
		t.Fatalf("the device answered %+v", ka)
	}
	if _, tk, err := ka.Binding.Verify(r.id.Public(), time.Now()); err != nil || tk != r.tk.Public() {
		t.Fatalf("its binding: %v", err)
	}
	r.ec.sendT(t, relayMsg(wire.FrameOffer, r.sigOffer(t, good, id, r.offerPayload(good, id, forgedSDP("offer", sink)))))
	ans := frameOf(t, r.ec.next(t, wire.KindRelay))
	p, err := openFrame(ans, good.tk)
	if err != nil || p.SDPType != "answer" || p.MatchID != id {
		t.Fatalf("the sealed answer: %v %+v", err, p)
	}
	checkPolicy(t, "responder", p.SDP, false)
	if !sink.stunWithin(10 * time.Second) {
		t.Fatal("the genuine offer was not applied")
	}
	if n := len(r.ec.relaysSent(t)); n != 2 {
		t.Fatalf("%d frames in all; the refused and the hostile match got some", n)
	}
	if ids := inboxIDs(r.c); len(ids) != 1 || ids[0] != id {
		t.Fatalf("inboxes %v: the refused or failed matches left theirs", ids)
	}
}

// ---- a man in the middle in front of the real board, real peers ----

// mitmRig: the device (initiator or responder) reaches the real board
// through a rewriting proxy; its peer talks to the board directly.
type mitmRig struct {
	b        *testBoard
	m        *mitm
	dev, oth *Client
	devID    *identity.PrivateKey
	othID    *identity.PrivateKey
	sink     *errSink
}

func newMITMRig(t *testing.T, rewrite func(bool, []byte) [][]byte, devOpts, othOpts Options) *mitmRig {
	t.Helper()
	r := &mitmRig{b: startBoard(t, board.Options{}), devID: mustKey(t), othID: mustKey(t), sink: newErrSink()}
	r.m = startMITM(t, r.b.url, rewrite)
	devOpts.Identity, othOpts.Identity = r.devID, r.othID
	devOpts.Logger = slog.New(r.sink)
	r.dev = dialBoard(t, &testBoard{url: r.m.url}, devOpts)
	r.oth = dialBoard(t, r.b, othOpts)
	return r
}

func reframe(t *testing.T, kind string, f *wire.Frame) [][]byte {
	return [][]byte{relayMsg(kind, f)}
}

// TestMITMKeySubstitution: the board (as a proxy on the device's link)
// swaps the peer's transport key. The device refuses the KEY answer
// with ErrPeerCheck and sends no signaling frame, so nothing is sealed
// to the substituted key.
func TestMITMKeySubstitution(t *testing.T) {
	evil := newFakePeer(t)
	for _, c := range []struct {
		name string
		f    func(t *testing.T, r *mitmRig, f *wire.Frame) [][]byte
	}{
		{"own binding, re-signed by the board", func(t *testing.T, r *mitmRig, f *wire.Frame) [][]byte {
			f.Binding = &evil.b
			return reframe(t, wire.FrameAnswer, signFrame(t, f, evil.id))
		}},
		{"own binding, peer's signature kept", func(t *testing.T, r *mitmRig, f *wire.Frame) [][]byte {
			f.Binding = &evil.b
			return reframe(t, wire.FrameAnswer, f)
		}},
		{"peer's binding of another transport key", func(t *testing.T, r *mitmRig, f *wire.Frame) [][]byte {
			f.Binding = bindingOf(t, r.othID, evil.tk.Public(), time.Now().Add(-time.Hour))
			return reframe(t, wire.FrameAnswer, f)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var r *mitmRig
			r = newMITMRig(t, rewriteFrame(wire.PhaseKey, wire.FrameAnswer, func(_ *wire.Envelope, f *wire.Frame) [][]byte {
				return c.f(t, r, f)
			}), Options{}, Options{})
			goBG(t, 30*time.Second, r.oth.Accept)
			waitPresence(t, r.oth)
			_, err := r.dev.Connect(ctxT(t, 20*time.Second), r.othID.Public())
			wantErr(t, err, ErrPeerCheck)
			fs := r.m.deviceFrames(t)
			if len(fs) != 1 || fs[0].Phase != wire.PhaseKey {
				t.Fatalf("the device sent %d frames; it sealed to the substituted key", len(fs))
			}
		})
	}
	t.Run("responder side", func(t *testing.T) {
		r := newMITMRig(t, rewriteFrame(wire.PhaseKey, wire.FrameOffer, func(_ *wire.Envelope, f *wire.Frame) [][]byte {
			f.Binding = &evil.b
			return reframe(t, wire.FrameOffer, signFrame(t, f, evil.id))
		}), Options{}, Options{})
		goBG(t, 30*time.Second, r.dev.Accept)
		waitPresence(t, r.dev)
		goBG(t, 30*time.Second, func(ctx context.Context) (*Session, error) { return r.oth.Connect(ctx, r.devID.Public()) })
		wantErr(t, r.sink.next(t), ErrPeerCheck)
		if fs := r.m.deviceFrames(t); len(fs) != 0 {
			t.Fatalf("the responder sent %d frames to an unverified initiator", len(fs))
		}
	})
}

// outboundChecks counts STUN messages a device sent to anyone but the
// board's STUN server: connectivity checks toward a peer.
func outboundChecks(n *recNet, stunServer string) int {
	c := 0
	for _, d := range n.datagrams() {
		if d.out && isSTUN(d.b) && d.remote != stunServer {
			c++
		}
	}
	return c
}

// TestHostilePeerTampersSealed: a real peer (through the tamper hook)
// flips a bit in its sealed SDP and signs the frame, so the board
// relays it. The other device refuses it with ErrPeerCheck and never
// applies it: it sends no connectivity check at all.
func TestHostilePeerTampersSealed(t *testing.T) {
	flip := func(id *identity.PrivateKey) func(string, *wire.Frame) {
		return func(phase string, f *wire.Frame) {
			if phase == wire.PhaseSignaling {
				f.Sealed = flipB64(f.Sealed, 200)
				wire.Sign(f, id)
			}
		}
	}
	t.Run("answer", func(t *testing.T) {
		b := startBoard(t, board.Options{})
		a, z := mustKey(t), mustKey(t)
		na := newRecNet(t)
		ca := dialBoard(t, b, Options{Identity: a, WebRTC: withNet(na, false)})
		cz := dialBoard(t, b, Options{Identity: z, ConnectTimeout: time.Second, tamper: flip(z)})
		goBG(t, 30*time.Second, cz.Accept)
		waitPresence(t, cz)
		_, err := ca.Connect(ctxT(t, 20*time.Second), z.Public())
		wantErr(t, err, ErrPeerCheck)
		if n := outboundChecks(na, b.stun.Addr().String()); n != 0 {
			t.Fatalf("the initiator sent %d connectivity checks: it applied the tampered answer", n)
		}
	})
	t.Run("offer", func(t *testing.T) {
		tap := &tapLog{}
		b := startBoard(t, board.Options{Tap: tap.tap})
		a, z := mustKey(t), mustKey(t)
		nz, sink := newRecNet(t), newErrSink()
		ca := dialBoard(t, b, Options{Identity: a, tamper: flip(a)})
		cz := dialBoard(t, b, Options{Identity: z, WebRTC: withNet(nz, false), Logger: slog.New(sink)})
		goBG(t, 30*time.Second, cz.Accept)
		waitPresence(t, cz)
		goBG(t, 30*time.Second, func(ctx context.Context) (*Session, error) { return ca.Connect(ctx, z.Public()) })
		wantErr(t, sink.next(t), ErrPeerCheck)
		if n := len(nz.datagrams()); n != 0 {
			t.Fatalf("the responder opened sockets and sent %d datagrams for a tampered offer", n)
		}
		if n := tap.count(true, func(e *wire.Envelope, f *wire.Frame) bool {
			return isSignaling(e, f) && e.FrameKind == wire.FrameAnswer
		}); n != 0 {
			t.Fatal("the responder answered a tampered offer")
		}
	})
}

// TestMITMReplaysEarlierSession: a complete real session through the
// proxy, then a second rendezvous in which the proxy replaces the
// peer's fresh KEY answer with the one from the first session (as
// relayed, and re-wrapped for the new match). The device ignores both,
// seals nothing, and the rendezvous ends when the channel closes.
func TestMITMReplaysEarlierSession(t *testing.T) {
	var mu sync.Mutex
	var recorded [][]byte
	replay := false
	rw := func(toDevice bool, msg []byte) [][]byte {
		if !toDevice {
			return [][]byte{msg}
		}
		var e wire.Envelope
		json.Unmarshal(msg, &e)
		mu.Lock()
		defer mu.Unlock()
		if e.Kind != wire.KindRelay {
			return [][]byte{msg}
		}
		if !replay {
			recorded = append(recorded, msg)
			return [][]byte{msg}
		}
		var f wire.Frame
		json.Unmarshal(e.Blob, &f)
		if f.Phase != wire.PhaseKey {
			return [][]byte{msg}
		}
		var old wire.Envelope
		json.Unmarshal(recorded[0], &old)
		rewrapped := wire.Marshal(&wire.Envelope{Kind: wire.KindRelay, MatchID: e.MatchID, FrameKind: old.FrameKind, Blob: old.Blob})
		return [][]byte{recorded[0], rewrapped, closedMsg(e.MatchID, "timeout")}
	}
	r := newMITMRig(t, rw, Options{}, Options{})
	sa, sz := pair(t, r.dev, r.oth)
	exchange(t, sa, sz, []byte("first session"))
	closeSessions(sa, sz)
	mu.Lock()
	if len(recorded) != 2 {
		mu.Unlock()
		t.Fatalf("recorded %d relays from the first session", len(recorded))
	}
	replay = true
	mu.Unlock()
	first := len(r.m.deviceFrames(t))

	goBG(t, 30*time.Second, r.oth.Accept)
	waitPresence(t, r.oth)
	_, err := r.dev.Connect(ctxT(t, 20*time.Second), r.othID.Public())
	wantErr(t, err, ErrChannelClosed)
	fs := r.m.deviceFrames(t)[first:]
	if len(fs) != 1 || fs[0].Phase != wire.PhaseKey {
		t.Fatalf("after the replay the device sent %d frames", len(fs))
	}
}
