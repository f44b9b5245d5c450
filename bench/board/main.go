// Command board measures keyhole's blind rendezvous board (package board)
// over real WebSockets (github.com/coder/websocket) on 127.0.0.1, in one
// run:
//
//  1. Memory per waiting device. N devices each open their own WebSocket,
//     read the hello, send one signed presence, get its ack and then wait,
//     reading, as a device waiting to be found does. The peer is a bare
//     coder/websocket server that accepts the same connections, sends the
//     same hello, acks every message and holds each connection in a Read:
//     the cost of a WebSocket alone. The clients are the same code with
//     both servers. Heap (runtime.ReadMemStats after a GC: HeapAlloc) and
//     goroutine stacks (StackInuse) are measured before and after, minus a
//     baseline taken after one warm-up device, divided by N. Measured two
//     ways: (a) board and clients in one process (a fresh child process
//     per case): the figure covers both ends of every connection, and
//     board minus bare cancels the clients, whose code is identical; (b)
//     the server in a child process of its own and the clients in this
//     one: the server's figure alone, and the clients' alone, so the
//     board/bare ratio compares servers only. After (b)'s devices leave,
//     what the board still holds (their presences stay in the table until
//     superseded or evicted) is the cost of a table entry.
//  2. Matches per second. M responders wait (one WebSocket and identity
//     each); initiators (a fresh identity per match, several on each of a
//     few WebSockets) send signed intents, and each match is carried
//     through the whole protocol: intent -> match delivered to both ->
//     KEY offer and answer (signed wire.Frame with a valid
//     identity.Binding) -> SIGNALING offer and answer (signed frames with
//     a random 1-2 KB base64url blob as "sealed"; no WebRTC: this measures
//     the board) -> channel_closed "complete" delivered to both. The board
//     runs in a child process with its rate limits and channel caps
//     raised so that none of them throttles the run; its CPU time and the
//     clients' (this process) are read around the timed window. Intents
//     and bindings are signed before the window; the four frames need the
//     board's match_id and are signed inside it. The devices do not verify
//     what they receive (a real device verifies two frames and a binding
//     per match; that is its cost, not the board's). One run with one
//     match in flight gives the unloaded latency, one with -inflight
//     matches in flight the throughput.
//  3. Context for 2: ed25519 verifications per second on this machine,
//     measured in the same run (crypto/ed25519.Verify, the board's
//     identity.VerifyStrict, and the wire-level checks the board makes on
//     every record and frame). The board verifies 5 signatures per match
//     (the intent and four frames), so NumCPU x verifies/s / 5 is the
//     ceiling if the board did nothing but verify.
//
// Every loop is bounded in count and the whole run in time (-timeout).
// The open-file limit is raised to its hard limit at start (one process
// holds up to 2 x -devices sockets in 1a), and the run stops early if the
// limit is still too low.
//
//	go run ./bench/board
package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"github.com/keyhole-p2p/keyhole/bench/internal/measure"
	"io"
	"math"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/time/rate"

	"github.com/keyhole-p2p/keyhole/board"
	"github.com/keyhole-p2p/keyhole/board/wire"
	"github.com/keyhole-p2p/keyhole/identity"
)

type config struct {
	devices        int
	responders     int
	matches        int
	matchTime      time.Duration
	inflight       int
	initConns      int
	warmup         int
	latencyMatches int
	verifyTime     time.Duration
	timeout        time.Duration
	profileDir     string
	only           map[string]bool
}

func (c config) want(k string) bool { return len(c.only) == 0 || c.only[k] }

func main() {
	var cfg config
	flag.IntVar(&cfg.devices, "devices", 2000, "waiting devices (WebSockets) for the memory measurement")
	flag.IntVar(&cfg.responders, "responders", 1000, "waiting responders for the match measurement")
	flag.IntVar(&cfg.matches, "matches", 5000, "bound on matches in the timed match run")
	flag.DurationVar(&cfg.matchTime, "match-time", 20*time.Second, "bound on the timed match run's duration")
	flag.IntVar(&cfg.inflight, "inflight", 64, "matches in flight at once in the timed run (at most -responders)")
	flag.IntVar(&cfg.initConns, "initiator-conns", 16, "WebSockets the initiators share (each carries many identities)")
	flag.IntVar(&cfg.warmup, "warmup", 200, "matches before the measured runs (not counted)")
	flag.IntVar(&cfg.latencyMatches, "latency-matches", 300, "matches one at a time, for the unloaded latency")
	flag.DurationVar(&cfg.verifyTime, "verify-time", time.Second, "time per signature micro-benchmark, split into turns")
	flag.DurationVar(&cfg.timeout, "timeout", 4*time.Minute, "bound on the whole run")
	flag.StringVar(&cfg.profileDir, "profile", "", "directory for the board's CPU profile during the timed match run and its heap profile with the devices waiting")
	only := flag.String("only", "", "comma-separated parts to run (verify, memory, matches); empty: all")
	serve := flag.String("serve", "", "internal: serve board|bare on 127.0.0.1 and answer commands on stdin")
	fast := flag.Bool("fast", false, "internal: with -serve board, raise every rate limit and channel cap")
	memCase := flag.String("mem-case", "", "internal: measure board|bare and its clients in this one process")
	flag.Parse()
	if *only != "" {
		cfg.only = map[string]bool{}
		for _, k := range strings.Split(*only, ",") {
			cfg.only[strings.TrimSpace(k)] = true
		}
	}
	limit, err := raiseNoFile()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: raising the open-file limit:", err)
	}
	switch {
	case *serve != "":
		err = serveChild(*serve, *fast, cfg)
	case *memCase != "":
		err = memCaseChild(*memCase, cfg, limit)
	default:
		err = run(cfg, limit)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// raiseNoFile sets the soft open-file limit to the hard one and returns
// it. Every WebSocket is a socket: in the one-process memory case this
// process holds both ends of -devices connections. (Go has raised the
// soft limit itself at start-up since 1.19; doing it here makes the
// bench say what it got, and fail early when it is too low.)
func raiseNoFile() (uint64, error) {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0, err
	}
	if r.Cur < r.Max {
		r.Cur = r.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
			return r.Cur, err
		}
	}
	return r.Cur, nil
}

func needFiles(limit uint64, sockets int, what string) error {
	if need := uint64(sockets) + 128; limit < need {
		return fmt.Errorf("%s needs about %d open files and the limit is %d: raise it (ulimit -n) or ask for fewer connections", what, need, limit)
	}
	return nil
}

