package client_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/logging"
	"github.com/pion/turn/v5"

	"github.com/keyhole-p2p/keyhole/dht"
	"github.com/keyhole-p2p/keyhole/node"
	"github.com/keyhole-p2p/keyhole/node/client"
	"github.com/keyhole-p2p/keyhole/node/nodetest"
	"github.com/keyhole-p2p/keyhole/stunturn"
)

// serve runs a node on loopback (nodetest.Start) and returns its URL.
func serve(t *testing.T, o node.Options) string {
	t.Helper()
	_, url := nodetest.Start(t, o)
	return url
}

// TestPickPrefersQuietNodes: of several nodes, the cheapest comes first,
// a node that does not answer is left out, and one asking more than the
// client allows is left out.
func TestPickPrefersQuietNodes(t *testing.T) {
	busy, quiet, middling, greedy := &nodetest.Load{}, &nodetest.Load{}, &nodetest.Load{}, &nodetest.Load{}
	busy.Set(0.9, 0)
	middling.Set(0.4, 0)
	greedy.Set(1, 0)
	urls := map[string]string{
		"busy":     serve(t, node.Options{Load: busy}),
		"quiet":    serve(t, node.Options{Load: quiet}),
		"middling": serve(t, node.Options{Load: middling}),
		"greedy":   serve(t, node.Options{Load: greedy, Pricing: &node.Pricing{Base: 30, MaxBits: 40}}),
	}
	dead := "http://127.0.0.1:1" // nothing listens on port 1
	c := client.Client{MaxBits: 24}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := c.Pick(ctx, []string{urls["busy"], dead, urls["greedy"], urls["quiet"], urls["middling"]})
	var order []string
	for _, in := range got {
		for name, u := range urls {
			if in.URL == u {
				order = append(order, name)
			}
		}
	}
	if strings.Join(order, ",") != "quiet,middling,busy" {
		t.Fatalf("order %v, want quiet,middling,busy", order)
	}
	// The order follows load as it changes.
	busy.Set(0, 0)
	quiet.Set(0.9, 0)
	got = c.Pick(ctx, []string{urls["busy"], urls["quiet"]})
	if got[0].URL != urls["busy"] {
		t.Fatalf("after the loads swapped, %s came first", got[0].URL)
	}
}

// TestPostFollowsRisingPrice: the price rises between reading it and
// posting; the node's refusal carries the new price and the client pays
// it without being told twice.
func TestPostFollowsRisingPrice(t *testing.T) {
	l := &nodetest.Load{}
	u := serve(t, node.Options{Load: l})
	var c client.Client
	ctx := context.Background()
	sub, err := c.Subscribe(ctx, u, "rising-price-room")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	// Raise the price as soon as the client has read it: wrap the
	// transport and flip the load after the first GET /.
	var once sync.Once
	c.HTTP = &http.Client{Transport: roundTrip(func(r *http.Request) (*http.Response, error) {
		resp, err := http.DefaultTransport.RoundTrip(r)
		if r.Method == http.MethodGet {
			once.Do(func() { l.Set(1, 0) })
		}
		return resp, err
	})}
	id, err := c.Post(ctx, u, "rising-price-room", []byte("paid twice"))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-sub.C:
		if m.ID != id || string(m.Body) != "paid twice" {
			t.Fatalf("got %+v", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("post never arrived")
	}
	// A refusal that is not about work is returned as is.
	_, err = c.Post(ctx, u, "rising-price-room", []byte(strings.Repeat("x", 2000)))
	var ne *client.Error
	if !errors.As(err, &ne) || ne.Status != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversize post: %v", err)
	}
}

type roundTrip func(*http.Request) (*http.Response, error)

