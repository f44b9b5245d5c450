package main

import (
	"strings"
	"testing"
)

// TestBoardRendezvous: two devices that know only each other's keys
// meet through 'keyhole board serve' and talk over a direct data
// channel, as the README shows. Candidates stay on loopback (--iface lo).
func TestBoardRendezvous(t *testing.T) {
	srv, a, b := newHarness(t), newHarness(t), newHarness(t)
	url := srv.background("board", "serve", "--addr", "127.0.0.1:0", "--log-level", "error")
	if !strings.HasPrefix(url, "ws://127.0.0.1:") {
		t.Fatalf("board serve printed %q", url)
	}
	a.ok("", "id", "new", "--no-passphrase")
	b.ok("", "id", "new", "--no-passphrase")
	aKey := strings.Fields(a.ok("", "id", "show").stdout)
	bAddr := b.background("board", "wait", "--board", url, "--iface", "lo", "--echo")
	if len(bAddr) != 52 {
		t.Fatalf("board wait printed %q, want an address", bAddr)
	}
	r := a.ok("hello through the board\n", "board", "connect", "--board", url, "--iface", "lo", bAddr)
	if r.stdout != "hello through the board\n" {
		t.Fatalf("echo came back as %q", r.stdout)
	}
	if !strings.Contains(r.stderr, "connected to "+bAddr+" directly") {
		t.Fatalf("connect did not say whom it reached: %q", r.stderr)
	}
	if len(aKey) == 0 || !strings.Contains(r.stderr, "(this device: ") {
		t.Fatalf("connect did not show its own identity: %q", r.stderr)
	}

	// A device that answers only one key ignores everyone else.
	c := newHarness(t)
	cAddr := c.background("board", "wait", "--board", url, "--iface", "lo", "--echo", "--allow", bAddr)
	a.fails(1, "did not answer", "x", "board", "connect", "--board", url, "--iface", "lo", "--timeout", "3s", cAddr)

	a.fails(2, "--board is required", "", "board", "connect", bAddr)
	a.fails(2, "not a device address", "", "board", "connect", "--board", url, "nope")
	a.fails(2, "--relay-only needs a TURN server", "", "board", "connect", "--board", url, "--relay-only", bAddr)
	a.fails(1, "not a board URL", "", "board", "connect", "--board", "http://127.0.0.1:1/", bAddr)
}