func run(cfg config, limit uint64) error {
	ctx, cancel := context.WithTimeout(context.Background(), cfg.timeout)
	defer cancel()
	began := time.Now()
	progress := func(format string, a ...any) {
		fmt.Fprintf(os.Stderr, "[%6.1fs] %s\n", time.Since(began).Seconds(), fmt.Sprintf(format, a...))
	}
	if cfg.profileDir != "" {
		if err := os.MkdirAll(cfg.profileDir, 0o755); err != nil {
			return err
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	rep := &report{cfg: cfg, limit: limit, loadStart: loadAvg()}

	// 3 first, on an idle machine.
	if cfg.want("verify") {
		progress("signature micro-benchmarks, %v each", cfg.verifyTime)
		if rep.ops, err = verifyBench(cfg.verifyTime); err != nil {
			return fmt.Errorf("verify: %w", err)
		}
	}

	// 1. Memory.
	if cfg.want("memory") {
		if err := needFiles(limit, 2*cfg.devices, "the memory measurement"); err != nil {
			return err
		}
		for _, k := range []string{"bare", "board"} {
			progress("memory, %s and %d devices in one process", k, cfg.devices)
			r, err := runMemCaseChild(ctx, exe, k, cfg)
			if err != nil {
				return fmt.Errorf("memory %s (one process): %w", k, err)
			}
			rep.same = append(rep.same, r)
		}
		for _, k := range []string{"bare", "board"} {
			progress("memory, %s in its own process, %d devices in this one", k, cfg.devices)
			r, err := memSplit(ctx, exe, k, cfg)
			if err != nil {
				return fmt.Errorf("memory %s (server process): %w", k, err)
			}
			rep.split = append(rep.split, r)
		}
	}

	// 2. Matches.
	if cfg.want("matches") {
		if err := needFiles(limit, cfg.responders+cfg.initConns, "the match measurement"); err != nil {
			return err
		}
		if rep.matches, err = matchBench(ctx, exe, cfg, progress); err != nil {
			return fmt.Errorf("matches: %w", err)
		}
	}
	progress("done")
	rep.took = time.Since(began)
	rep.print(os.Stdout)
	return nil
}

// ---------------------------------------------------------------------
// Servers: the board, and the bare coder/websocket peer.

// boardOptions is the board as deployed (ORP's defaults), or with every
// limit that could throttle the match run raised (fast).
func boardOptions(fast bool, conns int) board.Options {
	o := board.Options{}
	if conns > 9000 {
		o.MaxConns = conns + 1000
	}
	if fast {
		o.AnnounceRate, o.AnnounceBurst = rate.Inf, 1<<20
		o.MatchRate, o.MatchBurst = rate.Inf, 1<<20
		o.ConnRate, o.ConnBurst = rate.Inf, 1<<20
		o.MaxChannels, o.MaxChannelsPerKey = 1<<20, 1<<20
		o.MaxConns = max(o.MaxConns, 1<<20)
	}
	return o
}

// helloBytes is what a board with default options sends first; the bare
// server sends the same bytes so that the clients do the same work.
func helloBytes() []byte {
	bits := 0
	return wire.Marshal(&wire.Envelope{Kind: wire.KindHello, Version: 1, PoWBits: &bits, MaxFrame: 64 << 10, FreshnessMS: 120000})
}

// bare is the peer: accept, send a hello, then read and ack each message
// until the connection ends. One goroutine per connection (the HTTP
// server's), blocked in Read.
type bare struct {
	hello         []byte
	conns, msgs   atomic.Int64
	connsTotal    atomic.Int64
	maxFrameLimit int64
}

func (b *bare) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return
	}
	defer ws.CloseNow()
	ws.SetReadLimit(b.maxFrameLimit)
	b.conns.Add(1)
	b.connsTotal.Add(1)
	defer b.conns.Add(-1)
	ctx := context.Background()
	if err := ws.Write(ctx, websocket.MessageText, b.hello); err != nil {
		return
	}
	for {
		_, msg, err := ws.Read(ctx)
		if err != nil {
			return
		}
		b.msgs.Add(1)
		var head struct {
			Req string `json:"req"`
		}
		json.Unmarshal(msg, &head)
		if err := ws.Write(ctx, websocket.MessageText, wire.Marshal(&wire.Envelope{Kind: wire.KindAck, Req: head.Req})); err != nil {
			return
		}
	}
}

type server struct {
	url   string
	stats func() any
	conns func() int
	close func()
}

func startServer(kind string, fast bool, conns int) (*server, error) {
	var h http.Handler
	s := &server{}
	switch kind {
	case "board":
		b, err := board.New(boardOptions(fast, conns))
		if err != nil {
			return nil, err
		}
		h = b
		s.stats = func() any { return b.Stats() }
		s.conns = func() int { return b.Stats().Connections }
		s.close = func() { b.Close() }
	case "bare":
		b := &bare{hello: helloBytes(), maxFrameLimit: 64 << 10}
		h = b
		s.stats = func() any {
			return map[string]int64{"connections": b.conns.Load(), "connections_total": b.connsTotal.Load(), "messages": b.msgs.Load()}
		}
		s.conns = func() int { return int(b.conns.Load()) }
		s.close = func() {}
	default:
		return nil, fmt.Errorf("unknown server %q (board or bare)", kind)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln)
	s.url = "ws://" + ln.Addr().String() + "/"
	inner := s.close
	s.close = func() { inner(); hs.Close() }
	return s, nil
}

// serveChild runs a server in this process and answers one command per
// line on stdin with one "OK <json>" line on stdout.
func serveChild(kind string, fast bool, cfg config) error {
	s, err := startServer(kind, fast, max(cfg.devices, cfg.responders))
	if err != nil {
		return err
	}
	defer s.close()
	fmt.Printf("READY %s\n", s.url)
	var prof *os.File
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		var out any
		switch f[0] {
		case "mem":
			out = takeSnapshot()
		case "cpu":
			out = cpuSeconds()
		case "stats":
			out = s.stats()
		case "conns":
			out = s.conns()
		case "cpuprofile-start":
			if prof, err = os.Create(f[1]); err == nil {
				err = pprof.StartCPUProfile(prof)
			}
			out = errString(err)
		case "cpuprofile-stop":
			pprof.StopCPUProfile()
			out = errString(prof.Close())
		case "heapprofile":
			runtime.GC()
			hf, err := os.Create(f[1])
			if err == nil {
				err = pprof.Lookup("heap").WriteTo(hf, 0)
				hf.Close()
			}
			out = errString(err)
		case "quit":
			return nil
		default:
			out = "unknown command"
		}
		b, _ := json.Marshal(out)
		fmt.Printf("OK %s\n", b)
	}
	return sc.Err()
}

func errString(err error) string {
	if err != nil {
		return err.Error()
	}
	return ""
}

// child is a server process of this bench.
type child struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
	url string
	mu  sync.Mutex
}

func startChild(ctx context.Context, exe, kind string, fast bool, cfg config) (*child, error) {
	args := []string{"-serve", kind, "-devices", strconv.Itoa(cfg.devices), "-responders", strconv.Itoa(cfg.responders)}
	if fast {
		args = append(args, "-fast")
	}
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	outp, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, in: in, out: bufio.NewScanner(outp)}
	c.out.Buffer(make([]byte, 1<<20), 1<<20)
	for c.out.Scan() {
		if u, ok := strings.CutPrefix(c.out.Text(), "READY "); ok {
			c.url = u
			return c, nil
		}
	}
	c.stop()
	return nil, errors.New("the server process did not start")
}

