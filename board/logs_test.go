package board

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyhole-p2p/keyhole/board/wire"
	"github.com/keyhole-p2p/keyhole/identity"
)

// pathPusher fails, panics or succeeds by the endpoint's path, and puts
// the endpoint into its error and its panic, as a careless pusher would.
type pathPusher struct{}

func (pathPusher) Push(_ context.Context, endpoint string) error {
	switch {
	case strings.Contains(endpoint, "/panic/"):
		panic("cannot push to " + endpoint)
	case strings.Contains(endpoint, "/fail/"):
		return fmt.Errorf("%w: %s", errPushFailed, endpoint)
	}
	return nil
}

// tapAll collects every message two boards receive and send.
type tapAll struct {
	mu   sync.Mutex
	msgs [][]byte
}

func (a *tapAll) tap(_ bool, msg []byte) {
	a.mu.Lock()
	a.msgs = append(a.msgs, slices.Clone(msg))
	a.mu.Unlock()
}

var timestampRE = regexp.MustCompile(`^\d{4}-\d\d-\d\dT`)

// secrets returns every identifying value the boards saw: keys, nonces,
// match ids, signatures, sealed blobs, push endpoints, and the other
// spellings of the binary ones.
func (a *tapAll) secrets(t *testing.T) map[string]bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[string]bool{}
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, v := range x {
				if k == "reason" || k == "kind" || k == "code" {
					continue
				}
				walk(v)
			}
		case []any:
			for _, v := range x {
				walk(v)
			}
		case string:
			if len(x) < 16 || strings.ContainsAny(x, " \"") || timestampRE.MatchString(x) || strings.HasPrefix(x, "ws://") || strings.HasPrefix(x, "stun:") {
				return
			}
			out[x] = true
			if raw, err := wire.B64.DecodeString(x); err == nil {
				out[hex.EncodeToString(raw)] = true
				out[base64.StdEncoding.EncodeToString(raw)] = true
				if len(raw) == 32 {
					var k identity.PublicKey
					copy(k[:], raw)
					out[k.String()] = true
				}
			}
		}
	}
	for _, m := range a.msgs {
		var v any
		if json.Unmarshal(m, &v) == nil {
			walk(v)
		}
	}
	return out
}

// TestLogsCarryNoSecrets runs real sessions, rejections, timeouts with
// failing pushes and propagation on two boards logging at Debug level,
// and checks that nothing the devices sent appears in the log.
func TestLogsCarryNoSecrets(t *testing.T) {
	t.Parallel()
	const ttl = 200 * time.Millisecond
	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	taps := &tapAll{}
	ta, tb := newTestBoard(t), newTestBoard(t)
	opts := func(self string, peers ...string) Options {
		return Options{Logger: logger, Tap: taps.tap, Pusher: pathPusher{}, ChannelTTL: ttl, PublicURL: self, Peers: peers}
	}
	unreachable := "ws://" + closedPort(t) + "/"
	a := ta.start(t, opts(ta.url, tb.url, unreachable))
	b := tb.start(t, opts(tb.url))
	eventually(t, "the link", func() bool { return b.srv.Stats().Neighbors == 1 })

	// A rendezvous that completes.
	p := matchPair(t, a)
	p.keyPhase(t)
	p.pass(t, wire.FrameOffer, wire.PhaseSignaling)
	p.pass(t, wire.FrameAnswer, wire.PhaseSignaling)
	expectChannelClosed(t, p.ic, p.id, "complete")

	// Rejections of every sort.
	c := dial(t, a)
	forged := newPresence(t, newKey(t), a.now(), nil, "")
	forged.Signature = flipSig(forged.Signature, 7)
	c.send(presenceEnv(t, forged, "f"))
	c.expectRejected("bad_signature")
	rp := presenceEnv(t, newPresence(t, newKey(t), a.now(), nil, ""), "r")
	c.send(rp)
	c.expectAck("r")
	c.send(rp)
	c.expectRejected("replay")
	c.write([]byte(`{"kind":"` + wire.NewNonce() + `"}`))
	c.expectRejected("bad_message")
	c.send(relayEnv(t, newFrame(t, newKey(t), newKey(t).Public(), wire.NewNonce(), wire.FrameOffer, wire.PhaseSignaling, a.now()), "n"))
	c.expectRejected("no_channel")

	// Timeouts whose pushes panic and fail with the endpoint in hand.
	timedOutPair(t, a, ttl, "https://push.example/panic/"+wire.NewNonce())
	timedOutPair(t, a, ttl, "https://push.example/fail/"+wire.NewNonce())
	timedOutPair(t, a, ttl, "https://push.example/ok/"+wire.NewNonce())
	eventually(t, "the pushes", func() bool { st := a.srv.Stats(); return st.PushesFailed == 2 && st.PushesSent == 1 })

	// Propagation, a referral, and a tampered record from the link.
	dk := newKey(t)
	present(t, dial(t, a), a, dk, []string{b.url}, "https://push.example/ok/"+wire.NewNonce())
	eventually(t, "the propagation", func() bool { ok, _ := presenceOf(b, dk.Public()); return ok })
	ic := dial(t, b)
	ic.send(intentEnv(t, newIntent(t, newKey(t), dk.Public(), b.now()), "i"))
	ic.expectAck("i")
	ic.expect(wire.KindReferral)
	n := dialNeighbour(t, b, "ws://fake.example/")
	bad := toMap(t, newPresence(t, newKey(t), b.now(), []string{b.url}, ""))
	bad["signature"] = flipSig(bad["signature"].(string), 12)
	drops := b.srv.Stats().PropagationDrops
	n.write(wire.Marshal(propagateEnv(t, "presence", bad, 1, "ws://fake.example/")))
	eventually(t, "the drop", func() bool { return b.srv.Stats().PropagationDrops == drops+1 })

	log := logs.String()
	// Positive controls: the log is wired up and these paths logged.
	for _, want := range []string{"neighbour unreachable", "panicked", "push failed"} {
		if !strings.Contains(log, want) {
			t.Fatalf("the log lacks %q:\n%s", want, log)
		}
	}
	secrets := taps.secrets(t)
	for _, must := range []string{b64(p.ik), b64(p.rk), p.id, b64(dk), p.ik.Public().String()} {
		if !secrets[must] {
			t.Fatalf("the tap missed %s", must)
		}
	}
	if len(secrets) < 50 {
		t.Fatalf("only %d values tapped", len(secrets))
	}
	for s := range secrets {
		if strings.Contains(log, s) {
			t.Errorf("the log contains %q", s)
		}
	}
	if t.Failed() {
		t.Logf("log:\n%s", log)
	}
}
