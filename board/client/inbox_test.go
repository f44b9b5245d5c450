package client

// Frames that arrive right behind their match. The board sends a
// responder that reconnects (after a push wake-up, ORP 7.5) its match
// and the initiator's held KEY offer back to back, and a channel may
// close at once; the client must route them to the match even though
// Accept or Connect has not picked the match up yet.

import (
	"context"
	"testing"
	"time"

	"github.com/keyhole-p2p/keyhole/board"
	"github.com/keyhole-p2p/keyhole/board/wire"
)

// TestFramesRightBehindMatch: match and KEY offer (or channel_closed)
// sent in one burst, many times over, are never lost.
func TestFramesRightBehindMatch(t *testing.T) {
	t.Run("key offer", func(t *testing.T) {
		r := newRespRig(t, nil)
		for i := range 20 {
			p := newFakePeer(t)
			id := wire.NewNonce()
			off := r.keyOffer(t, p, id)
			r.ec.sendT(t, matchMsg(id, wire.RoleResponder, p.pub()))
			r.ec.sendT(t, relayMsg(wire.FrameOffer, off))
			ka := frameOf(t, r.ec.next(t, wire.KindRelay))
			if ka.MatchID != id || ka.Phase != wire.PhaseKey {
				t.Fatalf("round %d: answered %+v", i, ka)
			}
			// End this match so Accept takes the next one.
			r.ec.sendT(t, closedMsg(id, "timeout"))
			wantErr(t, r.sink.next(t), ErrChannelClosed)
		}
	})
	t.Run("channel_closed", func(t *testing.T) {
		r := newRespRig(t, nil)
		for range 20 {
			id := wire.NewNonce()
			r.ec.sendT(t, matchMsg(id, wire.RoleResponder, newFakePeer(t).pub()))
			r.ec.sendT(t, closedMsg(id, "timeout"))
			wantErr(t, r.sink.next(t), ErrChannelClosed)
		}
	})
}

// TestPushWokenResponder: the real board matches an intent with a
// presence whose device has gone; the initiator's KEY offer waits on the
// board. The device comes back, presents again, gets its match and the
// held offer in one burst, and the session is set up.
func TestPushWokenResponder(t *testing.T) {
	tap := &tapLog{}
	b := startBoard(t, board.Options{Tap: tap.tap})
	a, z := mustKey(t), mustKey(t)
	ca := dialBoard(t, b, Options{Identity: a})
	gone := dialBoard(t, b, Options{Identity: z})
	if err := gone.Announce(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	gone.Close()
	// Wait until the board, too, has let the connection go: the
	// presence stays in its table without one.
	for deadline := time.Now().Add(10 * time.Second); b.srv.Stats().Connections != 1; {
		if time.Now().After(deadline) {
			t.Fatal("the board kept the closed connection")
		}
		time.Sleep(5 * time.Millisecond)
	}
	res, _ := goBG(t, 30*time.Second, func(ctx context.Context) (*Session, error) { return ca.Connect(ctx, z.Public()) })
	deadline := time.Now().Add(10 * time.Second)
	for tap.count(true, func(e *wire.Envelope, f *wire.Frame) bool {
		return e.Kind == wire.KindRelay && f.Phase == wire.PhaseKey
	}) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the initiator's KEY offer never reached the board")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cz := dialBoard(t, b, Options{Identity: z})
	sz, err := cz.Accept(ctxT(t, 20*time.Second))
	if err != nil {
		t.Fatalf("accept: %v", err)
	}
	sa, err := wait(t, res, 20*time.Second)
	if err != nil {
		sz.Close()
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { closeSessions(sa, sz) })
	exchange(t, sa, sz, []byte("woken up"))
}