// ask sends a command and decodes the answer into v.
func (c *child) ask(cmd string, v any) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := fmt.Fprintln(c.in, cmd); err != nil {
		return err
	}
	for c.out.Scan() {
		if j, ok := strings.CutPrefix(c.out.Text(), "OK "); ok {
			return json.Unmarshal([]byte(j), v)
		}
	}
	return fmt.Errorf("the server process ended while answering %q", cmd)
}

func (c *child) stop() {
	fmt.Fprintln(c.in, "quit")
	c.in.Close()
	done := make(chan struct{})
	go func() { c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		c.cmd.Process.Kill()
		<-done
	}
}

// ---------------------------------------------------------------------
// Measuring a process.

type snapshot struct {
	HeapAlloc  uint64 `json:"heap_alloc"`
	HeapInuse  uint64 `json:"heap_inuse"`
	StackInuse uint64 `json:"stack_inuse"`
	Sys        uint64 `json:"sys"`
	RSS        uint64 `json:"rss"`
	Goroutines int    `json:"goroutines"`
}

func takeSnapshot() snapshot {
	runtime.GC()
	debug.FreeOSMemory() // a second GC, and freed pages go back so RSS means live
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return snapshot{HeapAlloc: ms.HeapAlloc, HeapInuse: ms.HeapInuse, StackInuse: ms.StackInuse, Sys: ms.Sys, RSS: measure.RSS(), Goroutines: runtime.NumGoroutine()}
}

// machineCPU is the whole machine's busy and idle CPU time in seconds
// (/proc/stat), to tell other work on the machine from idle time.
type machineCPU struct{ busy, idle, steal float64 }

func readMachineCPU() machineCPU {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return machineCPU{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	var m machineCPU
	for i := 1; i < len(f) && i <= 8; i++ {
		v, _ := strconv.ParseFloat(f[i], 64)
		switch i {
		case 4, 5:
			m.idle += v / 100 // USER_HZ
		case 8:
			m.steal += v / 100 // taken by the hypervisor for other guests
		default:
			m.busy += v / 100
		}
	}
	return m
}

// cpuSeconds is this process's user+system CPU time.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

// perDevice is (after - before) / n for each measure.
type perDevice struct {
	HeapAlloc, Stack, Total, RSS, Goroutines float64
}

func per(after, before snapshot, n int) perDevice {
	d := func(a, b uint64) float64 { return (float64(a) - float64(b)) / float64(n) }
	p := perDevice{
		HeapAlloc:  d(after.HeapAlloc, before.HeapAlloc),
		Stack:      d(after.StackInuse, before.StackInuse),
		RSS:        d(after.RSS, before.RSS),
		Goroutines: float64(after.Goroutines-before.Goroutines) / float64(n),
	}
	p.Total = p.HeapAlloc + p.Stack
	return p
}

func (p perDevice) minus(q perDevice) perDevice {
	return perDevice{p.HeapAlloc - q.HeapAlloc, p.Stack - q.Stack, p.Total - q.Total, p.RSS - q.RSS, p.Goroutines - q.Goroutines}
}

// ---------------------------------------------------------------------
// 1. Memory per waiting device.

// device is one waiting device's signed presence message.
func presenceMsgs(n int) ([][]byte, error) {
	out := make([][]byte, n)
	errs := make([]error, n)
	parallel(n, func(i int) {
		k, err := identity.Generate()
		if err != nil {
			errs[i] = err
			return
		}
		p, err := wire.NewPresence(k, time.Now(), nil, "")
		if err != nil {
			errs[i] = err
			return
		}
		raw, _ := json.Marshal(p)
		out[i] = wire.Marshal(&wire.Envelope{Kind: wire.KindPresence, Req: "p", Record: raw})
	})
	return out, errors.Join(errs...)
}

// parallel runs f(0..n-1) on NumCPU goroutines.
func parallel(n int, f func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < runtime.NumCPU(); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				f(i)
			}
		}()
	}
	wg.Wait()
}

// dialDevice connects, reads the hello, presents and waits for the ack,
// then leaves a goroutine reading, as a waiting device does.
func dialDevice(ctx context.Context, url string, presence []byte) (*websocket.Conn, error) {
	ws, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		return nil, err
	}
	ws.SetReadLimit(1 << 20)
	ok := false
	defer func() {
		if !ok {
			ws.CloseNow()
		}
	}()
	if _, _, err := ws.Read(ctx); err != nil {
		return nil, fmt.Errorf("reading the hello: %w", err)
	}
	if err := ws.Write(ctx, websocket.MessageText, presence); err != nil {
		return nil, err
	}
	_, b, err := ws.Read(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the ack: %w", err)
	}
	var r struct{ Kind, Code, Reason string }
	json.Unmarshal(b, &r)
	if r.Kind != wire.KindAck {
		return nil, fmt.Errorf("the presence was answered with %s %s: %s", r.Kind, r.Code, r.Reason)
	}
	ok = true
	go func() {
		for {
			if _, _, err := ws.Read(context.Background()); err != nil {
				return
			}
		}
	}()
	return ws, nil
}

// memRun is one memory measurement's raw snapshots. Server* are set when
// the server is in another process; Left is the server after every
// device disconnected.
type memRun struct {
	Case, Where                    string
	N                              int
	Setup                          float64
	Base, After                    snapshot
	ServerBase, ServerAfter, Left  snapshot
	ServerStats, ServerStatsAfter  json.RawMessage
	ClientSide, Both, Server, Stay perDevice
}

