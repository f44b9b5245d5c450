package resolve_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyhole-p2p/keyhole/dht"
	"github.com/keyhole-p2p/keyhole/identity"
	"github.com/keyhole-p2p/keyhole/pkarr"
	"github.com/keyhole-p2p/keyhole/pkarr/relay"
	"github.com/keyhole-p2p/keyhole/record"
	. "github.com/keyhole-p2p/keyhole/resolve"
)

func packet(t testing.TB, key *identity.PrivateKey, at time.Time, ttl uint32) *record.SignedPacket {
	t.Helper()
	dns, err := record.EncodeZone(key.Public(), []record.RR{record.TXT("_x", ttl, []byte("v"))})
	if err != nil {
		t.Fatal(err)
	}
	p, err := record.Sign(key, dns, record.Micros(at))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// fakeDHT answers from a fixed packet after a delay; it stands in for a
// DHT only where the test is about the resolver's racing logic. The real
// DHT is used in the end-to-end tests below.
type fakeDHT struct {
	p     *record.SignedPacket
	delay time.Duration
	calls atomic.Int32
}

func (f *fakeDHT) Get(ctx context.Context, key identity.PublicKey, _ dht.GetOptions) (*record.SignedPacket, dht.GetStats, error) {
	f.calls.Add(1)
	select {
	case <-time.After(f.delay):
	case <-ctx.Done():
		return nil, dht.GetStats{}, ctx.Err()
	}
	if f.p == nil || f.p.PublicKey != key {
		return nil, dht.GetStats{}, dht.ErrNotFound
	}
	return f.p, dht.GetStats{}, nil
}

func relayWith(t *testing.T, ps ...*record.SignedPacket) string {
	srv := relay.New(relay.Config{})
	t.Cleanup(srv.Close)
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	for _, p := range ps {
		if err := (&pkarr.Client{}).Put(context.Background(), ts.URL, p); err != nil {
			t.Fatal(err)
		}
	}
	return ts.URL
}

// deadRelay is an address where nothing listens.
func deadRelay(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

// slowRelay accepts and never answers within the test.
func slowRelay(t *testing.T) string {
	block := make(chan struct{})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(block); ts.Close() })
	return ts.URL
}

func TestResolveBoundedWhenSourcesFail(t *testing.T) {
	key, _ := identity.Generate()
	p := packet(t, key, time.Now(), 300)
	r := &Resolver{
		DHT:     &fakeDHT{p: p, delay: 20 * time.Millisecond},
		Relays:  []string{deadRelay(t), slowRelay(t)},
		Timeout: 3 * time.Second,
		Grace:   100 * time.Millisecond,
	}
	start := time.Now()
	res, err := r.Resolve(context.Background(), key.Public())
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("took %v: a slow relay held the answer back past the grace period", took)
	}
	if res.From != "dht" || res.Packet.Timestamp != p.Timestamp {
		t.Fatalf("from %s", res.From)
	}
	// Nothing anywhere: an error naming every source, within the timeout.
	other, _ := identity.Generate()
	r.Timeout = 500 * time.Millisecond
	start = time.Now()
	_, err = r.Resolve(context.Background(), other.Public())
	if !errors.Is(err, ErrNotFound) || time.Since(start) > 2*time.Second {
		t.Fatalf("%v after %v", err, time.Since(start))
	}
	for _, want := range []string{"dht:", "connection refused", "gave up waiting"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestResolveNewestWinsAndLiarsLose(t *testing.T) {
	key, _ := identity.Generate()
	now := time.Now()
	oldP, newP := packet(t, key, now.Add(-time.Minute), 300), packet(t, key, now, 300)
	liar := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		b := packet(t, key, now.Add(time.Hour), 300).RelayPayload()
		b[70] ^= 1 // newest of all, but forged
		w.Write(b)
	}))
	defer liar.Close()
	r := &Resolver{
		DHT:    &fakeDHT{p: newP, delay: 50 * time.Millisecond},
		Relays: []string{relayWith(t, oldP), liar.URL},
		Grace:  500 * time.Millisecond,
	}
	res, err := r.Resolve(context.Background(), key.Public())
	if err != nil {
		t.Fatal(err)
	}
	if res.Packet.Timestamp != newP.Timestamp {
		t.Fatalf("got seq %d from %s, want the newest valid one", res.Packet.Timestamp, res.From)
	}
	lied := false
	for _, a := range res.Attempts {
		if a.Source == liar.URL && strings.Contains(a.Err, "bad signature") {
			lied = true
		}
	}
	if !lied {
		t.Errorf("the forged answer was not reported: %+v", res.Attempts)
	}
}

