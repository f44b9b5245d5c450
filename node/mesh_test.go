package node_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/keyhole-p2p/keyhole/dht"
	"github.com/keyhole-p2p/keyhole/identity"
	"github.com/keyhole-p2p/keyhole/node"
	nodeclient "github.com/keyhole-p2p/keyhole/node/client"
)

// meshOnTestnet starts a DHT testnet and n nodes on it, each with its
// own DHT node, announcing its HTTP port; it returns once every node
// lists every other in /nodes.
func meshOnTestnet(t *testing.T, n int) (*dht.Testnet, []*testNode) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tn, err := dht.StartTestnet(ctx, 20, dht.TestnetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tn.Close)
	var nodes []*testNode
	for range n {
		d, err := dht.New(dht.Config{Addr: "127.0.0.1:0", Bootstrap: tn.Bootstrap(), Testnet: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		tn := startNode(t, node.Options{DHT: d, AnnounceInterval: time.Second})
		nodes = append(nodes, tn)
	}
	waitMesh(t, nodes, 45*time.Second)
	return tn, nodes
}

// waitMesh waits until every node lists every other's URL in /nodes.
func waitMesh(t *testing.T, nodes []*testNode, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		complete := true
		for _, a := range nodes {
			var urls []string
			getJSON(t, http.DefaultClient, a.url+"/nodes", &urls)
			for _, b := range nodes {
				if a != b && !slices.Contains(urls, b.url) {
					complete = false
				}
			}
		}
		if complete {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nodes did not find each other on the DHT within %v", within)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestMeshAcrossNodes: nodes that know each other only through the DHT
// carry a room post from a client of one to the subscribers of the
// others, each exactly once.
func TestMeshAcrossNodes(t *testing.T) {
	_, nodes := meshOnTestnet(t, 3)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const room = "mesh-room-0001"
	var subs []*nodeclient.Subscription
	for _, n := range nodes {
		subs = append(subs, subscribe(t, ctx, n.url, room))
	}
	unrelated := subscribe(t, ctx, nodes[2].url, "mesh-room-other")
	var c nodeclient.Client
	for i, n := range nodes {
		body := []byte("from client of node " + string(rune('A'+i)))
		id, err := c.Post(ctx, n.url, room, body)
		if err != nil {
			t.Fatal(err)
		}
		for j, sub := range subs {
			m := next(t, sub, 10*time.Second)
			if m.ID != id || !bytes.Equal(m.Body, body) {
				t.Fatalf("node %d's subscriber got %q (%s), want %q (%s)", j, m.Body, m.ID, body, id)
			}
		}
	}
	for _, sub := range subs {
		quiet(t, sub, 300*time.Millisecond) // no duplicates
	}
	quiet(t, unrelated, 10*time.Millisecond)
}

// TestMeshRefusesStrangers: the node-to-node endpoint is no way around
// proof of work. A node the receiver never found, a forged signature, a
// replayed message and a raised hop count are all refused or dropped.
func TestMeshRefusesStrangers(t *testing.T) {
	_, nodes := meshOnTestnet(t, 2)
	a, b := nodes[0], nodes[1]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const room = "mesh-room-strangers"
	sub := subscribe(t, ctx, b.url, room)

	stranger, _ := identity.Generate()
	send := func(from *identity.PrivateKey, claimed identity.PublicKey, msg map[string]any, signed map[string]any) int {
		raw, _ := json.Marshal(msg)
		sig := from.Sign(node.MeshSigned(room, signed["id"].(string), signed["hops"].(int), signed["body"].(string)))
		req, _ := http.NewRequest(http.MethodPost, b.url+"/mesh/room/"+room, bytes.NewReader(raw))
		req.Header.Set("X-Keyhole-Node", claimed.String())
		req.Header.Set("X-Keyhole-Sig", base64.RawURLEncoding.EncodeToString(sig))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	msg := func(id string, hops int, body string) map[string]any {
		return map[string]any{"id": id, "hops": hops, "body": body}
	}
	id1 := "0123456789abcdef0123456789abcdef"
	// A genuine message from a, signed with a's key, is accepted once.
	if st := send(a.Identity(), a.Key(), msg(id1, 1, "genuine"), msg(id1, 1, "genuine")); st != http.StatusAccepted {
		t.Fatalf("genuine mesh post: %d", st)
	}
	if m := next(t, sub, 5*time.Second); string(m.Body) != "genuine" {
		t.Fatalf("got %q", m.Body)
	}
	id2 := "fedcba9876543210fedcba9876543210"
	tests := []struct {
		name   string
		from   *identity.PrivateKey
		claim  identity.PublicKey
		sent   map[string]any
		signed map[string]any
		status int
	}{
		{"unknown node", stranger, stranger.Public(), msg(id2, 1, "x"), msg(id2, 1, "x"), http.StatusForbidden},
		{"stranger claiming a's key", stranger, a.Key(), msg(id2, 1, "x"), msg(id2, 1, "x"), http.StatusForbidden},
		{"body changed after signing", a.Identity(), a.Key(), msg(id2, 1, "changed"), msg(id2, 1, "x"), http.StatusForbidden},
		{"hops raised after signing", a.Identity(), a.Key(), msg(id2, 5, "x"), msg(id2, 1, "x"), http.StatusForbidden},
		{"replay", a.Identity(), a.Key(), msg(id1, 1, "genuine"), msg(id1, 1, "genuine"), http.StatusOK},
		{"bad id", a.Identity(), a.Key(), msg("zz", 1, "x"), msg("zz", 1, "x"), http.StatusBadRequest},
		{"CR in body", a.Identity(), a.Key(), msg(id2, 1, "a\rb"), msg(id2, 1, "a\rb"), http.StatusBadRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if st := send(tc.from, tc.claim, tc.sent, tc.signed); st != tc.status {
				t.Fatalf("status %d, want %d", st, tc.status)
			}
		})
	}
	quiet(t, sub, 300*time.Millisecond)
}
