package node_test

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keyhole-p2p/keyhole/identity"
	"github.com/keyhole-p2p/keyhole/node"
	"github.com/keyhole-p2p/keyhole/node/nodetest"
	"github.com/keyhole-p2p/keyhole/node/pow"
)

// signedItem is a /dht-put body for v under k, signed over BEP 44's
// buffer built here independently of package dht.
func signedItem(k *identity.PrivateKey, salt string, seq int64, v string) map[string]any {
	buf := ""
	if salt != "" {
		buf = fmt.Sprintf("4:salt%d:%s", len(salt), salt)
	}
	buf += fmt.Sprintf("3:seqi%de1:v%s", seq, v)
	pub := k.Public()
	return map[string]any{
		"k": hex.EncodeToString(pub[:]), "salt": hex.EncodeToString([]byte(salt)), "seq": seq,
		"v": base64.StdEncoding.EncodeToString([]byte(v)), "sig": hex.EncodeToString(k.Sign([]byte(buf))),
	}
}

// TestDHTGetPut stores items through one node's /dht-put and reads them
// back through another node's /dht-get: the DHT in between is a real
// testnet.
func TestDHTGetPut(t *testing.T) {
	_, nodes := meshOnTestnet(t, 2)
	writer, reader := nodes[0], nodes[1]
	k, _ := identity.Generate()
	pub := k.Public()
	put := func(item map[string]any) (int, map[string]any) {
		body, _ := json.Marshal(item)
		return post(t, http.DefaultClient, writer.url+"/dht-put", solved(t, http.DefaultClient, writer.url, "dht-put", body), body)
	}
	if st, m := put(signedItem(k, "profile", 1, "5:hello")); st != http.StatusOK || m["stored"].(float64) < 1 {
		t.Fatalf("put: %d %v", st, m)
	}
	var got map[string]any
	q := fmt.Sprintf("%s/dht-get?k=%s&salt=%s", reader.url, hex.EncodeToString(pub[:]), hex.EncodeToString([]byte("profile")))
	if st := getJSON(t, http.DefaultClient, q, &got); st != http.StatusOK {
		t.Fatalf("get: %d %v", st, got)
	}
	if v, _ := base64.StdEncoding.DecodeString(got["v"].(string)); string(v) != "5:hello" || got["seq"].(float64) != 1 {
		t.Fatalf("got %v", got)
	}
	// Another salt is another item: not found.
	if st := getJSON(t, http.DefaultClient, fmt.Sprintf("%s/dht-get?k=%s&salt=6f74686572", reader.url, hex.EncodeToString(pub[:])), nil); st != http.StatusNotFound {
		t.Fatalf("unknown salt: %d", st)
	}
	// Asking only for something newer than what exists: not found.
	if st := getJSON(t, http.DefaultClient, q+"&seq=1", nil); st != http.StatusNotFound {
		t.Fatalf("seq=1 when the item has seq 1: %d", st)
	}

	forged := signedItem(k, "profile", 2, "6:forged")
	forged["v"] = base64.StdEncoding.EncodeToString([]byte("6:FORGED"))
	other, _ := identity.Generate()
	wrongKey := signedItem(other, "profile", 2, "3:abc")
	wrongKey["k"] = hex.EncodeToString(pub[:])
	notBencode := signedItem(k, "profile", 2, "hello")
	tooBig := signedItem(k, "profile", 2, fmt.Sprintf("1001:%s", strings.Repeat("x", 1001)))
	tests := []struct {
		name string
		item map[string]any
	}{
		{"value changed after signing", forged},
		{"signed by another key", wrongKey},
		{"value is not bencode", notBencode},
		{"value over 1000 bytes", tooBig},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, m := put(tc.item)
			if st != http.StatusBadRequest && st != http.StatusRequestEntityTooLarge {
				t.Fatalf("status %d %v, want a refusal", st, m)
			}
		})
	}
	// Nothing forged reached the DHT: the reader still sees seq 1.
	getJSON(t, http.DefaultClient, q, &got)
	if got["seq"].(float64) != 1 {
		t.Fatalf("after refused puts the DHT holds %v", got)
	}
	// And a put costs work like everything else that costs the node.
	body, _ := json.Marshal(signedItem(k, "profile", 3, "3:new"))
	if st, _ := post(t, http.DefaultClient, writer.url+"/dht-put", "", body); st != http.StatusPreconditionRequired {
		t.Fatalf("put without work: %d", st)
	}
}