// memMeasure connects n devices to url and measures this process, and
// the server through srv when it is another process (nil: same process).
func memMeasure(ctx context.Context, url string, n int, srv *child, profileDir, kind string) (memRun, error) {
	r := memRun{N: n}
	msgs, err := presenceMsgs(n + 1)
	if err != nil {
		return r, err
	}
	// One device first, so one-time initialisation (pools, the HTTP
	// client, crypto tables) is in the baseline.
	ws, err := dialDevice(ctx, url, msgs[n])
	if err != nil {
		return r, fmt.Errorf("warm-up device: %w", err)
	}
	ws.CloseNow()
	time.Sleep(500 * time.Millisecond)
	if srv != nil {
		if err := srv.ask("mem", &r.ServerBase); err != nil {
			return r, err
		}
	}
	r.Base = takeSnapshot()

	start := time.Now()
	conns := make([]*websocket.Conn, n)
	errs := make([]error, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				conns[i], errs[i] = dialDevice(dctx, url, msgs[i])
				cancel()
			}
		}()
	}
	wg.Wait()
	r.Setup = time.Since(start).Seconds()
	closeAll := func() {
		for _, c := range conns {
			if c != nil {
				c.CloseNow()
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		closeAll()
		return r, err
	}
	time.Sleep(time.Second) // let handshakes' garbage and timers settle
	if srv != nil {
		if err := srv.ask("mem", &r.ServerAfter); err != nil {
			closeAll()
			return r, err
		}
		srv.ask("stats", &r.ServerStats)
		if profileDir != "" {
			var e string
			srv.ask("heapprofile "+filepath.Join(profileDir, "mem-"+kind+".heap.pprof"), &e)
		}
	}
	r.After = takeSnapshot()
	runtime.KeepAlive(msgs)
	closeAll()
	if srv != nil {
		// What the server keeps once the devices are gone.
		deadline := time.Now().Add(15 * time.Second)
		for {
			var left int
			if err := srv.ask("conns", &left); err != nil {
				return r, err
			}
			if left == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		time.Sleep(500 * time.Millisecond)
		if err := srv.ask("mem", &r.Left); err != nil {
			return r, err
		}
		srv.ask("stats", &r.ServerStatsAfter)
	}
	return r, nil
}

// memCaseChild is case 1a: server and devices in this one process.
func memCaseChild(kind string, cfg config, limit uint64) error {
	if err := needFiles(limit, 2*cfg.devices, "the one-process memory case"); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.timeout)
	defer cancel()
	s, err := startServer(kind, false, cfg.devices)
	if err != nil {
		return err
	}
	defer s.close()
	r, err := memMeasure(ctx, s.url, cfg.devices, nil, "", kind)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(s.stats())
	r.ServerStats = b
	r.Case, r.Where = kind, "same"
	r.Both = per(r.After, r.Base, r.N)
	out, _ := json.Marshal(r)
	fmt.Println("MEMRESULT " + string(out))
	return nil
}

func runMemCaseChild(ctx context.Context, exe, kind string, cfg config) (memRun, error) {
	cmd := exec.CommandContext(ctx, exe, "-mem-case", kind, "-devices", strconv.Itoa(cfg.devices), "-timeout", cfg.timeout.String())
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return memRun{}, err
	}
	for _, line := range strings.Split(string(out), "\n") {
		if j, ok := strings.CutPrefix(line, "MEMRESULT "); ok {
			var r memRun
			return r, json.Unmarshal([]byte(j), &r)
		}
	}
	return memRun{}, errors.New("the child printed no result")
}

// memSplit is case 1b: the server in a child process, the devices here.
func memSplit(ctx context.Context, exe, kind string, cfg config) (memRun, error) {
	c, err := startChild(ctx, exe, kind, false, cfg)
	if err != nil {
		return memRun{}, err
	}
	defer c.stop()
	r, err := memMeasure(ctx, c.url, cfg.devices, c, cfg.profileDir, kind)
	if err != nil {
		return r, err
	}
	r.Case, r.Where = kind, "split"
	r.Server = per(r.ServerAfter, r.ServerBase, r.N)
	r.ClientSide = per(r.After, r.Base, r.N)
	r.Stay = per(r.Left, r.ServerBase, r.N)
	return r, nil
}

// ---------------------------------------------------------------------
// 2. Matches per second.

// ident is a device identity with its transport key binding.
type ident struct {
	priv    *identity.PrivateKey
	enc     string
	binding identity.Binding
}

func newIdents(n int) ([]*ident, error) {
	out := make([]*ident, n)
	errs := make([]error, n)
	parallel(n, func(i int) {
		k, err := identity.Generate()
		if err != nil {
			errs[i] = err
			return
		}
		tk, err := identity.NewTransportKey()
		if err != nil {
			errs[i] = err
			return
		}
		b, err := identity.NewBinding(k, tk.Public(), time.Now())
		if err != nil {
			errs[i] = err
			return
		}
		out[i] = &ident{priv: k, enc: wire.EncodeKey(k.Public()), binding: b}
	})
	return out, errors.Join(errs...)
}

// delivery is one message from the board, with when it arrived.
type delivery struct {
	env wire.Envelope
	at  time.Time
}

// mconn is a device WebSocket for the match run. Its reader routes each
// message from the board to whoever waits for it: acks and rejections
// by req, matches by counterparty, relays and channel_closed by match_id.
type mconn struct {
	ws       *websocket.Conn
	mu       sync.Mutex
	routes   map[string]chan delivery
	reqs     atomic.Uint64
	unrouted atomic.Int64
	done     chan struct{}
	err      error
}

func dialM(ctx context.Context, url string) (*mconn, error) {
	ws, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		return nil, err
	}
	ws.SetReadLimit(1 << 20)
	if _, _, err := ws.Read(ctx); err != nil {
		ws.CloseNow()
		return nil, fmt.Errorf("reading the hello: %w", err)
	}
	c := &mconn{ws: ws, routes: map[string]chan delivery{}, done: make(chan struct{})}
	go c.reader()
	return c, nil
}

func (c *mconn) reader() {
	defer close(c.done)
	for {
		_, b, err := c.ws.Read(context.Background())
		if err != nil {
			c.err = err
			return
		}
		d := delivery{at: time.Now()}
		if err := json.Unmarshal(b, &d.env); err != nil {
			c.unrouted.Add(1)
			continue
		}
		var key string
		switch d.env.Kind {
		case wire.KindAck, wire.KindRejected:
			key = "q:" + d.env.Req
		case wire.KindMatch:
			key = "c:" + d.env.CounterpartyKey
		case wire.KindRelay, wire.KindChannelClosed:
			key = "m:" + d.env.MatchID
		default:
			continue // hello, evicted
		}
		c.mu.Lock()
		ch := c.routes[key]
		c.mu.Unlock()
		if ch == nil {
			c.unrouted.Add(1)
			continue
		}
		select {
		case ch <- d:
		default:
			c.unrouted.Add(1)
		}
	}
}

func (c *mconn) route(ch chan delivery, keys ...string) {
	c.mu.Lock()
	for _, k := range keys {
		c.routes[k] = ch
	}
	c.mu.Unlock()
}

func (c *mconn) unroute(keys []string) {
	c.mu.Lock()
	for _, k := range keys {
		delete(c.routes, k)
	}
	c.mu.Unlock()
}

func (c *mconn) nextReq() string { return "r" + strconv.FormatUint(c.reqs.Add(1), 36) }

func (c *mconn) send(ctx context.Context, b []byte) error {
	return c.ws.Write(ctx, websocket.MessageText, b)
}

// await returns the next message of kind on ch, skipping acks; a
// rejection, another kind, the connection's end or the timeout fail.
func await(ctx context.Context, c *mconn, ch chan delivery, kind string) (delivery, error) {
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case d := <-ch:
			switch d.env.Kind {
			case wire.KindAck:
				continue
			case wire.KindRejected:
				return d, fmt.Errorf("rejected (%s): %s", d.env.Code, d.env.Reason)
			case kind:
				return d, nil
			default:
				return d, fmt.Errorf("waiting for %s, got %s %s", kind, d.env.Kind, d.env.Reason)
			}
		case <-t.C:
			return delivery{}, fmt.Errorf("no %s within 10 s", kind)
		case <-c.done:
			return delivery{}, fmt.Errorf("connection lost waiting for %s: %v", kind, c.err)
		case <-ctx.Done():
			return delivery{}, ctx.Err()
		}
	}
}

