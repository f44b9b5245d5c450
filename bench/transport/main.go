// Command transport measures keyhole's KPS transports (package kps) on
// loopback against the libraries they are built on, in one run:
//
//  1. Bulk throughput of one stream in one direction: kps over QUIC
//     against raw quic-go (a plain quic.Listener and quic.DialAddr with a
//     self-signed certificate and the same quic.Config knobs), kps over
//     WebRTC-direct against raw pion data channels (two PeerConnections
//     signalled in-process, one detached reliable ordered channel, 16 KiB
//     messages with the same 1 MiB bufferedAmount backpressure kps uses),
//     and loopback TCP as the roof. Each transfer runs on a fresh
//     connection, is repeated, and the median is reported. go-libp2p's QUIC
//     and WebRTC-direct transports are measured too when -libp2p names its
//     module: it needs a different quic-go and pion than keyhole's, so it
//     is a separate module, run as a separate process right after.
//  2. Memory per idle connection: many connections, each after one
//     completed stream round trip, with the listener and the dialers in
//     this same process (so the figure covers both ends of a connection).
//     Heap in use after a GC, minus the baseline, divided by the count;
//     also RSS and goroutines. Each case runs in a fresh child process of
//     this program so that the RSS of one case does not include another's.
//  3. Stream-open latency: many streams opened at once on one connection,
//     each timed from the open to its first echoed byte; and connection
//     set-up time, sequential dials each timed until the connection is
//     usable.
//
// The point is to know what kps's wrapping costs (the shared UDP socket
// and its demultiplexing, the framing over data channels, the stream
// bookkeeping) against the same libraries used directly; ratios against
// peers measured in the same run, on the same machine, are what carry
// over, not the absolute numbers. Everything runs on 127.0.0.1, every loop
// is bounded in count, and the whole run in time (-timeout). -profile DIR
// writes a CPU profile of each bulk case and a heap profile of each memory
// case; -only picks cases.
//
//	go run ./bench/transport
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
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
	"time"

	"github.com/pion/datachannel"
	"github.com/pion/ice/v4"
	"github.com/pion/logging"
	"github.com/pion/webrtc/v4"
	"github.com/quic-go/quic-go"

	"github.com/keyhole-p2p/keyhole/bench/internal/measure"
	"github.com/keyhole-p2p/keyhole/bench/internal/rawquic"
	"github.com/keyhole-p2p/keyhole/kps"
)

type config struct {
	quicMiB, rtcMiB int
	repeats         int
	writeKiB        int
	conns, rtcConns int
	streams         int
	dials           int
	timeout         time.Duration
	profileDir      string
	libp2pDir       string
	only            map[string]bool
}

// want says whether case key is selected by -only.
func (c config) want(key string) bool { return len(c.only) == 0 || c.only[key] }

