package node_test

import (
	"context"
	"encoding/base64"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyhole-p2p/keyhole/node"
	nodeclient "github.com/keyhole-p2p/keyhole/node/client"
	"github.com/keyhole-p2p/keyhole/node/nodetest"
	"github.com/keyhole-p2p/keyhole/node/pow"
)

// TestPostRefusals tries every way to post without paying, or to post
// what a room cannot carry. Each must be refused with its own status,
// and nothing may reach a subscriber.
func TestPostRefusals(t *testing.T) {
	clk := newClock()
	n := startNode(t, node.Options{Now: clk.now})
	c := http.DefaultClient
	const room = "refusals-room"
	url := n.url + "/room/" + room
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sub := subscribe(t, ctx, n.url, room)

	body := []byte("offer")
	// Paid generously, so the same solution would still meet the price
	// after this post's surcharge: reuse must be refused for being reuse.
	first := info(t, c, n.url)
	goodNonce, err := pow.Solve(context.Background(), first.Token, pow.Binding("room/"+room, body), first.Difficulty+4)
	if err != nil {
		t.Fatal(err)
	}
	good := pow.Header(first.Token, goodNonce)
	if st, m := post(t, c, url, good, body); st != http.StatusAccepted {
		t.Fatalf("paid post: %d %v", st, m)
	}
	if got := next(t, sub, 5*time.Second); string(got.Body) != "offer" {
		t.Fatalf("subscriber got %q", got.Body)
	}

	in := info(t, c, n.url)
	tok := in.Token
	weak := func(b []byte) string {
		// A nonce that does not meet the difficulty.
		for nonce := uint64(0); ; nonce++ {
			raw := mustToken(t, tok)
			if pow.LeadingZeros(pow.Digest(raw, pow.Binding("room/"+room, b), nonce)) < in.Difficulty {
				return pow.Header(tok, nonce)
			}
		}
	}
	staleBody := []byte("stale")
	stale := solved(t, c, n.url, "room/"+room, staleBody)
	big := []byte(strings.Repeat("x", node.MaxPost+1))
	tests := []struct {
		name   string
		hdr    string
		body   []byte
		status int
	}{
		{"no work", "", body, http.StatusPreconditionRequired},
		{"malformed header", "not a solution", body, http.StatusBadRequest},
		{"reused solution", good, body, http.StatusConflict},
		{"too little work", weak(body), body, http.StatusForbidden},
		{"work paid for another body", paidElsewhere(t, in, pow.Binding("room/"+room, []byte("other")), pow.Binding("room/"+room, body)), body, http.StatusForbidden},
		{"work paid for another room", paidElsewhere(t, in, pow.Binding("room/another-room", body), pow.Binding("room/"+room, body)), body, http.StatusForbidden},
		{"stale challenge", stale, staleBody, http.StatusForbidden},
		{"more than 1 KiB", solved(t, c, n.url, "room/"+room, big), big, http.StatusRequestEntityTooLarge},
		{"empty", solved(t, c, n.url, "room/"+room, nil), nil, http.StatusBadRequest},
		{"carriage return", solved(t, c, n.url, "room/"+room, []byte("a\r\nb")), []byte("a\r\nb"), http.StatusBadRequest},
		{"not UTF-8", solved(t, c, n.url, "room/"+room, []byte{0xff, 0xfe}), []byte{0xff, 0xfe}, http.StatusBadRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.hdr == stale {
				clk.advance(3 * time.Minute)
				defer clk.advance(-3 * time.Minute)
			}
			st, m := post(t, c, url, tc.hdr, tc.body)
			if st != tc.status {
				t.Fatalf("status %d (%v), want %d", st, m, tc.status)
			}
			if msg, _ := m["error"].(string); msg == "" || strings.Contains(msg, "\n") {
				t.Fatalf("want one error line, got %q", msg)
			}
			// Work refusals carry what the client needs to solve again.
			if tc.status == http.StatusPreconditionRequired || tc.status == http.StatusConflict || tc.status == http.StatusForbidden {
				if tok, _ := m["token"].(string); len(tok) != 32 {
					t.Fatalf("refusal carries no fresh token: %v", m)
				}
			}
		})
	}
	quiet(t, sub, 200*time.Millisecond)

	// A bad room name is refused before anything else.
	if st, _ := post(t, c, n.url+"/room/short", good, body); st != http.StatusBadRequest {
		t.Fatalf("room name of 5 characters: %d", st)
	}
}

// paidElsewhere is a solution that pays for paid but, as a nonce for
// used, falls short: work moved from one request to another (a nonce
// that happens to solve both would prove nothing).
func paidElsewhere(t testing.TB, in node.Info, paid, used [32]byte) string {
	t.Helper()
	raw := mustToken(t, in.Token)
	for nonce := uint64(0); ; nonce++ {
		if pow.LeadingZeros(pow.Digest(raw, paid, nonce)) >= in.Difficulty && pow.LeadingZeros(pow.Digest(raw, used, nonce)) < in.Difficulty {
			return pow.Header(in.Token, nonce)
		}
	}
}

func mustToken(t testing.TB, tok string) []byte {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(raw) != pow.TokenLen {
		t.Fatalf("token %q: %v", tok, err)
	}
	return raw
}

