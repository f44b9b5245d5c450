package main

import (
	"bufio"
	"context"
	"io"
	"strings"
	"testing"
	"time"
)

// background runs a keyhole command until the test ends and returns
// the first line it prints on stdout.
func (h *harness) background(args ...string) string {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan struct{})
	e := &env{
		stdin: strings.NewReader(""), stdout: pw, stderr: io.Discard,
		getenv: func(k string) string { return h.env[k] },
		now:    time.Now,
	}
	go func() {
		defer close(done)
		run(ctx, append([]string{"--home", h.home}, args...), e)
		pw.Close()
	}()
	h.t.Cleanup(func() { cancel(); <-done })
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		h.t.Fatalf("keyhole %v printed nothing: %v", args, err)
	}
	go io.Copy(io.Discard, pr)
	return strings.TrimSpace(line)
}

// startListen runs 'keyhole listen' and returns the address it prints.
func (h *harness) startListen(args ...string) string {
	h.t.Helper()
	return h.background(append([]string{"listen", "--addr", "127.0.0.1:0"}, args...)...)
}

func TestListenAndCat(t *testing.T) {
	h := newHarness(t)
	h.ok("", "id", "new", "--no-passphrase")
	addr := h.startListen("--echo")
	for _, transport := range [][]string{nil, {"--webrtc"}} {
		args := append([]string{"cat", addr}, transport...)
		r := h.ok("hello over one stream\n", args...)
		if r.stdout != "hello over one stream\n" {
			t.Fatalf("cat %v printed %q", transport, r.stdout)
		}
		if !strings.Contains(r.stderr, "connected to ") {
			t.Fatalf("cat %v did not say whom it reached: %q", transport, r.stderr)
		}
	}
	// A plain KPS dial is refused by a listener that wants identities,
	// with a reason that says what to do.
	r := h.run("x", "cat", "--plain", addr)
	if r.code != 1 || !strings.Contains(r.stderr, "keyhole: ") || !strings.Contains(r.stderr, "identity exchange") {
		t.Fatalf("plain dial to an identity listener: exit %d, %q", r.code, r.stderr)
	}
	// Asking for a key the listener does not hold fails the check by name.
	h.fails(1, "different key", "x", "cat", "--peer", "yryyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy", addr)
	// A certhash that is not the listener's.
	bad := addr[:len(addr)-2] + flip(addr[len(addr)-2]) + addr[len(addr)-1:]
	h.fails(1, "certhash", "x", "cat", bad)
	h.fails(2, "KPS address", "", "cat")
}

func TestListenPlain(t *testing.T) {
	h := newHarness(t)
	addr := h.startListen("--echo", "--plain")
	r := h.ok("plain\n", "cat", "--plain", addr)
	if r.stdout != "plain\n" || !strings.Contains(r.stderr, "plain KPS peer") {
		t.Fatalf("got %q / %q", r.stdout, r.stderr)
	}
}

func flip(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}