func main() {
	var cfg config
	flag.IntVar(&cfg.quicMiB, "quic-mib", 256, "MiB per bulk transfer over QUIC and TCP")
	flag.IntVar(&cfg.rtcMiB, "webrtc-mib", 64, "MiB per bulk transfer over WebRTC data channels")
	flag.IntVar(&cfg.repeats, "repeats", 3, "transfers per case (the median is reported)")
	flag.IntVar(&cfg.writeKiB, "write-kib", 64, "size of each Write on a stream, KiB")
	flag.IntVar(&cfg.conns, "conns", 1000, "idle QUIC connections for the memory measurement")
	flag.IntVar(&cfg.rtcConns, "webrtc-conns", 200, "idle WebRTC connections for the memory measurement")
	flag.IntVar(&cfg.streams, "streams", 100, "streams opened at once for the stream-open latency")
	flag.DurationVar(&cfg.timeout, "timeout", 5*time.Minute, "bound on the whole run")
	flag.IntVar(&cfg.dials, "dials", 10, "sequential dials for the connection set-up time")
	flag.StringVar(&cfg.profileDir, "profile", "", "directory for a CPU profile of each bulk case and a heap profile of each memory case")
	flag.StringVar(&cfg.libp2pDir, "libp2p", "bench/transport/libp2p", "directory of the go-libp2p bench module (empty: skip it)")
	only := flag.String("only", "", "comma-separated case keys to run (tcp, kps-quic, quic-go, kps-webrtc, pion); empty: all")
	memCase := flag.String("mem-case", "", "internal: run one memory case and print its result as JSON")
	memN := flag.Int("mem-n", 0, "internal: connections for -mem-case")
	flag.Parse()
	if *only != "" {
		cfg.only = map[string]bool{}
		for _, k := range strings.Split(*only, ",") {
			cfg.only[strings.TrimSpace(k)] = true
		}
	}

	if *memCase != "" {
		ctx, cancel := context.WithTimeout(context.Background(), cfg.timeout)
		defer cancel()
		r, err := runMemCase(ctx, *memCase, *memN, cfg.profileDir)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", *memCase+":", err)
			os.Exit(1)
		}
		b, _ := json.Marshal(r)
		fmt.Println("MEMRESULT " + string(b))
		return
	}
	if err := run(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(cfg config) error {
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
	chunk := cfg.writeKiB << 10
	qBytes := int64(cfg.quicMiB) << 20
	rBytes := int64(cfg.rtcMiB) << 20

	// 1. Bulk throughput.
	cases := []bulkCase{
		{"tcp", "TCP", "loopback TCP (roof)", qBytes, func(ctx context.Context, n int64) (time.Duration, error) { return tcpBulk(ctx, n, chunk) }},
		{"kps-quic", "QUIC", "keyhole kps", qBytes, func(ctx context.Context, n int64) (time.Duration, error) {
			return kpsBulk(ctx, kps.TransportQUIC, n, chunk)
		}},
		{"quic-go", "QUIC", "raw quic-go", qBytes, func(ctx context.Context, n int64) (time.Duration, error) { return quicBulk(ctx, n, chunk) }},
		{"kps-webrtc", "WebRTC", "keyhole kps", rBytes, func(ctx context.Context, n int64) (time.Duration, error) {
			return kpsBulk(ctx, kps.TransportWebRTC, n, chunk)
		}},
		{"pion", "WebRTC", "raw pion data channel", rBytes, pionBulk},
	}
	// Round-robin: transfer i of every case runs before transfer i+1 of
	// any, so a change in the machine's load falls on all cases alike.
	var bulk []bulkResult
	for _, c := range cases {
		if cfg.want(c.key) {
			bulk = append(bulk, bulkResult{key: c.key, transport: c.transport, impl: c.impl, bytes: c.bytes})
		}
	}
	for i := 0; i < cfg.repeats; i++ {
		for j := range bulk {
			c := cases[slices.IndexFunc(cases, func(c bulkCase) bool { return c.key == bulk[j].key })]
			progress("bulk %s: transfer %d of %d, %d MiB", c.key, i+1, cfg.repeats, c.bytes>>20)
			v, err := runBulk(ctx, c, i, cfg.profileDir)
			if err != nil {
				return fmt.Errorf("bulk %s: %w", c.key, err)
			}
			bulk[j].mbps = append(bulk[j].mbps, v)
		}
	}

	// Connection set-up time.
	var setups []openResult
	for _, o := range []struct {
		key, transport, impl string
		fn                   func(context.Context, int) ([]time.Duration, error)
	}{
		{"kps-quic", "QUIC", "keyhole kps", func(ctx context.Context, n int) ([]time.Duration, error) {
			return kpsDials(ctx, kps.TransportQUIC, n)
		}},
		{"quic-go", "QUIC", "raw quic-go", quicDials},
		{"kps-webrtc", "WebRTC", "keyhole kps", func(ctx context.Context, n int) ([]time.Duration, error) {
			return kpsDials(ctx, kps.TransportWebRTC, n)
		}},
		{"pion", "WebRTC", "raw pion PeerConnection pair", pionDials},
	} {
		if !cfg.want(o.key) || cfg.dials <= 0 {
			continue
		}
		progress("connection set-up %s: %d dials", o.key, cfg.dials)
		lat, err := o.fn(ctx, cfg.dials)
		if err != nil {
			return fmt.Errorf("connection set-up %s: %w", o.key, err)
		}
		setups = append(setups, openResult{key: o.key, transport: o.transport, impl: o.impl, lat: lat})
	}

	// 3. Stream-open latency (before the memory cases, which are children).
	var opens []openResult
	for _, o := range []struct {
		key, transport, impl string
		fn                   func(context.Context, int) ([]time.Duration, time.Duration, error)
	}{
		{"kps-quic", "QUIC", "keyhole kps", func(ctx context.Context, n int) ([]time.Duration, time.Duration, error) {
			return kpsOpens(ctx, kps.TransportQUIC, n)
		}},
		{"quic-go", "QUIC", "raw quic-go", quicOpens},
		{"kps-webrtc", "WebRTC", "keyhole kps", func(ctx context.Context, n int) ([]time.Duration, time.Duration, error) {
			return kpsOpens(ctx, kps.TransportWebRTC, n)
		}},
		{"pion", "WebRTC", "raw pion data channel", pionOpens},
	} {
		if !cfg.want(o.key) || cfg.streams <= 0 {
			continue
		}
		progress("stream opens %s: %d at once", o.key, cfg.streams)
		lat, all, err := o.fn(ctx, cfg.streams)
		if err != nil {
			return fmt.Errorf("stream opens %s: %w", o.key, err)
		}
		opens = append(opens, openResult{key: o.key, transport: o.transport, impl: o.impl, lat: lat, all: all})
	}

	// 2. Memory per idle connection, each case in a fresh child process.
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	var mems []memResult
	for _, m := range []struct {
		key string
		n   int
	}{
		{"kps-quic", cfg.conns},
		{"quic-go", cfg.conns},
		{"kps-webrtc", cfg.rtcConns},
		{"pion", cfg.rtcConns},
	} {
		if !cfg.want(m.key) || m.n <= 0 {
			continue
		}
		progress("memory %s: %d connections", m.key, m.n)
		r, err := runMemChild(ctx, exe, m.key, m.n, cfg)
		if err != nil {
			return fmt.Errorf("memory %s: %w", m.key, err)
		}
		mems = append(mems, r)
	}

	// go-libp2p, a separate module and process, right after.
	var libp2pNote string
	if cfg.libp2pDir != "" {
		progress("go-libp2p: building and running %s", cfg.libp2pDir)
		rs, note, err := runLibp2p(ctx, cfg)
		if err != nil {
			libp2pNote = "go-libp2p: " + err.Error()
			progress("%s", libp2pNote)
		} else {
			bulk = append(bulk, rs...)
			libp2pNote = note
		}
	}

	progress("done")
	report(os.Stdout, cfg, bulk, setups, opens, mems, libp2pNote, time.Since(began))
	return nil
}

// ---------------------------------------------------------------------
// Bulk throughput.

type bulkCase struct {
	key, transport, impl string
	bytes                int64
	fn                   func(ctx context.Context, n int64) (time.Duration, error)
}

type bulkResult struct {
	key, transport, impl string
	bytes                int64
	mbps                 []float64 // one per transfer, 10^6 bytes per second
	separate             bool      // measured in the go-libp2p child process
}

func (r bulkResult) median() float64 { return median(r.mbps) }

// runBulk runs transfer i of case c and returns its MB/s.
func runBulk(ctx context.Context, c bulkCase, i int, profileDir string) (float64, error) {
	runtime.GC() // no garbage of one transfer is collected during the next
	if profileDir != "" {
		f, err := os.Create(filepath.Join(profileDir, fmt.Sprintf("%s-%d.pprof", c.key, i+1)))
		if err != nil {
			return 0, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return 0, err
		}
		defer pprof.StopCPUProfile()
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	d, err := c.fn(ctx, c.bytes)
	if err != nil {
		return 0, err
	}
	return float64(c.bytes) / d.Seconds() / 1e6, nil
}

// stream is what every implementation's stream offers the bench.
type stream interface {
	io.Reader
	io.Writer
	CloseWrite() error
}

// quicStream gives a raw quic-go stream the bench's CloseWrite.
type quicStream struct{ *quic.Stream }

func (s quicStream) CloseWrite() error { return s.Stream.Close() }

// sendN writes n bytes in writes of chunk bytes.
func sendN(w io.Writer, n int64, chunk int) error {
	buf := make([]byte, chunk)
	for i := range buf {
		buf[i] = byte(i)
	}
	for n > 0 {
		p := buf
		if int64(len(p)) > n {
			p = p[:n]
		}
		m, err := w.Write(p)
		n -= int64(m)
		if err != nil {
			return err
		}
	}
	return nil
}

// drain reads to EOF and counts (io.Discard's ReadFrom would read 8 KiB
// at a time, which is not what a bulk reader does).
func drain(r io.Reader) (int64, error) {
	buf := make([]byte, 64<<10)
	var total int64
	for {
		n, err := r.Read(buf)
		total += int64(n)
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

type recvResult struct {
	got int64
	at  time.Time
	err error
}

// finish waits for the receiver and checks the count.
func finish(ctx context.Context, start time.Time, n int64, done <-chan recvResult) (time.Duration, error) {
	select {
	case r := <-done:
		if r.err != nil {
			return 0, r.err
		}
		if r.got != n {
			return 0, fmt.Errorf("received %d bytes of %d", r.got, n)
		}
		return r.at.Sub(start), nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func tcpBulk(ctx context.Context, n int64, chunk int) (time.Duration, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	done := make(chan recvResult, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- recvResult{err: err}
			return
		}
		defer c.Close()
		context.AfterFunc(ctx, func() { c.Close() })
		got, err := drain(c)
		done <- recvResult{got, time.Now(), err}
	}()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		return 0, err
	}
	defer c.Close()
	context.AfterFunc(ctx, func() { c.Close() })
	start := time.Now()
	if err := sendN(c, n, chunk); err != nil {
		return 0, err
	}
	c.(*net.TCPConn).CloseWrite()
	return finish(ctx, start, n, done)
}

func kpsBulk(ctx context.Context, transport string, n int64, chunk int) (time.Duration, error) {
	l, err := kps.Listen(ctx, "127.0.0.1:0", kps.Options{})
	if err != nil {
		return 0, err
	}
	defer l.Close()
	done := make(chan recvResult, 1)
	go func() {
		c, err := l.Accept(ctx)
		if err != nil {
			done <- recvResult{err: err}
			return
		}
		context.AfterFunc(ctx, func() { c.Close() })
		s, err := c.AcceptStream(ctx)
		if err != nil {
			done <- recvResult{err: err}
			return
		}
		got, err := drain(s)
		done <- recvResult{got, time.Now(), err}
	}()
	c, err := kps.DialAddr(ctx, l.Address(), kps.DialOptions{Transport: transport})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	context.AfterFunc(ctx, func() { c.Close() })
	start := time.Now()
	s, err := c.OpenStream(ctx)
	if err != nil {
		return 0, err
	}
	if err := sendN(s, n, chunk); err != nil {
		return 0, err
	}
	if err := s.CloseWrite(); err != nil {
		return 0, err
	}
	return finish(ctx, start, n, done)
}

func quicBulk(ctx context.Context, n int64, chunk int) (time.Duration, error) {
	ln, err := rawquic.Listen()
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	done := make(chan recvResult, 1)
	go func() {
		c, err := ln.Accept(ctx)
		if err != nil {
			done <- recvResult{err: err}
			return
		}
		defer c.CloseWithError(0, "")
		context.AfterFunc(ctx, func() { c.CloseWithError(0, "") })
		s, err := c.AcceptStream(ctx)
		if err != nil {
			done <- recvResult{err: err}
			return
		}
		got, err := drain(s)
		done <- recvResult{got, time.Now(), err}
	}()
	c, err := rawquic.Dial(ctx, ln.Addr().String())
	if err != nil {
		return 0, err
	}
	defer c.CloseWithError(0, "")
	context.AfterFunc(ctx, func() { c.CloseWithError(0, "") })
	start := time.Now()
	s, err := c.OpenStreamSync(ctx)
	if err != nil {
		return 0, err
	}
	if err := sendN(s, n, chunk); err != nil {
		return 0, err
	}
	if err := s.Close(); err != nil {
		return 0, err
	}
	return finish(ctx, start, n, done)
}

// ---------------------------------------------------------------------
// Raw pion: two PeerConnections on loopback, signalled in-process.

const (
	pionMessage    = 16 << 10 // kps's maxFramePayload
	pionHighWater  = 1 << 20  // kps's writeHighWater
	pionLowWater   = pionHighWater / 2
	pionSetupLimit = 20 * time.Second
)

type detached struct {
	dc  *webrtc.DataChannel
	raw datachannel.ReadWriteCloser
}

type pionPair struct {
	a, b     *webrtc.PeerConnection
	first    detached      // a's end of the channel the offer carried
	firstB   detached      // b's end of it
	incoming chan detached // channels a opens, as b sees them
	done     chan struct{}
	once     sync.Once
}

func pionAPI() *webrtc.API {
	var se webrtc.SettingEngine
	se.DetachDataChannels()
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelDisabled
	se.LoggerFactory = lf
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() }) // 127.0.0.1 only
	return webrtc.NewAPI(webrtc.WithSettingEngine(se))
}

func detachOnOpen(dc *webrtc.DataChannel, out func(detached)) {
	dc.OnOpen(func() {
		raw, err := dc.Detach()
		if err == nil {
			out(detached{dc, raw})
		}
	})
}

// setLocalGathered applies a local description and waits until its
// candidates are gathered, so the description can be handed over whole.
func setLocalGathered(ctx context.Context, pc *webrtc.PeerConnection, d webrtc.SessionDescription) error {
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(d); err != nil {
		return err
	}
	select {
	case <-gathered:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// newPionPair connects two PeerConnections. accept is how many channels
// a may open before b's side takes them (more are closed).
func newPionPair(ctx context.Context, api *webrtc.API, accept int) (*pionPair, error) {
	ctx, cancel := context.WithTimeout(ctx, pionSetupLimit)
	defer cancel()
	a, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	b, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		a.Close()
		return nil, err
	}
	p := &pionPair{a: a, b: b, incoming: make(chan detached, accept), done: make(chan struct{})}
	fail := func(err error) (*pionPair, error) {
		p.Close()
		return nil, err
	}
	b.OnDataChannel(func(dc *webrtc.DataChannel) {
		detachOnOpen(dc, func(d detached) {
			select {
			case p.incoming <- d:
			default:
				d.raw.Close()
			}
		})
	})
	ordered := true
	dc, err := a.CreateDataChannel("c0", &webrtc.DataChannelInit{Ordered: &ordered})
	if err != nil {
		return fail(err)
	}
	firstA := make(chan detached, 1)
	detachOnOpen(dc, func(d detached) { firstA <- d })

	offer, err := a.CreateOffer(nil)
	if err != nil {
		return fail(err)
	}
	if err := setLocalGathered(ctx, a, offer); err != nil {
		return fail(err)
	}
	if err := b.SetRemoteDescription(*a.LocalDescription()); err != nil {
		return fail(err)
	}
	answer, err := b.CreateAnswer(nil)
	if err != nil {
		return fail(err)
	}
	if err := setLocalGathered(ctx, b, answer); err != nil {
		return fail(err)
	}
	if err := a.SetRemoteDescription(*b.LocalDescription()); err != nil {
		return fail(err)
	}
	for i := 0; i < 2; i++ {
		select {
		case d := <-firstA:
			p.first = d
		case d := <-p.incoming:
			p.firstB = d
		case <-ctx.Done():
			return fail(fmt.Errorf("pion pair: data channel did not open: %w", ctx.Err()))
		}
	}
	return p, nil
}

func (p *pionPair) Close() {
	p.once.Do(func() {
		close(p.done)
		p.a.Close()
		p.b.Close()
	})
}

// pionSend writes n bytes as 16 KiB messages, waiting while 1 MiB is
// buffered, as a kps stream does.
func pionSend(ctx context.Context, d detached, n int64) error {
	low := make(chan struct{}, 1)
	d.dc.SetBufferedAmountLowThreshold(pionLowWater)
	d.dc.OnBufferedAmountLow(func() {
		select {
		case low <- struct{}{}:
		default:
		}
	})
	msg := make([]byte, pionMessage)
	for n > 0 {
		for d.dc.BufferedAmount() >= pionHighWater {
			t := time.NewTimer(50 * time.Millisecond)
			select {
			case <-low:
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			}
			t.Stop()
		}
		m := msg
		if int64(len(m)) > n {
			m = m[:n]
		}
		if _, err := d.raw.Write(m); err != nil {
			return err
		}
		n -= int64(len(m))
	}
	return nil
}

func pionBulk(ctx context.Context, n int64) (time.Duration, error) {
	p, err := newPionPair(ctx, pionAPI(), 1)
	if err != nil {
		return 0, err
	}
	defer p.Close()
	context.AfterFunc(ctx, p.Close)
	done := make(chan recvResult, 1)
	go func() {
		buf := make([]byte, 64<<10)
		var got int64
		for got < n {
			m, _, err := p.firstB.raw.ReadDataChannel(buf)
			if err != nil {
				done <- recvResult{got, time.Now(), err}
				return
			}
			got += int64(m)
		}
		done <- recvResult{got, time.Now(), nil}
	}()
	start := time.Now()
	if err := pionSend(ctx, p.first, n); err != nil {
		return 0, err
	}
	return finish(ctx, start, n, done)
}

// ---------------------------------------------------------------------
// Echo servers and round trips, shared by the latency and memory cases.

func echo(s stream) {
	buf := make([]byte, 4096)
	for {
		n, err := s.Read(buf)
		if n > 0 {
			if _, werr := s.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			s.CloseWrite()
			return
		}
	}
}

func kpsEchoServer(ctx context.Context, l *kps.Listener) {
	for {
		c, err := l.Accept(ctx)
		if err != nil {
			return
		}
		go func() {
			for {
				s, err := c.AcceptStream(ctx)
				if err != nil {
					return
				}
				go echo(s)
			}
		}()
	}
}

func quicEchoServer(ctx context.Context, ln *quic.Listener) {
	rawquic.Serve(ctx, ln, func(s *quic.Stream) { echo(quicStream{s}) })
}

// pionEchoServer echoes every message of every channel a opens, until
// the pair closes.
func pionEchoServer(p *pionPair) {
	for {
		var d detached
		select {
		case d = <-p.incoming:
		case <-p.done:
			return
		}
		go func() {
			buf := make([]byte, 64<<10)
			for {
				n, _, err := d.raw.ReadDataChannel(buf)
				if err != nil {
					return
				}
				if _, err := d.raw.Write(buf[:n]); err != nil {
					return
				}
			}
		}()
	}
}

// roundTrip sends one byte on s, finishes writing and reads the echo to
// EOF. It returns when the echoed byte arrived.
func roundTrip(s stream) (time.Time, error) {
	if _, err := s.Write([]byte{7}); err != nil {
		return time.Time{}, err
	}
	if err := s.CloseWrite(); err != nil {
		return time.Time{}, err
	}
	var b [1]byte
	if _, err := io.ReadFull(s, b[:]); err != nil {
		return time.Time{}, err
	}
	at := time.Now()
	if n, err := drain(s); err != nil || n != 0 {
		return at, fmt.Errorf("echo: %d extra bytes, %v", n, err)
	}
	return at, nil
}

// ---------------------------------------------------------------------
// Connection set-up: sequential dials to one listener.

func kpsDials(ctx context.Context, transport string, n int) ([]time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	l, err := kps.Listen(ctx, "127.0.0.1:0", kps.Options{})
	if err != nil {
		return nil, err
	}
	defer l.Close()
	go kpsEchoServer(ctx, l)
	var out []time.Duration
	for i := 0; i < n; i++ {
		t := time.Now()
		c, err := kps.DialAddr(ctx, l.Address(), kps.DialOptions{Transport: transport})
		if err != nil {
			return nil, err
		}
		out = append(out, time.Since(t))
		c.Close()
	}
	return out, nil
}

func quicDials(ctx context.Context, n int) ([]time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	ln, err := rawquic.Listen()
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	go quicEchoServer(ctx, ln)
	var out []time.Duration
	for i := 0; i < n; i++ {
		t := time.Now()
		c, err := rawquic.Dial(ctx, ln.Addr().String())
		if err != nil {
			return nil, err
		}
		out = append(out, time.Since(t))
		c.CloseWithError(0, "")
	}
	return out, nil
}

func pionDials(ctx context.Context, n int) ([]time.Duration, error) {
	api := pionAPI()
	var out []time.Duration
	for i := 0; i < n; i++ {
		t := time.Now()
		p, err := newPionPair(ctx, api, 1)
		if err != nil {
			return nil, err
		}
		out = append(out, time.Since(t))
		p.Close()
	}
	return out, nil
}

// ---------------------------------------------------------------------
// 3. Stream-open latency: n streams opened at once on one connection.

type openResult struct {
	key, transport, impl string
	lat                  []time.Duration
	all                  time.Duration
}

func parallelOpens(ctx context.Context, n int, open func(context.Context) (stream, error)) ([]time.Duration, time.Duration, error) {
	lat := make([]time.Duration, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	startAll := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-startAll
			t := time.Now()
			s, err := open(ctx)
			if err != nil {
				errs[i] = err
				return
			}
			at, err := roundTrip(s)
			lat[i], errs[i] = at.Sub(t), err
		}()
	}
	t := time.Now()
	close(startAll)
	wg.Wait()
	all := time.Since(t)
	if err := errors.Join(errs...); err != nil {
		return nil, 0, err
	}
	return lat, all, nil
}

func kpsOpens(ctx context.Context, transport string, n int) ([]time.Duration, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	l, err := kps.Listen(ctx, "127.0.0.1:0", kps.Options{})
	if err != nil {
		return nil, 0, err
	}
	defer l.Close()
	go kpsEchoServer(ctx, l)
	c, err := kps.DialAddr(ctx, l.Address(), kps.DialOptions{Transport: transport})
	if err != nil {
		return nil, 0, err
	}
	defer c.Close()
	context.AfterFunc(ctx, func() { c.Close() })
	// One stream first, so that nothing of the handshake is counted.
	s, err := c.OpenStream(ctx)
	if err != nil {
		return nil, 0, err
	}
	if _, err := roundTrip(s); err != nil {
		return nil, 0, err
	}
	return parallelOpens(ctx, n, func(ctx context.Context) (stream, error) { return c.OpenStream(ctx) })
}

func quicOpens(ctx context.Context, n int) ([]time.Duration, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	ln, err := rawquic.Listen()
	if err != nil {
		return nil, 0, err
	}
	defer ln.Close()
	go quicEchoServer(ctx, ln)
	c, err := rawquic.Dial(ctx, ln.Addr().String())
	if err != nil {
		return nil, 0, err
	}
	defer c.CloseWithError(0, "")
	context.AfterFunc(ctx, func() { c.CloseWithError(0, "") })
	open := func(ctx context.Context) (stream, error) {
		s, err := c.OpenStreamSync(ctx)
		if err != nil {
			return nil, err
		}
		return quicStream{s}, nil
	}
	s, err := open(ctx)
	if err != nil {
		return nil, 0, err
	}
	if _, err := roundTrip(s); err != nil {
		return nil, 0, err
	}
	return parallelOpens(ctx, n, open)
}

// pionStream is one data channel used the plain way: one message out, the
// echo back, then the channel is closed.
type pionStream struct {
	d      detached
	closed bool
}

func (s *pionStream) Write(p []byte) (int, error) { return s.d.raw.Write(p) }
func (s *pionStream) CloseWrite() error           { return nil }

func (s *pionStream) Read(p []byte) (int, error) {
	if s.closed {
		return 0, io.EOF
	}
	// One echoed message ends the exchange.
	buf := make([]byte, 64<<10)
	n, _, err := s.d.raw.ReadDataChannel(buf)
	if err != nil {
		return 0, err
	}
	s.closed = true
	s.d.raw.Close()
	return copy(p, buf[:n]), nil
}

// pionOpen opens a data channel on a and waits until it is open there.
func pionOpen(ctx context.Context, p *pionPair, label string) (stream, error) {
	ordered := true
	dc, err := p.a.CreateDataChannel(label, &webrtc.DataChannelInit{Ordered: &ordered})
	if err != nil {
		return nil, err
	}
	opened := make(chan detached, 1)
	detachOnOpen(dc, func(d detached) { opened <- d })
	select {
	case d := <-opened:
		return &pionStream{d: d}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func pionOpens(ctx context.Context, n int) ([]time.Duration, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	p, err := newPionPair(ctx, pionAPI(), n+1)
	if err != nil {
		return nil, 0, err
	}
	defer p.Close()
	context.AfterFunc(ctx, p.Close)
	go pionEchoServer(p)
	// The first channel is the warm-up exchange.
	go func() {
		buf := make([]byte, 64<<10)
		n, _, err := p.firstB.raw.ReadDataChannel(buf)
		if err == nil {
			p.firstB.raw.Write(buf[:n])
		}
	}()
	if _, err := roundTrip(&pionStream{d: p.first}); err != nil {
		return nil, 0, err
	}
	var label atomic.Int64
	return parallelOpens(ctx, n, func(ctx context.Context) (stream, error) {
		return pionOpen(ctx, p, "s"+strconv.FormatInt(label.Add(1), 10))
	})
}

// ---------------------------------------------------------------------
// 2. Memory per idle connection (in a child process per case).

type memResult struct {
	Case       string  `json:"case"`
	N          int     `json:"n"`
	HeapInuse  float64 `json:"heap_inuse_per_conn"`
	HeapAlloc  float64 `json:"heap_alloc_per_conn"`
	RSS        float64 `json:"rss_per_conn"`
	Goroutines float64 `json:"goroutines_per_conn"`
	Setup      float64 `json:"setup_seconds"`
	BaseHeap   uint64  `json:"base_heap_inuse"`
	BaseRSS    uint64  `json:"base_rss"`
}

type snapshot struct {
	heapInuse, heapAlloc, rss uint64
	goroutines                int
}

func takeSnapshot() snapshot {
	debug.FreeOSMemory() // a GC, and freed pages go back so RSS means live
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return snapshot{heapInuse: ms.HeapInuse, heapAlloc: ms.HeapAlloc, rss: measure.RSS(), goroutines: runtime.NumGoroutine()}
}

// connector makes one connection with a completed round trip and returns
// its closer.
type connector func(ctx context.Context) (func(), error)

func runMemCase(ctx context.Context, name string, n int, profileDir string) (memResult, error) {
	if n <= 0 {
		return memResult{}, errors.New("-mem-n must be positive")
	}
	var connect connector
	workers := 8
	switch name {
	case "kps-quic", "kps-webrtc":
		transport := kps.TransportQUIC
		if name == "kps-webrtc" {
			transport, workers = kps.TransportWebRTC, 4
		}
		l, err := kps.Listen(ctx, "127.0.0.1:0", kps.Options{})
		if err != nil {
			return memResult{}, err
		}
		defer l.Close()
		go kpsEchoServer(ctx, l)
		connect = func(ctx context.Context) (func(), error) {
			c, err := kps.DialAddr(ctx, l.Address(), kps.DialOptions{Transport: transport})
			if err != nil {
				return nil, err
			}
			s, err := c.OpenStream(ctx)
			if err == nil {
				_, err = roundTrip(s)
			}
			if err != nil {
				c.Close()
				return nil, err
			}
			return func() { c.Close() }, nil
		}
	case "quic-go":
		ln, err := rawquic.Listen()
		if err != nil {
			return memResult{}, err
		}
		defer ln.Close()
		go quicEchoServer(ctx, ln)
		connect = func(ctx context.Context) (func(), error) {
			c, err := rawquic.Dial(ctx, ln.Addr().String())
			if err != nil {
				return nil, err
			}
			s, err := c.OpenStreamSync(ctx)
			if err == nil {
				_, err = roundTrip(quicStream{s})
			}
			if err != nil {
				c.CloseWithError(0, "")
				return nil, err
			}
			return func() { c.CloseWithError(0, "") }, nil
		}
	case "pion":
		api := pionAPI()
		workers = 4
		connect = func(ctx context.Context) (func(), error) {
			p, err := newPionPair(ctx, api, 1)
			if err != nil {
				return nil, err
			}
			go pionEchoServer(p)
			go func() {
				buf := make([]byte, 4096)
				n, _, err := p.firstB.raw.ReadDataChannel(buf)
				if err == nil {
					p.firstB.raw.Write(buf[:n])
				}
			}()
			if _, err := roundTrip(&pionStream{d: p.first}); err != nil {
				p.Close()
				return nil, err
			}
			return p.Close, nil
		}
	default:
		return memResult{}, fmt.Errorf("unknown memory case %q", name)
	}

	// One connection first, so that one-time initialisation (crypto
	// tables, pools, the listener's first buffers) is in the baseline.
	closeWarm, err := connect(ctx)
	if err != nil {
		return memResult{}, fmt.Errorf("warm-up: %w", err)
	}
	closeWarm()
	time.Sleep(time.Second)
	base := takeSnapshot()

	start := time.Now()
	closers := make([]func(), n)
	errs := make([]error, n)
	next := atomic.Int64{}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				closers[i], errs[i] = connect(cctx)
				cancel()
			}
		}()
	}
	wg.Wait()
	setup := time.Since(start)
	defer func() {
		for _, c := range closers {
			if c != nil {
				c()
			}
		}
	}()
	if err := errors.Join(errs...); err != nil {
		return memResult{}, err
	}
	// Let finished streams' channels close and timers settle.
	time.Sleep(2 * time.Second)
	after := takeSnapshot()
	if profileDir != "" {
		f, err := os.Create(filepath.Join(profileDir, "mem-"+name+".heap.pprof"))
		if err != nil {
			return memResult{}, err
		}
		err = pprof.Lookup("heap").WriteTo(f, 0)
		f.Close()
		if err != nil {
			return memResult{}, err
		}
	}
	per := func(a, b uint64) float64 { return (float64(a) - float64(b)) / float64(n) }
	return memResult{
		Case:       name,
		N:          n,
		HeapInuse:  per(after.heapInuse, base.heapInuse),
		HeapAlloc:  per(after.heapAlloc, base.heapAlloc),
		RSS:        per(after.rss, base.rss),
		Goroutines: float64(after.goroutines-base.goroutines) / float64(n),
		Setup:      setup.Seconds(),
		BaseHeap:   base.heapInuse,
		BaseRSS:    base.rss,
	}, nil
}

func runMemChild(ctx context.Context, exe, name string, n int, cfg config) (memResult, error) {
	cmd := exec.CommandContext(ctx, exe, "-mem-case", name, "-mem-n", strconv.Itoa(n), "-timeout", cfg.timeout.String(), "-profile", cfg.profileDir)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return memResult{}, err
	}
	for _, line := range strings.Split(string(out), "\n") {
		if j, ok := strings.CutPrefix(line, "MEMRESULT "); ok {
			var r memResult
			err := json.Unmarshal([]byte(j), &r)
			return r, err
		}
	}
	return memResult{}, errors.New("the child printed no result")
}