// job is one planned match: a fresh initiator identity, its responder
// and its pre-signed intent.
type job struct {
	init   *ident
	resp   int
	req    string
	intent []byte
}

// plan splits total matches among workers. Worker w only targets the
// responders r with r % workers == w, so two matches in flight never
// share a responder (a match names only the counterparty, so that keeps
// the routing on a shared initiator WebSocket unambiguous).
func plan(inits []*ident, resps []*ident, workers, total int, prefix string) ([][]job, error) {
	class := make([][]int, workers)
	for r := range resps {
		class[r%workers] = append(class[r%workers], r)
	}
	out := make([][]job, workers)
	now := time.Now()
	for i := 0; i < total; i++ {
		w := i % workers
		r := class[w][(i/workers)%len(class[w])]
		in, err := wire.NewIntent(inits[i].priv, resps[r].priv.Public(), now)
		if err != nil {
			return nil, err
		}
		raw, _ := json.Marshal(in)
		req := prefix + strconv.FormatInt(int64(i), 36)
		out[w] = append(out[w], job{init: inits[i], resp: r, req: req,
			intent: wire.Marshal(&wire.Envelope{Kind: wire.KindIntent, Req: req, Record: raw})})
	}
	return out, nil
}

// frameMsg builds, signs and wraps one relay frame.
func frameMsg(from, to *ident, matchID, kind, phase, sealed, req string) ([]byte, error) {
	typ := wire.TypeMatchOffer
	if kind == wire.FrameAnswer {
		typ = wire.TypeMatchAnswer
	}
	f := &wire.Frame{Type: typ, MatchID: matchID, Phase: phase, FromKey: from.enc, ToKey: to.enc, Timestamp: wire.FormatTime(time.Now())}
	if phase == wire.PhaseKey {
		b := from.binding
		f.Binding = &b
	} else {
		f.Sealed = sealed
	}
	if err := wire.Sign(f, from.priv); err != nil {
		return nil, err
	}
	blob, err := json.Marshal(f)
	if err != nil {
		return nil, err
	}
	return wire.Marshal(&wire.Envelope{Kind: wire.KindRelay, Req: req, MatchID: matchID, FrameKind: kind, Blob: blob}), nil
}

// sealedBlobs are random 1-2 KB base64url strings standing in for
// sealed SDPs.
func sealedBlobs(n int) []string {
	out := make([]string, n)
	for i := range out {
		b := make([]byte, 768+mrand.IntN(769)) // 1024-2048 base64url characters
		rand.Read(b)
		out[i] = wire.B64.EncodeToString(b)
	}
	return out
}

type matchLat struct{ match, exchange, total time.Duration }

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// runJob carries one match through the whole protocol.
func runJob(ctx context.Context, ic, rc *mconn, j job, resp *ident, sealed func() string) (matchLat, error) {
	ich, rch := make(chan delivery, 16), make(chan delivery, 16)
	var ikeys, rkeys []string
	iroute := func(k ...string) { ic.route(ich, k...); ikeys = append(ikeys, k...) }
	rroute := func(k ...string) { rc.route(rch, k...); rkeys = append(rkeys, k...) }
	defer func() { ic.unroute(ikeys); rc.unroute(rkeys) }()
	iroute("q:"+j.req, "c:"+resp.enc)
	rroute("c:" + j.init.enc)

	t0 := time.Now()
	if err := ic.send(ctx, j.intent); err != nil {
		return matchLat{}, err
	}
	mi, err := await(ctx, ic, ich, wire.KindMatch)
	if err != nil {
		return matchLat{}, fmt.Errorf("initiator: %w", err)
	}
	mr, err := await(ctx, rc, rch, wire.KindMatch)
	if err != nil {
		return matchLat{}, fmt.Errorf("responder: %w", err)
	}
	if mi.env.MatchID != mr.env.MatchID || mi.env.Role != wire.RoleInitiator || mr.env.Role != wire.RoleResponder {
		return matchLat{}, errors.New("the two sides got different matches or roles")
	}
	id := mi.env.MatchID
	matched := later(mi.at, mr.at)
	iroute("m:" + id)
	rroute("m:" + id)

	type side struct {
		c     *mconn
		ch    chan delivery
		me    *ident
		route func(...string)
	}
	I := side{ic, ich, j.init, iroute}
	R := side{rc, rch, resp, rroute}
	step := func(from, to side, kind, phase string) error {
		req := from.c.nextReq()
		from.route("q:" + req)
		s := ""
		if phase == wire.PhaseSignaling {
			s = sealed()
		}
		msg, err := frameMsg(from.me, to.me, id, kind, phase, s, req)
		if err != nil {
			return err
		}
		if err := from.c.send(ctx, msg); err != nil {
			return err
		}
		d, err := await(ctx, to.c, to.ch, wire.KindRelay)
		if err == nil && d.env.FrameKind != kind {
			err = fmt.Errorf("relayed a %s, expected a %s", d.env.FrameKind, kind)
		}
		if err != nil {
			return fmt.Errorf("%s %s: %w", phase, kind, err)
		}
		return nil
	}
	for _, s := range []struct {
		from, to    side
		kind, phase string
	}{
		{I, R, wire.FrameOffer, wire.PhaseKey},
		{R, I, wire.FrameAnswer, wire.PhaseKey},
		{I, R, wire.FrameOffer, wire.PhaseSignaling},
		{R, I, wire.FrameAnswer, wire.PhaseSignaling},
	} {
		if err := step(s.from, s.to, s.kind, s.phase); err != nil {
			return matchLat{}, err
		}
	}
	ci, err := await(ctx, ic, ich, wire.KindChannelClosed)
	if err != nil {
		return matchLat{}, fmt.Errorf("initiator: %w", err)
	}
	cr, err := await(ctx, rc, rch, wire.KindChannelClosed)
	if err != nil {
		return matchLat{}, fmt.Errorf("responder: %w", err)
	}
	if ci.env.Reason != "complete" || cr.env.Reason != "complete" {
		return matchLat{}, fmt.Errorf("channel closed: %s / %s", ci.env.Reason, cr.env.Reason)
	}
	done := later(ci.at, cr.at)
	return matchLat{match: matched.Sub(t0), exchange: done.Sub(matched), total: done.Sub(t0)}, nil
}

type phaseResult struct {
	name      string
	inflight  int
	planned   int
	lat       []matchLat
	failed    int
	firstErr  string
	elapsed   time.Duration
	boardCPU  float64 // seconds, the board's process
	clientCPU float64 // seconds, this process
	machine   machineCPU
	timeBound bool
}

