package natlab_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyhole-p2p/keyhole/tests/natlab"
)

// keyholeBin is the keyhole CLI: $KEYHOLE_BIN, or built once.
var (
	binOnce sync.Once
	binPath string
	binErr  error
)

func keyholeBin(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		if p := os.Getenv("KEYHOLE_BIN"); p != "" {
			binPath = p
			return
		}
		dir, err := os.MkdirTemp("", "natlab-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "keyhole")
		_, file, _, _ := runtime.Caller(0)
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/keyhole")
		cmd.Dir = filepath.Join(filepath.Dir(file), "..", "..")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("building keyhole: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// proc is a keyhole process running in a lab host until the test ends.
type proc struct {
	cmd    *exec.Cmd
	first  string
	stderr *lockedBuf
}

type lockedBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// start runs keyhole args on h and waits for its first line of stdout.
// home is the keyhole home ("" for a fresh one).
func start(t *testing.T, h *natlab.Host, home string, args ...string) *proc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	if home == "" {
		home = t.TempDir()
	}
	cmd := h.Command(ctx, keyholeBin(t), append([]string{"--home", home}, args...)...)
	cmd.Env = append(os.Environ(), "KEYHOLE_RELAYS=none")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, stderr: &lockedBuf{}}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
	})
	lines := make(chan string, 1)
	go func() {
		br := bufio.NewReader(out)
		line, _ := br.ReadString('\n')
		lines <- strings.TrimSpace(line)
		io.Copy(io.Discard, br)
	}()
	select {
	case p.first = <-lines:
	case <-time.After(60 * time.Second):
	}
	if p.first == "" {
		t.Fatalf("keyhole %v on %s printed nothing; stderr:\n%s", args, h, p.stderr)
	}
	return p
}