// ---------------------------------------------------------------------
// go-libp2p, in its own module (bench/transport/libp2p), run with the go
// tool as a separate process.

type libp2pResult struct {
	Key       string    `json:"key"`
	Transport string    `json:"transport"`
	Impl      string    `json:"impl"`
	Bytes     int64     `json:"bytes"`
	MBps      []float64 `json:"mbps"`
	Version   string    `json:"version"`
}

func runLibp2p(ctx context.Context, cfg config) ([]bulkResult, string, error) {
	if _, err := os.Stat(filepath.Join(cfg.libp2pDir, "go.mod")); err != nil {
		return nil, "", fmt.Errorf("no module at %s (run from the repository root): %w", cfg.libp2pDir, err)
	}
	cctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(cctx, "go", "run", ".",
		"-quic-mib", strconv.Itoa(cfg.quicMiB), "-webrtc-mib", strconv.Itoa(cfg.rtcMiB),
		"-repeats", strconv.Itoa(cfg.repeats), "-write-kib", strconv.Itoa(cfg.writeKiB))
	cmd.Dir = cfg.libp2pDir
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, "", err
	}
	var rs []libp2pResult
	var version string
	for _, line := range strings.Split(string(out), "\n") {
		if j, ok := strings.CutPrefix(line, "LIBP2PRESULT "); ok {
			var r libp2pResult
			if err := json.Unmarshal([]byte(j), &r); err != nil {
				return nil, "", err
			}
			rs = append(rs, r)
			version = r.Version
		}
	}
	if len(rs) == 0 {
		return nil, "", errors.New("the libp2p bench printed no result")
	}
	var out2 []bulkResult
	for _, r := range rs {
		out2 = append(out2, bulkResult{key: r.Key, transport: r.Transport, impl: r.Impl, bytes: r.Bytes, mbps: r.MBps, separate: true})
	}
	return out2, "go-libp2p " + version + " ran as a separate process (its own module) right after the rest", nil
}

