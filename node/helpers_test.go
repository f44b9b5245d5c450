package node_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keyhole-p2p/keyhole/node"
	nodeclient "github.com/keyhole-p2p/keyhole/node/client"
	"github.com/keyhole-p2p/keyhole/node/nodetest"
	"github.com/keyhole-p2p/keyhole/node/pow"
)

// testNode is a node served on 127.0.0.1 with its background work running.
type testNode struct {
	*node.Server
	url string
}

// startNode serves a node on loopback (nodetest.Start).
func startNode(t testing.TB, opts node.Options) *testNode {
	t.Helper()
	s, url := nodetest.Start(t, opts)
	return &testNode{Server: s, url: url}
}

// clientFrom is an HTTP client whose connections come from the loopback
// address src, so tests can be several clients on one machine.
func clientFrom(src string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
}

// getJSON fetches url as JSON into v and returns the status.
func getJSON(t testing.TB, c *http.Client, url string, v any) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Accept", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if v != nil {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
	}
	return resp.StatusCode
}

func info(t testing.TB, c *http.Client, base string) node.Info {
	t.Helper()
	var in node.Info
	if st := getJSON(t, c, base+"/", &in); st != http.StatusOK {
		t.Fatalf("GET /: %d", st)
	}
	return in
}

// post sends body to endpoint path with header hdr (none if empty) and
// returns the status and decoded JSON.
func post(t testing.TB, c *http.Client, url, hdr string, body []byte) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(string(body)))
	if hdr != "" {
		req.Header.Set("X-Keyhole-Pow", hdr)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	json.Unmarshal(raw, &m)
	return resp.StatusCode, m
}

// solved is a valid X-Keyhole-Pow header for endpoint and body at the
// node's current price for c.
func solved(t testing.TB, c *http.Client, base, endpoint string, body []byte) string {
	t.Helper()
	in := info(t, c, base)
	n, err := pow.Solve(context.Background(), in.Token, pow.Binding(endpoint, body), in.Difficulty)
	if err != nil {
		t.Fatal(err)
	}
	return pow.Header(in.Token, n)
}

// subscribe opens a room stream on base and fails the test if it cannot.
func subscribe(t testing.TB, ctx context.Context, base, room string) *nodeclient.Subscription {
	t.Helper()
	var c nodeclient.Client
	sub, err := c.Subscribe(ctx, base, room)
	if err != nil {
		t.Fatalf("subscribe %s: %v", room, err)
	}
	t.Cleanup(func() { sub.Close() })
	return sub
}

// next waits for the next message on sub.
func next(t testing.TB, sub *nodeclient.Subscription, within time.Duration) nodeclient.Message {
	t.Helper()
	select {
	case m, ok := <-sub.C:
		if !ok {
			t.Fatalf("stream ended: %v", sub.Err())
		}
		return m
	case <-time.After(within):
		t.Fatalf("no message within %v", within)
	}
	panic("unreachable")
}

// quiet asserts sub gets nothing for d.
func quiet(t testing.TB, sub *nodeclient.Subscription, d time.Duration) {
	t.Helper()
	select {
	case m, ok := <-sub.C:
		if ok {
			t.Fatalf("unexpected message %q", m.Body)
		}
	case <-time.After(d):
	}
}