// run runs keyhole args on h to completion, with home as keyhole home
// ("" for a fresh one).
func run(t *testing.T, h *natlab.Host, home string, timeout time.Duration, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if home == "" {
		home = t.TempDir()
	}
	cmd := h.Command(ctx, keyholeBin(t), append([]string{"--home", home}, args...)...)
	cmd.Env = append(os.Environ(), "KEYHOLE_RELAYS=none")
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// world is the public side of the lab: a DHT testnet, a board (with
// STUN) and a community node (STUN and TURN), on one public host.
type world struct {
	boot, board, node string
}

func newWorld(t *testing.T, l *natlab.Lab) *world {
	t.Helper()
	pub := l.Public()
	ip := pub.IP.String()
	start(t, pub, "", "dht", "testnet", "--host", ip, "--port", "6881", "--nodes", "20")
	w := &world{boot: ip + ":6881"}
	w.board = start(t, pub, "", "board", "serve", "--addr", ip+":8443", "--log-level", "error").first
	w.node = start(t, pub, "", "node", "--addr", ip+":8081", "--turn-addr", ip+":3478", "--no-board", "--no-relay",
		"--pow-base", "4", "--bootstrap", w.boot, "--dht-addr", ip+":0", "--log-level", "error").first
	return w
}

// device runs 'keyhole daemon' on h: a direct listener on all its
// addresses, presence on the board, echo; it returns the device's key.
func (w *world) device(t *testing.T, h *natlab.Host) string {
	t.Helper()
	home := t.TempDir()
	if _, stderr, err := run(t, h, home, 10*time.Second, "id", "new", "--no-passphrase"); err != nil {
		t.Fatalf("id new: %v: %s", err, stderr)
	}
	p := start(t, h, home, "daemon", "--listen", "0.0.0.0:4242", "--board", w.board, "--node", w.node, "--echo",
		"--bootstrap", w.boot, "--dht-addr", "0.0.0.0:0", "--relay", "none", "--log-level", "warn")
	if len(p.first) != 52 {
		t.Fatalf("daemon on %s printed %q", h, p.first)
	}
	return p.first
}

var connected = regexp.MustCompile(`connected to \S+: (\w+) via (\S+) \(record (\S+), connect (\S+);`)

// pingResult is one dial across the lab.
type pingResult struct {
	path, via       string
	record, connect time.Duration
	stdout, stderr  string
	err             error
}

// ping dials key from h by key alone and sends three echoes.
func (w *world) ping(t *testing.T, h *natlab.Host, key string, extra ...string) pingResult {
	t.Helper()
	args := append([]string{"ping", key, "-c", "3", "-i", "20ms", "--bootstrap", w.boot, "--dht-addr", "0.0.0.0:0",
		"--relay", "none", "--timeout", "30s", "--log-level", "warn"}, extra...)
	var r pingResult
	// The record reaches the DHT a moment after the daemon starts.
	for i := 0; ; i++ {
		r.stdout, r.stderr, r.err = run(t, h, "", 45*time.Second, args...)
		if r.err == nil || i == 5 || !strings.Contains(r.stderr, "no record") {
			break
		}
		time.Sleep(time.Second)
	}
	if m := connected.FindStringSubmatch(r.stderr); m != nil {
		r.path, r.via = m[1], m[2]
		r.record, _ = time.ParseDuration(m[3])
		r.connect, _ = time.ParseDuration(m[4])
	}
	if r.err == nil && !strings.Contains(r.stdout, "3 sent, 3 echoed") {
		r.err = fmt.Errorf("not every echo came back")
	}
	return r
}

// TestMatrix dials every NAT type from every NAT type, by key alone, and
// requires every pair to connect. It records the path each pair took
// and checks the ones the network decides: a device with a public
// address is reached directly; two symmetric NATs (and symmetric with
// port-restricted, which a UDP punch cannot open either, see TestPunch)
// go through TURN; every other pair punches through.
func TestMatrix(t *testing.T) {
	l := natlab.New(t, natlab.Options{})
	w := newWorld(t, l)
	types := []natlab.NATType{natlab.None, natlab.FullCone, natlab.Restricted, natlab.PortRestricted, natlab.Symmetric}
	keys := map[natlab.NATType]string{}
	dialers := map[natlab.NATType]*natlab.Host{}
	for _, nt := range types {
		keys[nt] = w.device(t, l.Private(nt, natlab.LinkOptions{}))
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
			r := w.ping(t, dialers[from], keys[to])
			cell := fmt.Sprintf(" %s %s |", r.path, r.connect)
			switch {
			case r.err != nil:
				failed++
				cell = " FAILED |"
				t.Errorf("%s -> %s: %v\nstderr: %s", from, to, r.err, r.stderr)
			case r.path != expect(from, to):
				t.Errorf("%s -> %s went %s via %s, want %s", from, to, r.path, r.via, expect(from, to))
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
	w := newWorld(t, l)
	lossy := natlab.LinkOptions{LossPercent: 10}
	for _, tc := range []struct{ from, to natlab.NATType }{
		{natlab.PortRestricted, natlab.PortRestricted},
		{natlab.Symmetric, natlab.Symmetric},
	} {
		key := w.device(t, l.Private(tc.to, lossy))
		r := w.ping(t, l.Private(tc.from, lossy), key)
		if r.err != nil {
			t.Fatalf("%s -> %s over 10%% loss: %v\nstderr: %s", tc.from, tc.to, r.err, r.stderr)
		}
		t.Logf("%s -> %s over 10%% loss each way: %s in %s", tc.from, tc.to, r.path, r.connect)
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
	w := newWorld(t, l)
	devHost := l.Private(natlab.PortRestricted, natlab.LinkOptions{})
	dialer := l.Private(natlab.PortRestricted, natlab.LinkOptions{})
	key := w.device(t, devHost)
	unblock, err := l.Block(devHost, dialer)
	if err != nil {
		t.Fatal(err)
	}
	defer unblock()

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := dialer.Command(ctx, keyholeBin(t), "--home", t.TempDir(), "ping", key, "-c", "40", "-i", "250ms",
		"--bootstrap", w.boot, "--dht-addr", "0.0.0.0:0", "--relay", "none", "--timeout", "30s", "--log-level", "warn")
	cmd.Env = append(os.Environ(), "KEYHOLE_RELAYS=none")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &lockedBuf{}
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