// ---------------------------------------------------------------------
// Report.

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// pct is the nearest-rank percentile of sorted durations.
func fmtBytes(b float64) string {
	switch {
	case b >= 1<<20 || b <= -(1<<20):
		return fmt.Sprintf("%.2f MiB", b/(1<<20))
	case b >= 1<<10 || b <= -(1<<10):
		return fmt.Sprintf("%.1f KiB", b/(1<<10))
	default:
		return fmt.Sprintf("%.0f B", b)
	}
}

func report(w io.Writer, cfg config, bulk []bulkResult, setups, opens []openResult, mems []memResult, libp2pNote string, took time.Duration) {
	find := func(key string) (bulkResult, bool) {
		for _, r := range bulk {
			if r.key == key {
				return r, true
			}
		}
		return bulkResult{}, false
	}
	tcp, _ := find("tcp")
	fmt.Fprintf(w, "%d CPUs, %s, %s/%s; whole run %v\n\n", runtime.NumCPU(), runtime.Version(), runtime.GOOS, runtime.GOARCH, took.Round(time.Second))

	fmt.Fprintf(w, "Bulk throughput, one stream, one direction, %d KiB writes; median of %d transfers, each on a fresh connection, the cases taking turns (MB = 10^6 bytes):\n\n", cfg.writeKiB, cfg.repeats)
	fmt.Fprintln(w, "| transport | implementation | MiB per run | runs (MB/s) | median MB/s | vs TCP |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	for _, r := range bulk {
		runs := make([]string, len(r.mbps))
		for i, v := range r.mbps {
			runs[i] = fmt.Sprintf("%.0f", v)
		}
		impl := r.impl
		if r.separate {
			impl += " (separate process)"
		}
		vsTCP := "-"
		if tcp.median() > 0 {
			vsTCP = fmt.Sprintf("%.3f", r.median()/tcp.median())
		}
		fmt.Fprintf(w, "| %s | %s | %d | %s | %.1f | %s |\n", r.transport, impl, r.bytes>>20, strings.Join(runs, ", "), r.median(), vsTCP)
	}
	fmt.Fprintln(w)
	ratio := func(a, b string) {
		ra, ok1 := find(a)
		rb, ok2 := find(b)
		if ok1 && ok2 {
			fmt.Fprintf(w, "ratio %s / %s throughput: %.2f\n", a, b, ra.median()/rb.median())
		}
	}
	ratio("kps-quic", "quic-go")
	ratio("kps-webrtc", "pion")
	ratio("kps-quic", "libp2p-quic")
	ratio("kps-webrtc", "libp2p-webrtc")
	if libp2pNote != "" {
		fmt.Fprintln(w, libp2pNote)
	}

	fmt.Fprintf(w, "\nConnection set-up: %d sequential dials, each timed until the connection is usable (for the pion pair: in-process offer/answer, ICE, DTLS and the first data channel open):\n\n", cfg.dials)
	fmt.Fprintln(w, "| transport | implementation | p50 | max |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for _, o := range setups {
		s := slices.Clone(o.lat)
		slices.Sort(s)
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", o.transport, o.impl, measure.Duration(measure.Percentile(s, 0.5)), measure.Duration(s[len(s)-1]))
	}

	fmt.Fprintf(w, "\nStream-open latency: %d streams opened at once on one warm connection, each timed from OpenStream to its first echoed byte:\n\n", cfg.streams)
	fmt.Fprintln(w, "| transport | implementation | p50 | p95 | max | all done |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	for _, o := range opens {
		s := slices.Clone(o.lat)
		slices.Sort(s)
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", o.transport, o.impl, measure.Duration(measure.Percentile(s, 0.5)), measure.Duration(measure.Percentile(s, 0.95)), measure.Duration(s[len(s)-1]), measure.Duration(o.all))
	}

	fmt.Fprintln(w, "\nMemory per idle connection (after one stream round trip; listener and dialers in one process, so both ends are counted; each case in a fresh child process):")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| transport | implementation | connections | heap in use / conn | RSS / conn | goroutines / conn | set-up time |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	names := map[string][2]string{
		"kps-quic":   {"QUIC", "keyhole kps"},
		"quic-go":    {"QUIC", "raw quic-go"},
		"kps-webrtc": {"WebRTC", "keyhole kps"},
		"pion":       {"WebRTC", "raw pion PeerConnection pair"},
	}
	memOf := map[string]memResult{}
	for _, m := range mems {
		memOf[m.Case] = m
		nm := names[m.Case]
		fmt.Fprintf(w, "| %s | %s | %d | %s | %s | %.1f | %.1f s |\n", nm[0], nm[1], m.N, fmtBytes(m.HeapInuse), fmtBytes(m.RSS), m.Goroutines, m.Setup)
	}
	fmt.Fprintln(w)
	for _, p := range [][2]string{{"kps-quic", "quic-go"}, {"kps-webrtc", "pion"}} {
		a, ok1 := memOf[p[0]]
		b, ok2 := memOf[p[1]]
		if ok1 && ok2 {
			fmt.Fprintf(w, "ratio %s / %s heap per connection: %.2f (RSS %.2f)\n", p[0], p[1], a.HeapInuse/b.HeapInuse, a.RSS/b.RSS)
		}
	}
}