func TestResolveCacheTTLAndSeqRegression(t *testing.T) {
	key, _ := identity.Generate()
	now := time.Now()
	clock := now
	f := &fakeDHT{p: packet(t, key, now, 1)} // TTL 1 s: clamped up to MinTTL
	r := &Resolver{DHT: f, Cache: NewCache(10), Now: func() time.Time { return clock }}
	if _, err := r.Resolve(context.Background(), key.Public()); err != nil {
		t.Fatal(err)
	}
	clock = now.Add(DefaultMinTTL - time.Second)
	res, err := r.Resolve(context.Background(), key.Public())
	if err != nil || res.From != "cache" || f.calls.Load() != 1 {
		t.Fatalf("within MinTTL: from %s, %d DHT calls, %v", res.From, f.calls.Load(), err)
	}
	clock = now.Add(DefaultMinTTL + time.Second)
	if res, _ := r.Resolve(context.Background(), key.Public()); res.From != "dht" {
		t.Fatalf("after MinTTL: from %s", res.From)
	}
	// A source now offers an older record: refused, the cache remembers.
	clock = clock.Add(time.Hour)
	f.p = packet(t, key, clock.Add(-time.Hour-time.Minute), 300)
	_, err = r.Resolve(context.Background(), key.Public())
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "sequence number went backwards") {
		t.Fatalf("older record after a newer one: %v", err)
	}
	// A hostile TTL cannot pin a record beyond MaxTTL.
	if got := r.TTL([]record.RR{{TTL: 1 << 31}}); got != DefaultMaxTTL {
		t.Errorf("ttl = %v", got)
	}
}

// End to end on a real DHT testnet with a real relay: publish, then
// resolve from a fresh resolver; then update and see the new record.
func TestPublishResolveEndToEnd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	tn, err := dht.StartTestnet(ctx, 30, dht.TestnetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer tn.Close()
	newNode := func() *dht.Node {
		n, err := dht.New(dht.Config{Addr: "127.0.0.1:0", Bootstrap: tn.Bootstrap(), Testnet: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		return n
	}
	relayURL := relayWith(t)
	key, _ := identity.Generate()
	pub := &Publisher{Key: key, DHT: newNode(), Relays: []string{relayURL, deadRelay(t)}}
	kps, _ := record.ParseKPSAddr("127.0.0.1:4242:" + record.EncodeCertHash([32]byte{1}))
	pub.SetContent(&record.Content{Direct: []record.KPSAddr{kps}})
	rep, err := pub.PublishOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	nodes, relays := rep.Landed()
	if nodes < 8 || relays != 1 || rep.Relays[1].Err == "" {
		t.Fatalf("landed on %d nodes and %d relays: %+v", nodes, relays, rep)
	}
	for _, src := range []*Resolver{{DHT: newNode()}, {Relays: []string{relayURL}}} {
		res, err := src.Resolve(ctx, key.Public())
		if err != nil {
			t.Fatal(err)
		}
		c, err := record.ParseContent(res.Packet, res.Records, time.Now())
		if err != nil || len(c.Direct) != 1 || c.Direct[0] != kps {
			t.Fatalf("resolved from %s: %+v %v", res.From, c, err)
		}
	}

	// Run republishes on a schedule...
	var published atomic.Int32
	pub.OnPublish = func(r Report, err error) {
		if err == nil {
			published.Add(1)
		}
	}
	run := func(interval time.Duration) (stop func()) {
		pub.Interval = interval
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- pub.Run(runCtx) }()
		return func() {
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Errorf("Run returned %v", err)
			}
		}
	}
	waitFor := func(n int32) {
		for deadline := time.Now().Add(20 * time.Second); published.Load() < n; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("only %d publications, want %d", published.Load(), n)
			}
		}
	}
	stop := run(150 * time.Millisecond)
	waitFor(3)
	stop()

	// ...and at once when the content changes, however long the interval.
	published.Store(0)
	stop = run(time.Hour)
	defer stop()
	waitFor(1)
	kps2, _ := record.ParseKPSAddr("127.0.0.1:5353:" + record.EncodeCertHash([32]byte{2}))
	pub.SetContent(&record.Content{Direct: []record.KPSAddr{kps2}})
	waitFor(2)
	res, err := (&Resolver{Relays: []string{relayURL}}).Resolve(ctx, key.Public())
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := record.ParseContent(res.Packet, res.Records, time.Now()); c == nil || len(c.Direct) != 1 || c.Direct[0] != kps2 {
		t.Fatalf("the changed record was not republished: %+v", c)
	}
}

func TestPublishFailsWhenNothingAccepts(t *testing.T) {
	key, _ := identity.Generate()
	pub := &Publisher{Key: key, Relays: []string{deadRelay(t)}, Timeout: 2 * time.Second}
	_, err := pub.PublishOnce(context.Background())
	if !errors.Is(err, ErrNotPublished) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("%v", err)
	}
	var attempts atomic.Int32
	pub.OnPublish = func(_ Report, err error) {
		if err != nil {
			attempts.Add(1)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	pub.Interval = time.Hour // a failure must not wait this long
	_ = pub.Run(ctx)
	if n := attempts.Load(); n < 2 {
		t.Fatalf("%d attempts in 4 s: failures should be retried with a short backoff", n)
	}
}
