package natlab_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/keyhole-p2p/keyhole/tests/natlab"
)

// TestMatrix dials every NAT type from every NAT type, by key alone, and
// requires every pair to connect. It records the path each pair took
// and checks the ones the network decides: a device with a public
// address is reached directly; two symmetric NATs (and symmetric with
// port-restricted, which a UDP punch cannot open either, see TestPunch)
// go through TURN; every other pair punches through.
func TestMatrix(t *testing.T) {
	l := natlab.New(t, natlab.Options{})
	w := natlab.NewWorld(t, l)
	types := []natlab.NATType{natlab.None, natlab.FullCone, natlab.Restricted, natlab.PortRestricted, natlab.Symmetric}
	keys := map[natlab.NATType]string{}
	dialers := map[natlab.NATType]*natlab.Host{}
	for _, nt := range types {
		keys[nt] = w.Device(t, l.Private(nt, natlab.LinkOptions{}))
		dialers[nt] = l.Private(nt, natlab.LinkOptions{})
	}
	expect := func(from, to natlab.NATType) string {
		switch {
		case to == natlab.None:
			return "direct"
		case from == natlab.Symmetric && (to == natlab.Symmetric || to == natlab.PortRestricted),
			to == natlab.Symmetric && from == natlab.PortRestricted:
			return "relayed"
		}
		return "punched"
	}
	var table strings.Builder
	fmt.Fprintf(&table, "\n| dialer \\ device | %s |\n|---|%s\n", joinTypes(types), strings.Repeat("---|", len(types)))
	failed := 0
	for _, from := range types {
		fmt.Fprintf(&table, "| %s |", from)
		for _, to := range types {
			r := w.Ping(t, dialers[from], keys[to])
			cell := fmt.Sprintf(" %s %s |", r.Path, r.Connect)
			switch {
			case r.Err != nil:
				failed++
				cell = " FAILED |"
				t.Errorf("%s -> %s: %v\nstderr: %s", from, to, r.Err, r.Stderr)
			case r.Path != expect(from, to):
				t.Errorf("%s -> %s went %s via %s, want %s", from, to, r.Path, r.Via, expect(from, to))
			}
			table.WriteString(cell)
		}
		table.WriteString("\n")
	}
	t.Logf("paths and connect times (after the record was found):%s", table.String())
	if failed > 0 {
		t.Fatalf("%d of %d pairs did not connect", failed, len(types)*len(types))
	}
}

// TestLossyLinks: a dial by key still connects and echoes when both
// devices' links drop a tenth of all packets each way.
func TestLossyLinks(t *testing.T) {
	l := natlab.New(t, natlab.Options{})
	w := natlab.NewWorld(t, l)
	lossy := natlab.LinkOptions{LossPercent: 10}
	for _, tc := range []struct{ from, to natlab.NATType }{
		{natlab.PortRestricted, natlab.PortRestricted},
		{natlab.Symmetric, natlab.Symmetric},
	} {
		key := w.Device(t, l.Private(tc.to, lossy))
		// Handshakes retransmit on their own timers (DTLS flights, SCTP
		// INIT), so a lossy dial takes longer: give it a minute.
		r := w.Ping(t, l.Private(tc.from, lossy), key, "--timeout", "60s")
		if r.Err != nil {
			t.Fatalf("%s -> %s over 10%% loss: %v\nstderr: %s", tc.from, tc.to, r.Err, r.Stderr)
		}
		t.Logf("%s -> %s over 10%% loss each way: %s in %s", tc.from, tc.to, r.Path, r.Connect)
	}
}

func joinTypes(ts []natlab.NATType) string {
	var s []string
	for _, t := range ts {
		s = append(s, string(t))
	}
	return strings.Join(s, " | ")
}

