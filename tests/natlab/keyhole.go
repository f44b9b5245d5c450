package natlab

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
)

// KeyholeBin is the keyhole CLI the lab runs: $KEYHOLE_BIN, or the
// repository's cmd/keyhole built once per process.
var (
	binOnce sync.Once
	binPath string
	binErr  error
)

func KeyholeBin(t testing.TB) string {
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

// Proc is a keyhole process running in a lab host until the test ends.
type Proc struct {
	cmd *exec.Cmd
	// First is the first line it printed on stdout (an address, a URL).
	First  string
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

// Start runs keyhole args on h until the test ends and waits for its
// first line of stdout. home is the keyhole home ("" for a fresh one).
func Start(t testing.TB, h *Host, home string, args ...string) *Proc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	if home == "" {
		home = t.TempDir()
	}
	cmd := h.Command(ctx, KeyholeBin(t), append([]string{"--home", home}, args...)...)
	cmd.Env = append(os.Environ(), "KEYHOLE_RELAYS=none")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &Proc{cmd: cmd, stderr: &lockedBuf{}}
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
	case p.First = <-lines:
	case <-time.After(60 * time.Second):
	}
	if p.First == "" {
		t.Fatalf("keyhole %v on %s printed nothing; stderr:\n%s", args, h, p.stderr)
	}
	return p
}

// RunKeyhole runs keyhole args on h to completion, with home as keyhole
// home ("" for a fresh one).
func RunKeyhole(t testing.TB, h *Host, home string, timeout time.Duration, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if home == "" {
		home = t.TempDir()
	}
	cmd := h.Command(ctx, KeyholeBin(t), append([]string{"--home", home}, args...)...)
	cmd.Env = append(os.Environ(), "KEYHOLE_RELAYS=none")
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// World is the public side of a lab: a DHT testnet, a board (with STUN)
// and a community node (STUN and TURN), on one public host: everything a
// device behind a NAT needs to be reached by its key.
type World struct {
	Boot, Board, Node string
}

// NewWorld starts a World on a new public host of l.
func NewWorld(t testing.TB, l *Lab) *World {
	t.Helper()
	pub := l.Public()
	ip := pub.IP.String()
	Start(t, pub, "", "dht", "testnet", "--host", ip, "--port", "6881", "--nodes", "20")
	w := &World{Boot: ip + ":6881"}
	w.Board = Start(t, pub, "", "board", "serve", "--addr", ip+":8443", "--log-level", "error").First
	w.Node = Start(t, pub, "", "node", "--addr", ip+":8081", "--turn-addr", ip+":3478", "--no-board", "--no-relay",
		"--pow-base", "4", "--bootstrap", w.Boot, "--dht-addr", ip+":0", "--log-level", "error").First
	return w
}

// Device runs 'keyhole daemon' on h (a new identity, a direct listener
// on all its addresses, presence on the board, echo) and returns the
// device's key.
func (w *World) Device(t testing.TB, h *Host) string {
	t.Helper()
	home := t.TempDir()
	if _, stderr, err := RunKeyhole(t, h, home, 10*time.Second, "id", "new", "--no-passphrase"); err != nil {
		t.Fatalf("id new: %v: %s", err, stderr)
	}
	p := Start(t, h, home, "daemon", "--listen", "0.0.0.0:4242", "--board", w.Board, "--node", w.Node, "--echo",
		"--bootstrap", w.Boot, "--dht-addr", "0.0.0.0:0", "--relay", "none", "--log-level", "warn")
	if len(p.First) != 52 {
		t.Fatalf("daemon on %s printed %q", h, p.First)
	}
	return p.First
}

var firstRTT = regexp.MustCompile(`(?m)^seq=1 rtt=(\S+) ms`)

var connected = regexp.MustCompile(`connected to \S+: (\w+) via (\S+) \(record (\S+), connect (\S+);`)

// PingResult is one dial across the lab, as 'keyhole ping' reported it.
type PingResult struct {
	Path, Via       string        // the path that won and where it went
	Record, Connect time.Duration // time to the record, then to the connection
	FirstRTT        time.Duration // the first echo's round trip
	Stdout, Stderr  string
	Err             error
}

// Ping dials key from h by key alone and sends three echoes; extra are
// more ping flags.
func (w *World) Ping(t testing.TB, h *Host, key string, extra ...string) PingResult {
	t.Helper()
	args := append([]string{"ping", key, "-c", "3", "-i", "20ms", "--bootstrap", w.Boot, "--dht-addr", "0.0.0.0:0",
		"--relay", "none", "--timeout", "30s", "--log-level", "warn"}, extra...)
	var r PingResult
	// The record reaches the DHT a moment after the daemon starts.
	for i := 0; ; i++ {
		r.Stdout, r.Stderr, r.Err = RunKeyhole(t, h, "", 90*time.Second, args...)
		if r.Err == nil || i == 5 || !strings.Contains(r.Stderr, "no record") {
			break
		}
		time.Sleep(time.Second)
	}
	if m := connected.FindStringSubmatch(r.Stderr); m != nil {
		r.Path, r.Via = m[1], m[2]
		r.Record, _ = time.ParseDuration(m[3])
		r.Connect, _ = time.ParseDuration(m[4])
	}
	if m := firstRTT.FindStringSubmatch(r.Stdout); m != nil {
		r.FirstRTT, _ = time.ParseDuration(m[1] + "ms")
	}
	if r.Err == nil && !strings.Contains(r.Stdout, "3 sent, 3 echoed") {
		r.Err = fmt.Errorf("not every echo came back")
	}
	return r
}