// TestRoomFanOut: a post reaches every subscriber of its room once, in
// order, and no one else; a multi-line post arrives exactly as sent.
func TestRoomFanOut(t *testing.T) {
	n := startNode(t, node.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := subscribe(t, ctx, n.url, "room-one-aaaa")
	b := subscribe(t, ctx, n.url, "room-one-aaaa")
	other := subscribe(t, ctx, n.url, "room-two-bbbb")
	var c nodeclient.Client
	msgs := []string{"first", "line one\nline two\n\nafter a blank line", strings.Repeat("é", 512)}
	for _, m := range msgs {
		if _, err := c.Post(ctx, n.url, "room-one-aaaa", []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	for _, sub := range []*nodeclient.Subscription{a, b} {
		for _, want := range msgs {
			if got := next(t, sub, 5*time.Second); string(got.Body) != want {
				t.Fatalf("got %q, want %q", got.Body, want)
			}
		}
	}
	quiet(t, other, 200*time.Millisecond)
	quiet(t, a, 100*time.Millisecond)
}

// TestSurchargePerClient: each post makes the poster's next work dearer
// for a minute, and only the poster's.
func TestSurchargePerClient(t *testing.T) {
	n := startNode(t, node.Options{Pricing: &node.Pricing{Base: 2, LoadBits: 8, PostSurcharge: 1, MaxBits: 20}})
	poster, bystander := clientFrom("127.0.0.2"), clientFrom("127.0.0.3")
	before := info(t, poster, n.url).Difficulty
	ctx := context.Background()
	pc := nodeclient.Client{HTTP: poster}
	for i := range 15 {
		if _, err := pc.Post(ctx, n.url, "surcharge-room", []byte{'a' + byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	after := info(t, poster, n.url)
	// log2(1 + 15*1) = 4 more bits.
	if after.Difficulty != before+4 || after.Posts != 15 {
		t.Fatalf("after 15 posts: difficulty %d (was %d), posts %d; want +4 bits", after.Difficulty, before, after.Posts)
	}
	if got := info(t, bystander, n.url).Difficulty; got != before {
		t.Fatalf("another address pays %d bits, want the base %d", got, before)
	}
	// The surcharge is enforced, not just advertised: work that meets
	// the base price but not the poster's is refused for the poster.
	in := info(t, bystander, n.url)
	body := []byte("cheap")
	b := pow.Binding("room/surcharge-room", body)
	nonce := uint64(0)
	for ; ; nonce++ {
		z := pow.LeadingZeros(pow.Digest(mustToken(t, in.Token), b, nonce))
		if z >= in.Difficulty && z < after.Difficulty {
			break
		}
	}
	if st, _ := post(t, poster, n.url+"/room/surcharge-room", pow.Header(in.Token, nonce), body); st != http.StatusForbidden {
		t.Fatalf("base-price work from the poster: %d, want 403", st)
	}
	// The same work is enough for the bystander.
	if st, m := post(t, bystander, n.url+"/room/surcharge-room", pow.Header(in.Token, nonce), body); st != http.StatusAccepted {
		t.Fatalf("base-price work from a quiet address: %d %v", st, m)
	}
}

// TestDifficultyFollowsLoad maps load to price: max(cpu, mem) counts.
func TestDifficultyFollowsLoad(t *testing.T) {
	load := &nodetest.Load{}
	n := startNode(t, node.Options{Load: load, Pricing: &node.Pricing{Base: 10, LoadBits: 8, PostSurcharge: 0.5, MaxBits: 16}})
	tests := []struct {
		cpu, mem float64
		want     int
	}{
		{0, 0, 10}, {0.5, 0, 14}, {0, 0.5, 14}, {0.25, 1, 16 /* capped */}, {1, 1, 16},
	}
	for _, tc := range tests {
		load.Set(tc.cpu, tc.mem)
		in := info(t, http.DefaultClient, n.url)
		if in.Difficulty != tc.want || in.BaseDifficulty != tc.want {
			t.Errorf("cpu %v mem %v: difficulty %d/%d, want %d", tc.cpu, tc.mem, in.Difficulty, in.BaseDifficulty, tc.want)
		}
	}
}

// TestDifficultyUnderRealLoad burns this process's CPU and watches the
// node's own measurement raise the price, then lower it afterwards.
func TestDifficultyUnderRealLoad(t *testing.T) {
	pl := &node.ProcessLoad{Interval: 100 * time.Millisecond}
	n := startNode(t, node.Options{Load: pl, Pricing: &node.Pricing{Base: 4, LoadBits: 8, PostSurcharge: 0.5, MaxBits: 20}})
	base := func() int { return info(t, http.DefaultClient, n.url).BaseDifficulty }
	waitFor := func(what string, ok func(int) bool) int {
		deadline := time.Now().Add(15 * time.Second)
		for {
			d := base()
			if ok(d) {
				return d
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: difficulty stuck at %d", what, d)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	idle := waitFor("settling", func(d int) bool { return d <= 6 })
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range max(2, runtime.GOMAXPROCS(0)) {
		wg.Go(func() {
			x := uint64(1)
			for {
				select {
				case <-stop:
					return
				default:
				}
				for i := 0; i < 1e5; i++ {
					x = x*6364136223846793005 + 1442695040888963407
				}
				sink.Store(x)
			}
		})
	}
	busy := waitFor("under load", func(d int) bool { return d >= idle+4 })
	close(stop)
	wg.Wait()
	after := waitFor("after load", func(d int) bool { return d <= idle+1 })
	t.Logf("difficulty idle %d, under load %d, after %d bits", idle, busy, after)
}

var sink atomic.Uint64

// clock is a settable time source for a node.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now()} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}