// TestRelayUpgradedToPunch: two devices behind port-restricted NATs
// whose direct path is blocked connect through TURN; once the block is
// lifted, ICE renomination moves the connection to a punched pair while
// the same stream keeps echoing.
func TestRelayUpgradedToPunch(t *testing.T) {
	l := natlab.New(t, natlab.Options{})
	w := natlab.NewWorld(t, l)
	devHost := l.Private(natlab.PortRestricted, natlab.LinkOptions{})
	dialer := l.Private(natlab.PortRestricted, natlab.LinkOptions{})
	key := w.Device(t, devHost)
	unblock, err := l.Block(devHost, dialer)
	if err != nil {
		t.Fatal(err)
	}
	defer unblock()

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := dialer.Command(ctx, natlab.KeyholeBin(t), "--home", t.TempDir(), "ping", key, "-c", "40", "-i", "250ms",
		"--bootstrap", w.Boot, "--dht-addr", "0.0.0.0:0", "--relay", "none", "--timeout", "30s", "--log-level", "warn")
	cmd.Env = append(os.Environ(), "KEYHOLE_RELAYS=none")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &strings.Builder{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	seqPath := regexp.MustCompile(`^seq=(\d+) rtt=\S+ ms path=(\w+)$`)
	var paths []string
	sc := bufio.NewScanner(out)
	lifted := -1
	for sc.Scan() {
		m := seqPath.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		paths = append(paths, m[2])
		if len(paths) == 1 {
			if m[2] != "relayed" {
				cancel()
				cmd.Wait()
				t.Fatalf("with the direct path blocked the first echo went %s; stderr:\n%s", m[2], stderr)
			}
			if err := unblock(); err != nil {
				t.Fatal(err)
			}
			lifted = len(paths)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("ping: %v (after %d echoes, paths %v); stderr:\n%s", err, len(paths), paths, stderr)
	}
	if len(paths) != 40 {
		t.Fatalf("%d of 40 echoes came back: %v", len(paths), paths)
	}
	moved := -1
	for i, p := range paths {
		if p == "punched" {
			moved = i + 1
			break
		}
	}
	t.Logf("paths: %v", paths)
	if moved < 0 {
		t.Fatalf("the connection stayed on the relay for %d echoes after the block was lifted", len(paths)-lifted)
	}
	for _, p := range paths[moved-1:] {
		if p != "punched" {
			t.Fatalf("after moving to a punched pair the connection went back to %s: %v", p, paths)
		}
	}
	t.Logf("relayed until echo %d, punched from echo %d (block lifted after echo %d, 250 ms apart), same stream throughout", moved-1, moved, lifted)
}

// TestRepublishOnNetworkChange: when a device's addresses change, its
// daemon republishes its record at once, and a dialer that resolves the
// key then finds the new address.
func TestRepublishOnNetworkChange(t *testing.T) {
	l := natlab.New(t, natlab.Options{})
	w := natlab.NewWorld(t, l)
	dev := l.Private(natlab.None, natlab.LinkOptions{}) // a public host: its addresses are what it publishes
	key := w.Device(t, dev)
	other := l.Private(natlab.PortRestricted, natlab.LinkOptions{})
	resolveHas := func(addr string) bool {
		out, _, err := natlab.RunKeyhole(t, other, "", 20*time.Second, "resolve", key, "--bootstrap", w.Boot,
			"--dht-addr", "0.0.0.0:0", "--relay", "none", "--log-level", "error")
		return err == nil && strings.Contains(out, addr+":4242:")
	}
	waitFor := func(what string, ok func() bool) {
		deadline := time.Now().Add(40 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("%s within 40 s", what)
			}
			time.Sleep(time.Second)
		}
	}
	waitFor("the record names the device's address", func() bool { return resolveHas(dev.IP.String()) })
	const moved = "203.0.113.77"
	if out, err := dev.Command(context.Background(), "ip", "addr", "add", moved+"/24", "dev", "eth0").CombinedOutput(); err != nil {
		t.Fatalf("adding an address: %v: %s", err, out)
	}
	t0 := time.Now()
	waitFor("the record names the new address", func() bool { return resolveHas(moved) })
	t.Logf("the new address was in the record %v after it appeared", time.Since(t0).Round(100*time.Millisecond))
	// And a dial by key reaches it there once the old address is gone.
	// (Deleting a primary address deletes the secondaries of its subnet
	// too unless they are promoted.)
	if err := dev.Run(func() error {
		return os.WriteFile("/proc/sys/net/ipv4/conf/eth0/promote_secondaries", []byte("1"), 0o644)
	}); err != nil {
		t.Fatalf("promote_secondaries: %v", err)
	}
	if out, err := dev.Command(context.Background(), "ip", "addr", "del", dev.IP.String()+"/24", "dev", "eth0").CombinedOutput(); err != nil {
		t.Fatalf("removing the old address: %v: %s", err, out)
	}
	waitFor("the old address leaves the record", func() bool { return !resolveHas(dev.IP.String()) })
	r := w.Ping(t, other, key)
	if r.Err != nil || r.Path != "direct" || !strings.HasPrefix(r.Via, moved+":4242:") {
		t.Fatalf("after the move: path %s via %s, err %v\n%s", r.Path, r.Via, r.Err, r.Stderr)
	}
}