// TestNegotiationAndCORS: JSON for programs, HTML for people, and every
// answer usable from a page on another origin.
func TestNegotiationAndCORS(t *testing.T) {
	n := startNode(t, node.Options{})
	for _, path := range []string{"/", "/nodes", "/ip"} {
		for _, tc := range []struct {
			accept, query, want string
		}{
			{"application/json", "", "application/json"},
			{"", "?format=json", "application/json"},
			{"text/html", "", "text/html; charset=utf-8"},
		} {
			req, _ := http.NewRequest(http.MethodGet, n.url+path+tc.query, nil)
			if tc.accept != "" {
				req.Header.Set("Accept", tc.accept)
			}
			req.Header.Set("Origin", "https://app.example")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if ct := resp.Header.Get("Content-Type"); ct != tc.want {
				t.Errorf("%s accept %q: Content-Type %q, want %q", path, tc.accept, ct, tc.want)
			}
			if tc.want == "application/json" && !json.Valid(raw) {
				t.Errorf("%s: invalid JSON %q", path, raw)
			}
			if resp.Header.Get("Access-Control-Allow-Origin") != "*" {
				t.Errorf("%s: no CORS header", path)
			}
		}
	}
	var ip struct {
		IP   string
		Port int
	}
	getJSON(t, clientFrom("127.0.0.7"), n.url+"/ip", &ip)
	if ip.IP != "127.0.0.7" || ip.Port == 0 {
		t.Fatalf("/ip = %+v, want 127.0.0.7 and a port", ip)
	}
	// A preflight for a paid post is allowed from any origin.
	req, _ := http.NewRequest(http.MethodOptions, n.url+"/room/some-room-hash", nil)
	req.Header.Set("Origin", "https://app.example")
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Headers", "x-keyhole-pow")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || !strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "X-Keyhole-Pow") {
		t.Fatalf("preflight: %d %v", resp.StatusCode, resp.Header)
	}
	// Metrics are Prometheus text with the node's series.
	resp, err = http.Get(n.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, series := range []string{"keyhole_node_difficulty_bits", "keyhole_node_room_subscribers", "go_goroutines"} {
		if !strings.Contains(string(raw), series) {
			t.Errorf("/metrics lacks %s", series)
		}
	}
}

// TestStreamLimits: streams per address are bounded, a stream that stops
// reading is dropped rather than holding up the room, and Close ends
// every stream so a shutdown finishes.
func TestStreamLimits(t *testing.T) {
	n := startNode(t, node.Options{MaxSubscribersPerClient: 2, SubscriberQueue: 2})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	subscribe(t, ctx, n.url, "limits-room-1")
	subscribe(t, ctx, n.url, "limits-room-1")
	resp, err := http.Get(n.url + "/room/limits-room-1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("third stream from one address: %d", resp.StatusCode)
	}
	// Another address still gets in.
	other, err := clientFrom("127.0.0.9").Get(n.url + "/room/limits-room-1")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Body.Close()
	if other.StatusCode != http.StatusOK {
		t.Fatalf("stream from another address: %d", other.StatusCode)
	}
	done := make(chan struct{})
	go func() { n.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the open streams")
	}
	// The stream ended: reading reaches EOF.
	if _, err := io.ReadAll(other.Body); err != nil {
		t.Fatalf("stream after Close: %v", err)
	}
}

// TestSlowSubscriberDropped: a subscriber that never reads is cut off
// once its queue is full, and the others keep getting posts. Both ends
// of the slow stream get small socket buffers, so the kernel cannot
// absorb the stream and the node really sees a reader that stopped.
func TestSlowSubscriberDropped(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, base := nodetest.Serve(t, smallSendBuffers{ln}, node.Options{SubscriberQueue: 4, Pricing: &node.Pricing{Base: 1, MaxBits: 2}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const room = "slow-room-1234"
	fast := subscribe(t, ctx, base, room)
	// The slow one: a raw connection that asks for the stream and never
	// reads, with a tiny receive buffer.
	slow, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	slow.(*net.TCPConn).SetReadBuffer(4096)
	fmt.Fprintf(slow, "GET /room/%s HTTP/1.1\r\nHost: x\r\n\r\n", room)
	time.Sleep(100 * time.Millisecond) // subscribed before the first post
	for i := range 2000 {
		body := fmt.Sprintf("%04d%s", i, strings.Repeat("y", 996))
		in := info(t, http.DefaultClient, base)
		nonce, _ := pow.Solve(ctx, in.Token, pow.Binding("room/"+room, []byte(body)), in.Difficulty)
		if st, m := post(t, http.DefaultClient, base+"/room/"+room, pow.Header(in.Token, nonce), []byte(body)); st != http.StatusAccepted {
			t.Fatalf("post %d: %d %v", i, st, m)
		}
		next(t, fast, 5*time.Second)
		if i%50 == 49 && metric(t, base, "keyhole_node_room_subscribers_dropped_total") >= 1 {
			t.Logf("dropped after %d posts", i+1)
			return
		}
	}
	t.Fatal("a subscriber that never reads was not dropped after 2000 posts of 1 KB")
}

// smallSendBuffers gives every accepted connection a small send buffer.
type smallSendBuffers struct{ net.Listener }

func (l smallSendBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetWriteBuffer(4096)
	}
	return c, err
}

// metric reads one counter from /metrics.
func metric(t testing.TB, base, name string) float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var f float64
			fmt.Sscan(v, &f)
			return f
		}
	}
	return 0
}