func (f roundTrip) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestTURNNeedsToken: the node's TURN server refuses a client without
// credentials, and relays for one whose credentials came from /token.
func TestTURNNeedsToken(t *testing.T) {
	st, err := stunturn.Listen("127.0.0.1:0", stunturn.Options{Secret: []byte("node turn secret"), TCP: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	u := serve(t, node.Options{TURN: st})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// Without a token: no allocation, with no name, a guessed name, or
	// a well-formed but unsigned REST name.
	for _, cred := range [][2]string{{"", ""}, {"guest", "guest"}, {"4102444800:x", "bm90IGEgcmVhbCBwYXNzd29yZA=="}} {
		tc := turnClient(t, st.Addr().String(), cred[0], cred[1])
		if _, err := tc.Allocate(); err == nil {
			t.Fatalf("allocation with %q/%q succeeded without a token", cred[0], cred[1])
		}
	}
	// /token without work is refused.
	resp, err := http.Post(u+"/token", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusPreconditionRequired {
		t.Fatalf("/token without work: %d", resp.StatusCode)
	}

	var c client.Client
	cred, err := c.Token(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	if cred.TTL != 3600 || len(cred.URIs) != 3 {
		t.Fatalf("credentials %+v", cred)
	}
	tc := turnClient(t, st.Addr().String(), cred.Username, cred.Password)
	relay, err := tc.Allocate()
	if err != nil {
		t.Fatalf("allocation with /token credentials: %v", err)
	}
	defer relay.Close()
	peer, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	if _, err := relay.WriteTo([]byte("through the relay"), peer.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := peer.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "through the relay" {
		t.Fatalf("peer got %q, %v", buf[:n], err)
	}
	if from.String() != relay.LocalAddr().String() {
		t.Fatalf("datagram came from %s, not the relay %s", from, relay.LocalAddr())
	}
	if _, err := peer.WriteTo([]byte("and back"), from); err != nil {
		t.Fatal(err)
	}
	relay.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err = relay.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "and back" {
		t.Fatalf("client got %q, %v", buf[:n], err)
	}
	// The node's metrics see the TURN server: one relay open, refusals
	// counted.
	resp, err = http.Get(u + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(raw), "keyhole_turn_allocations 1\n") || strings.Contains(string(raw), "keyhole_turn_refused_total 0\n") {
		t.Fatalf("/metrics does not show the relay and the refusals:\n%s", grep(string(raw), "keyhole_turn"))
	}
}

func grep(s, prefix string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func turnClient(t *testing.T, addr, user, pass string) *turn.Client {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelDisabled
	c, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: addr, TURNServerAddr: addr, Conn: conn, Username: user, Password: pass,
		RTO: 100 * time.Millisecond, LoggerFactory: lf,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); conn.Close() })
	return c
}

// TestDiscoverAndCache: a client finds the nodes of its network on a DHT
// testnet, not those of another network, and its cache keeps them
// across runs, newest first, bounded, and survives a damaged file.
func TestDiscoverAndCache(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tn, err := dht.StartTestnet(ctx, 20, dht.TestnetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer tn.Close()
	newDHT := func() *dht.Node {
		d, err := dht.New(dht.Config{Addr: "127.0.0.1:0", Bootstrap: tn.Bootstrap(), Testnet: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		return d
	}
	public := []string{serve(t, node.Options{DHT: newDHT(), AnnounceInterval: time.Second}), serve(t, node.Options{DHT: newDHT(), AnnounceInterval: time.Second})}
	private := serve(t, node.Options{DHT: newDHT(), AnnounceInterval: time.Second, Network: "lab"})
	var c client.Client
	d := newDHT()
	var found []client.Found
	for {
		found, err = c.Discover(ctx, d, "")
		if err != nil {
			t.Fatal(err)
		}
		if len(found) >= 2 || ctx.Err() != nil {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	urls := client.URLs(found)
	for _, u := range public {
		if !contains(urls, u) {
			t.Fatalf("discovered %v, missing %s", urls, u)
		}
	}
	if contains(urls, private) {
		t.Fatalf("a node of another network was discovered: %v", urls)
	}

	cache := client.Cache{Path: filepath.Join(t.TempDir(), "sub", "nodes.json"), Max: 2}
	if got, err := cache.Load(); err != nil || got != nil {
		t.Fatalf("missing cache: %v %v", got, err)
	}
	old := client.Found{Key: "k-old", URL: "http://127.0.0.1:9", Seen: time.Now().Add(-time.Hour).UTC()}
	if _, err := cache.Merge([]client.Found{old}); err != nil {
		t.Fatal(err)
	}
	all, err := cache.Merge(found)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || contains(client.URLs(all), old.URL) {
		t.Fatalf("cache of 2 kept %v; want the two newest", client.URLs(all))
	}
	again, err := cache.Load()
	if err != nil || len(again) != 2 || again[0].Key != all[0].Key {
		t.Fatalf("reloaded %v, %v", again, err)
	}
	if err := os.WriteFile(cache.Path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := cache.Load(); err == nil || !strings.Contains(err.Error(), "delete it") {
		t.Fatalf("damaged cache: %v", err)
	}
	if all, err := cache.Merge(found); err != nil || len(all) != 2 {
		t.Fatalf("merge over a damaged cache: %v %v", all, err)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// TestSameRequestTwice: two identical paid requests in the same second
// (one token) both go through: the client does not find the same
// solution twice.
func TestSameRequestTwice(t *testing.T) {
	u := serve(t, node.Options{TURN: fakeTURN{}})
	var c client.Client
	for i := range 5 {
		if _, err := c.Token(context.Background(), u); err != nil {
			t.Fatalf("token %d: %v", i, err)
		}
	}
}

type fakeTURN struct{}

func (fakeTURN) Credentials(label string, ttl time.Duration) (string, string, error) {
	return "1:" + label, "pw", nil
}
func (fakeTURN) URLs(host string) []string { return []string{"turn:" + host + ":3478"} }