func (p phaseResult) rate() float64 { return float64(len(p.lat)) / p.elapsed.Seconds() }

// runPhase runs the planned jobs, one worker per plan, until done or the
// deadline (no new match starts after it).
func runPhase(ctx context.Context, inits, resps []*mconn, respIDs []*ident, plans [][]job, deadline time.Time, blobs []string) phaseResult {
	var mu sync.Mutex
	r := phaseResult{inflight: len(plans)}
	var wg sync.WaitGroup
	start := time.Now()
	for w, p := range plans {
		r.planned += len(p)
		wg.Add(1)
		go func() {
			defer wg.Done()
			ic := inits[w%len(inits)]
			rng := mrand.New(mrand.NewPCG(uint64(w), 7))
			sealed := func() string { return blobs[rng.IntN(len(blobs))] }
			for _, j := range p {
				if time.Now().After(deadline) {
					mu.Lock()
					r.timeBound = true
					mu.Unlock()
					return
				}
				if ctx.Err() != nil {
					return
				}
				l, err := runJob(ctx, ic, resps[j.resp], j, respIDs[j.resp], sealed)
				mu.Lock()
				if err != nil {
					r.failed++
					if r.firstErr == "" {
						r.firstErr = err.Error()
					}
				} else {
					r.lat = append(r.lat, l)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	r.elapsed = time.Since(start)
	return r
}

type matchReport struct {
	responders, initConns int
	setup                 time.Duration
	phases                []phaseResult
	stats                 board.Stats
	unrouted              int64
}

func matchBench(ctx context.Context, exe string, cfg config, progress func(string, ...any)) (*matchReport, error) {
	if cfg.inflight < 1 || cfg.inflight > cfg.responders {
		return nil, fmt.Errorf("-inflight must be between 1 and -responders (%d)", cfg.responders)
	}
	c, err := startChild(ctx, exe, "board", true, cfg)
	if err != nil {
		return nil, err
	}
	defer c.stop()
	rep := &matchReport{responders: cfg.responders, initConns: cfg.initConns}

	total := cfg.warmup + cfg.latencyMatches + cfg.matches
	progress("matches: %d responder and %d initiator identities, keys and bindings", cfg.responders, total)
	respIDs, err := newIdents(cfg.responders)
	if err != nil {
		return nil, err
	}
	initIDs, err := newIdents(total)
	if err != nil {
		return nil, err
	}
	blobs := sealedBlobs(256)

	// Responders: one WebSocket each, a presence each.
	start := time.Now()
	resps := make([]*mconn, cfg.responders)
	errs := make([]error, cfg.responders)
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= cfg.responders || ctx.Err() != nil {
					return
				}
				errs[i] = func() error {
					dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
					defer cancel()
					m, err := dialM(dctx, c.url)
					if err != nil {
						return err
					}
					resps[i] = m
					p, err := wire.NewPresence(respIDs[i].priv, time.Now(), nil, "")
					if err != nil {
						return err
					}
					raw, _ := json.Marshal(p)
					ch := make(chan delivery, 4)
					m.route(ch, "q:p")
					defer m.unroute([]string{"q:p"})
					if err := m.send(dctx, wire.Marshal(&wire.Envelope{Kind: wire.KindPresence, Req: "p", Record: raw})); err != nil {
						return err
					}
					select {
					case d := <-ch:
						if d.env.Kind != wire.KindAck {
							return fmt.Errorf("presence: %s %s", d.env.Code, d.env.Reason)
						}
						return nil
					case <-dctx.Done():
						return errors.New("presence: no ack")
					}
				}()
			}
		}()
	}
	wg.Wait()
	defer func() {
		for _, m := range resps {
			if m != nil {
				m.ws.CloseNow()
			}
		}
	}()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	inits := make([]*mconn, cfg.initConns)
	for i := range inits {
		if inits[i], err = dialM(ctx, c.url); err != nil {
			return nil, err
		}
		defer inits[i].ws.CloseNow()
	}
	rep.setup = time.Since(start)

	at := 0
	take := func(n int) []*ident { s := initIDs[at : at+n]; at += n; return s }
	far := time.Now().Add(cfg.timeout)

	if cfg.warmup > 0 {
		progress("matches: warm-up, %d matches, %d in flight", cfg.warmup, cfg.inflight)
		p, err := plan(take(cfg.warmup), respIDs, min(cfg.inflight, cfg.warmup), cfg.warmup, "w")
		if err != nil {
			return nil, err
		}
		if r := runPhase(ctx, inits, resps, respIDs, p, far, blobs); r.failed > 0 {
			return nil, fmt.Errorf("warm-up: %d of %d failed, first: %s", r.failed, r.planned, r.firstErr)
		}
	}
	if cfg.latencyMatches > 0 {
		progress("matches: unloaded, %d matches one at a time", cfg.latencyMatches)
		p, err := plan(take(cfg.latencyMatches), respIDs, 1, cfg.latencyMatches, "l")
		if err != nil {
			return nil, err
		}
		r := runPhase(ctx, inits[:1], resps, respIDs, p, far, blobs)
		r.name = "unloaded"
		rep.phases = append(rep.phases, r)
	}
	if cfg.matches > 0 {
		progress("matches: timed run, up to %d matches or %v, %d in flight on %d initiator WebSockets", cfg.matches, cfg.matchTime, cfg.inflight, cfg.initConns)
		p, err := plan(take(cfg.matches), respIDs, cfg.inflight, cfg.matches, "t")
		if err != nil {
			return nil, err
		}
		if cfg.profileDir != "" {
			var e string
			c.ask("cpuprofile-start "+filepath.Join(cfg.profileDir, "board-matches.cpu.pprof"), &e)
		}
		var b0 float64
		if err := c.ask("cpu", &b0); err != nil {
			return nil, err
		}
		c0, m0 := cpuSeconds(), readMachineCPU()
		r := runPhase(ctx, inits, resps, respIDs, p, time.Now().Add(cfg.matchTime), blobs)
		r.clientCPU = cpuSeconds() - c0
		m1 := readMachineCPU()
		r.machine = machineCPU{busy: m1.busy - m0.busy, idle: m1.idle - m0.idle, steal: m1.steal - m0.steal}
		var b1 float64
		if err := c.ask("cpu", &b1); err != nil {
			return nil, err
		}
		r.boardCPU = b1 - b0
		if cfg.profileDir != "" {
			var e string
			c.ask("cpuprofile-stop", &e)
		}
		r.name = "loaded"
		rep.phases = append(rep.phases, r)
	}
	if err := c.ask("stats", &rep.stats); err != nil {
		return nil, err
	}
	for _, m := range append(slices.Clone(resps), inits...) {
		rep.unrouted += m.unrouted.Load()
	}
	return rep, nil
}

// ---------------------------------------------------------------------
// 3. Signature costs, single core.

type opResult struct {
	name  string
	perOp time.Duration
}

func (o opResult) perSec() float64 { return 1 / o.perOp.Seconds() }

// timeOp runs f for about d (at least 50 times) on this goroutine and
// returns the time per call.
func timeOp(d time.Duration, f func() error) time.Duration {
	n := 0
	start := time.Now()
	for n < 50 || time.Since(start) < d {
		for i := 0; i < 10; i++ {
			f()
		}
		n += 10
		if n >= 1_000_000 {
			break
		}
	}
	return time.Since(start) / time.Duration(n)
}

// benchRounds is how many turns each micro-benchmark gets; the
// operations take turns (so a change in the machine's load falls on all
// alike) and each reports its median turn.
const benchRounds = 5

func verifyBench(d time.Duration) ([]opResult, error) {
	ids, err := newIdents(2)
	if err != nil {
		return nil, err
	}
	a, b := ids[0], ids[1]
	pub := a.priv.Public()
	in, err := wire.NewIntent(a.priv, b.priv.Public(), time.Now())
	if err != nil {
		return nil, err
	}
	inRaw, _ := json.Marshal(in)
	inEnv := wire.Marshal(&wire.Envelope{Kind: wire.KindIntent, Req: "x", Record: inRaw})
	id := wire.NewNonce()
	keyEnv, err := frameMsg(a, b, id, wire.FrameOffer, wire.PhaseKey, "", "k")
	if err != nil {
		return nil, err
	}
	fixed := make([]byte, 1152) // 1536 base64url characters, the middle of the match run's 1-2 KB
	rand.Read(fixed)
	blob := wire.B64.EncodeToString(fixed)
	sigEnv, err := frameMsg(a, b, id, wire.FrameOffer, wire.PhaseSignaling, blob, "s")
	if err != nil {
		return nil, err
	}
	blobOf := func(env []byte) []byte {
		var e wire.Envelope
		json.Unmarshal(env, &e)
		return e.Blob
	}
	keyBlob, sigBlob := blobOf(keyEnv), blobOf(sigEnv)
	msg, _ := wire.SignedBytes(inRaw)
	sig := a.priv.Sign(msg)
	parse := func(raw []byte) func() error {
		return func() error { _, err := wire.Parse(raw, wire.FromClient); return err }
	}
	ops := []struct {
		name string
		f    func() error
	}{
		{"crypto/ed25519.Verify", func() error {
			if !ed25519.Verify(pub[:], msg, sig) {
				return errors.New("ed25519.Verify failed")
			}
			return nil
		}},
		{"identity.VerifyStrict (the board's verify)", func() error { return identity.VerifyStrict(pub, msg, sig) }},
		{"ed25519 sign (identity.PrivateKey.Sign)", func() error { a.priv.Sign(msg); return nil }},
		{"wire.Parse, client intent", parse(inEnv)},
		{"wire.VerifyRaw, intent record", func() error { return wire.VerifyRaw(inRaw, pub) }},
		{"wire.Parse, client relay, KEY frame", parse(keyEnv)},
		{"wire.VerifyRaw, KEY frame", func() error { return wire.VerifyRaw(keyBlob, pub) }},
		{fmt.Sprintf("wire.Parse, client relay, SIGNALING frame (%d-char sealed)", len(blob)), parse(sigEnv)},
		{"wire.VerifyRaw, SIGNALING frame", func() error { return wire.VerifyRaw(sigBlob, pub) }},
		{"device: sign + marshal a SIGNALING frame (frameMsg)", func() error {
			_, err := frameMsg(a, b, id, wire.FrameOffer, wire.PhaseSignaling, blob, "s")
			return err
		}},
	}
	for _, o := range ops {
		if err := o.f(); err != nil {
			return nil, fmt.Errorf("%s: %w", o.name, err)
		}
	}
	turns := make([][]time.Duration, len(ops))
	for r := 0; r < benchRounds; r++ {
		for i, o := range ops {
			runtime.GC() // no garbage of one operation is collected during the next
			turns[i] = append(turns[i], timeOp(d/benchRounds, o.f))
		}
	}
	out := make([]opResult, len(ops))
	for i, o := range ops {
		out[i] = opResult{o.name, measure.Percentile(turns[i], .5)}
	}
	return out, nil
}

// ---------------------------------------------------------------------
// Report.

type report struct {
	cfg         config
	limit       uint64
	ops         []opResult
	same, split []memRun
	matches     *matchReport
	took        time.Duration
	loadStart   string
}

// loadAvg is the 1-minute load average (other work on the machine).
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) > 0 {
		return f[0]
	}
	return "?"
}

