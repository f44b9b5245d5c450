package main

import (
	"strings"
	"testing"
	"time"
)

// TestDialByKey: a device running 'keyhole daemon' is reached by its key
// alone, on every rung of the ladder: 'ping' reports the path, and 'cat'
// pipes through whatever wins. Everything is on loopback: a DHT testnet,
// a board, a community node with TURN.
func TestDialByKey(t *testing.T) {
	boot, _ := network(t)
	dhtArgs := []string{"--bootstrap", boot, "--dht-addr", "127.0.0.1:0", "--log-level", "error"}
	net := append([]string{"--relay", "none"}, dhtArgs...)

	infra := newHarness(t)
	boardURL := infra.background("board", "serve", "--addr", "127.0.0.1:0", "--log-level", "error")
	nodeURL := infra.background(append([]string{"node", "--addr", "127.0.0.1:0", "--turn-addr", "127.0.0.1:0",
		"--no-board", "--no-relay", "--pow-base", "2"}, dhtArgs...)...)

	dev := newHarness(t)
	dev.ok("", "id", "new", "--no-passphrase")
	key := dev.background(append([]string{"daemon", "--listen", "127.0.0.1:0", "--board", boardURL, "--node", nodeURL,
		"--echo", "--iface", "lo"}, net...)...)
	if len(key) != 52 {
		t.Fatalf("daemon printed %q, want its address", key)
	}

	me := newHarness(t)
	me.ok("", "id", "new", "--no-passphrase")
	dialArgs := append([]string{"--iface", "lo", "--timeout", "30s"}, net...)
	for _, tc := range []struct {
		path string
		want string
	}{
		{"", "direct"}, // all raced: the direct address wins on one machine
		{"punched", "punched"},
		{"relayed", "relayed"},
	} {
		args := append([]string{"ping", key, "-c", "3", "-i", "10ms"}, dialArgs...)
		if tc.path != "" {
			args = append(args, "--path", tc.path)
		}
		var r result
		// The record may take a moment to reach the DHT after the
		// daemon starts: retry the first dial briefly.
		for i := 0; ; i++ {
			r = me.run("", args...)
			if r.code == 0 || i == 20 {
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
		if r.code != 0 {
			t.Fatalf("ping --path %q: exit %d\n%s", tc.path, r.code, r.stderr)
		}
		if !strings.Contains(r.stderr, ": "+tc.want+" via ") || !strings.Contains(r.stdout, "3 sent, 3 echoed") {
			t.Fatalf("ping --path %q, want %s:\nstdout: %s\nstderr: %s", tc.path, tc.want, r.stdout, r.stderr)
		}
		t.Logf("%s: %s", tc.want, strings.TrimSpace(strings.Split(r.stdout, "\n")[3]))
	}
	r := me.ok("through the best path\n", append([]string{"cat", key}, dialArgs...)...)
	if r.stdout != "through the best path\n" {
		t.Fatalf("cat by key printed %q", r.stdout)
	}
	me.fails(2, "--path", "", append([]string{"ping", key, "--path", "carrier-pigeon"}, dialArgs...)...)
	stranger := "yryyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy"
	me.fails(1, "", "", append([]string{"ping", stranger, "--timeout", "3s"}, net...)...)
}