func fmtBytes(b float64) string {
	switch {
	case math.Abs(b) >= 1<<20:
		return fmt.Sprintf("%.2f MiB", b/(1<<20))
	case math.Abs(b) >= 10<<10:
		return fmt.Sprintf("%.1f KiB", b/(1<<10))
	default:
		return fmt.Sprintf("%.0f B", b)
	}
}

func (r *report) op(prefix string) (opResult, bool) {
	for _, o := range r.ops {
		if strings.HasPrefix(o.name, prefix) {
			return o, true
		}
	}
	return opResult{}, false
}

func (r *report) print(w io.Writer) {
	cpus := runtime.NumCPU()
	fmt.Fprintf(w, "%d CPUs, %s, %s/%s; open-file limit %d; load average at start %s, at end %s; whole run %v\n",
		cpus, runtime.Version(), runtime.GOOS, runtime.GOARCH, r.limit, r.loadStart, loadAvg(), r.took.Round(time.Second))

	if len(r.ops) > 0 {
		fmt.Fprintln(w, "\nSignature and record checks, one goroutine (one core), same run:")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| operation | µs / op | ops / s, one core |")
		fmt.Fprintln(w, "|---|---|---|")
		for _, o := range r.ops {
			fmt.Fprintf(w, "| %s | %.1f | %.0f |\n", o.name, float64(o.perOp)/1e3, o.perSec())
		}
	}

	if len(r.same)+len(r.split) > 0 {
		fmt.Fprintf(w, "\nMemory per waiting device (%d devices, each its own WebSocket, one signed presence acked, then reading). Per device: (after - baseline after one warm-up device) / devices; heap = HeapAlloc after a GC, stacks = StackInuse:\n\n", r.cfg.devices)
		fmt.Fprintln(w, "| server | measured in | heap / device | stacks / device | heap + stacks / device | RSS / device | goroutines / device | connect+present time |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|")
		row := func(name, where string, p perDevice, setup string) {
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %.2f | %s |\n", name, where, fmtBytes(p.HeapAlloc), fmtBytes(p.Stack), fmtBytes(p.Total), fmtBytes(p.RSS), p.Goroutines, setup)
		}
		names := map[string]string{"bare": "bare coder/websocket server (peer)", "board": "keyhole board"}
		find := func(rs []memRun, k string) (memRun, bool) {
			for _, m := range rs {
				if m.Case == k {
					return m, true
				}
			}
			return memRun{}, false
		}
		for _, m := range r.same {
			row(names[m.Case], "one process: server + devices", m.Both, fmt.Sprintf("%.2f s", m.Setup))
		}
		sb, ok1 := find(r.same, "bare")
		sk, ok2 := find(r.same, "board")
		if ok1 && ok2 {
			row("board - bare (devices cancel)", "one process", sk.Both.minus(sb.Both), "")
		}
		for _, m := range r.split {
			row(names[m.Case], "server process only", m.Server, fmt.Sprintf("%.2f s", m.Setup))
		}
		pb, ok3 := find(r.split, "bare")
		pk, ok4 := find(r.split, "board")
		if ok3 && ok4 {
			row("board - bare", "server process only", pk.Server.minus(pb.Server), "")
		}
		for _, m := range r.split {
			row("devices' side, with "+m.Case, "client process only", m.ClientSide, "")
		}
		for _, m := range r.split {
			row(m.Case+", after every device left", "server process only", m.Stay, "")
		}
		fmt.Fprintln(w)
		if ok3 && ok4 {
			fmt.Fprintf(w, "ratio board / bare, server process only: heap %.2f, heap+stacks %.2f, RSS %.2f\n", pk.Server.HeapAlloc/pb.Server.HeapAlloc, pk.Server.Total/pb.Server.Total, pk.Server.RSS/pb.Server.RSS)
		}
		if ok1 && ok2 {
			fmt.Fprintf(w, "ratio board / bare, one process (both ends, so nearer 1): heap %.2f, heap+stacks %.2f\n", sk.Both.HeapAlloc/sb.Both.HeapAlloc, sk.Both.Total/sb.Both.Total)
		}
		if ok1 && ok2 && ok3 && ok4 {
			fmt.Fprintf(w, "board's excess over a bare WebSocket, heap+stacks per device: %s (one process, devices subtracted) vs %s (server process alone)\n",
				fmtBytes(sk.Both.minus(sb.Both).Total), fmtBytes(pk.Server.minus(pb.Server).Total))
		}
		for _, m := range r.split {
			if m.Case == "board" {
				var st board.Stats
				json.Unmarshal(m.ServerStats, &st)
				fmt.Fprintf(w, "board while the devices waited: %d connections, %d presences in the table (capacity %d)\n", st.Connections, st.Presences, st.Capacity)
			}
		}
	}

	if m := r.matches; m != nil {
		fmt.Fprintf(w, "\nMatches: %d responders waiting (one WebSocket each), initiators a fresh identity per match on %d shared WebSockets; each match: intent -> match to both -> KEY offer/answer -> SIGNALING offer/answer (1-2 KB sealed) -> channel_closed \"complete\" to both. Board in its own process, rate limits and channel caps raised. Set-up (responders connected and present): %v\n\n",
			m.responders, m.initConns, m.setup.Round(time.Millisecond))
		fmt.Fprintln(w, "| run | in flight | completed / planned | failed | time | matches / s | intent->match p50 | p99 | four frames -> closed p50 | p99 | intent->closed p50 | p99 |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|")
		for _, p := range m.phases {
			var lm, le, lt []time.Duration
			for _, l := range p.lat {
				lm, le, lt = append(lm, l.match), append(le, l.exchange), append(lt, l.total)
			}
			bound := ""
			if p.timeBound {
				bound = " (time bound)"
			}
			fmt.Fprintf(w, "| %s | %d | %d / %d%s | %d | %.2f s | %.0f | %s | %s | %s | %s | %s | %s |\n", p.name, p.inflight, len(p.lat), p.planned, bound, p.failed,
				p.elapsed.Seconds(), p.rate(), measure.Duration(measure.Percentile(lm, .5)), measure.Duration(measure.Percentile(lm, .99)), measure.Duration(measure.Percentile(le, .5)), measure.Duration(measure.Percentile(le, .99)), measure.Duration(measure.Percentile(lt, .5)), measure.Duration(measure.Percentile(lt, .99)))
			if p.firstErr != "" {
				fmt.Fprintf(w, "\nfirst failure (%s): %s\n", p.name, p.firstErr)
			}
		}
		fmt.Fprintln(w)
		for _, p := range m.phases {
			if p.name != "loaded" || len(p.lat) == 0 {
				continue
			}
			n := float64(len(p.lat))
			bpm, cpm := p.boardCPU/n, p.clientCPU/n
			fmt.Fprintf(w, "CPU in the timed run: board process %.2f s (%.2f cores, %.0f µs per match); devices' process %.2f s (%.2f cores, %.0f µs per match)\n",
				p.boardCPU, p.boardCPU/p.elapsed.Seconds(), bpm*1e6, p.clientCPU, p.clientCPU/p.elapsed.Seconds(), cpm*1e6)
			if p.machine.busy > 0 {
				el := p.elapsed.Seconds()
				fmt.Fprintf(w, "whole machine in the timed run (/proc/stat): other processes %.2f cores, idle %.2f cores, stolen by the hypervisor %.2f cores\n", max(0, p.machine.busy-p.boardCPU-p.clientCPU)/el, p.machine.idle/el, p.machine.steal/el)
			}
			fmt.Fprintf(w, "ceiling if the board had all %d cores and the devices cost nothing: %.0f matches/s (%d / board CPU per match)\n", cpus, float64(cpus)/bpm, cpus)
			if v, ok := r.op("identity.VerifyStrict"); ok {
				ceil := float64(cpus) * v.perSec() / 5
				fmt.Fprintf(w, "signature ceiling: %d cores x %.0f VerifyStrict/s / 5 verifications per match (intent + 4 frames) = %.0f matches/s; measured %.0f = %.2f of it\n",
					cpus, v.perSec(), ceil, p.rate(), p.rate()/ceil)
				fmt.Fprintf(w, "share of the board's CPU per match in the 5 signature verifications: %.0f%%\n", 100*5*v.perOp.Seconds()/bpm)
				var checks time.Duration
				for _, k := range []string{"wire.Parse, client intent", "wire.VerifyRaw, intent", "wire.Parse, client relay, KEY", "wire.VerifyRaw, KEY", "wire.Parse, client relay, SIGNALING", "wire.VerifyRaw, SIGNALING"} {
					if o, ok := r.op(k); ok {
						mult := time.Duration(2)
						if strings.Contains(k, "intent") {
							mult = 1
						}
						checks += mult * o.perOp
					}
				}
				fmt.Fprintf(w, "share in the wire-level checks (Parse + VerifyRaw of the intent and four frames, %.0f µs): %.0f%%\n", float64(checks)/1e3, 100*checks.Seconds()/bpm)
			}
		}
		st := m.stats
		fmt.Fprintf(w, "board counts at the end: channels opened %d, completed %d, timed out %d, peer gone %d, frames relayed %d, rejected %v; messages the devices did not expect: %d\n",
			st.ChannelsOpened, st.Completed, st.TimedOut, st.PeerGone, st.Relayed, st.Rejected, m.unrouted)
	}
}
