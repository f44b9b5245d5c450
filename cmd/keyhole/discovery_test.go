package main

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/keyhole-p2p/keyhole/dht"
	"github.com/keyhole-p2p/keyhole/identity"
	"github.com/keyhole-p2p/keyhole/pkarr/relay"
	"github.com/keyhole-p2p/keyhole/record"
	"github.com/keyhole-p2p/keyhole/resolve"
)

// network starts a loopback DHT testnet and a relay for CLI tests.
func network(t *testing.T) (bootstrap, relayURL string) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tn, err := dht.StartTestnet(ctx, 25, dht.TestnetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tn.Close)
	rs := relay.New(relay.Config{DHT: tn.Nodes[0]})
	t.Cleanup(rs.Close)
	ts := httptest.NewServer(rs)
	t.Cleanup(ts.Close)
	return strings.Join(tn.Bootstrap(), ","), ts.URL
}

func TestPublishResolveCLI(t *testing.T) {
	boot, relayURL := network(t)
	host, client := newHarness(t), newHarness(t)
	for _, h := range []*harness{host, client} {
		h.env[bootstrapEnv] = boot
		h.env[relaysEnv] = relayURL
	}
	var id idView
	json.Unmarshal([]byte(host.ok("", "id", "new", "--no-passphrase", "--json").stdout), &id)
	cert := record.EncodeCertHash([32]byte{7})
	r := host.ok("", "publish", "--json", "--kps", "127.0.0.1:4242:"+cert, "--board", "ws://127.0.0.1:8443/")
	var rep resolve.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.DHT == nil || rep.DHT.Stored == 0 || len(rep.Relays) != 1 || rep.Relays[0].Err != "" {
		t.Fatalf("publish landed nowhere useful: %s", r.stdout)
	}
	human := host.ok("", "publish", "--kps", "127.0.0.1:4242:"+cert, "--board", "ws://127.0.0.1:8443/")
	if !strings.Contains(human.stdout, "stored on") || !strings.Contains(human.stdout, relayURL+" accepted") {
		t.Errorf("publish output: %s", human.stdout)
	}

	for _, args := range [][]string{{"resolve", "--json", id.Address}, {"resolve", "--json", "--no-dht", "keyhole://" + id.Address}, {"resolve", "--json", "--relay", "none", "oh://" + id.Address + "/"}} {
		r := client.ok("", args...)
		var v resolveView
		if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
			t.Fatal(err)
		}
		if v.Content == nil || len(v.Content.Direct) != 1 || v.Content.Direct[0] != "127.0.0.1:4242:"+cert || v.Content.Boards[0] != "ws://127.0.0.1:8443/" {
			t.Fatalf("%v: %s", args, r.stdout)
		}
	}
	other, _ := identity.Generate()
	client.fails(1, "no valid record found", "", "resolve", "--timeout", "2s", other.Public().String())
	client.fails(2, "52 characters", "", "resolve", "nope")
	client.fails(2, "nowhere to publish", "", "publish", "--no-dht", "--relay", "none")
	client.fails(2, "host:port", "", "resolve", "--bootstrap", "nonsense", id.Address)
	client.fails(2, "http://", "", "resolve", "--relay", "ftp://x", id.Address)
}

func TestDaemonRepublishes(t *testing.T) {
	boot, relayURL := network(t)
	h := newHarness(t)
	h.env[bootstrapEnv] = boot
	h.env[relaysEnv] = relayURL
	h.ok("", "id", "new", "--no-passphrase")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	r := h.runCtx(ctx, "", "daemon", "--interval", "200ms", "--kps", "127.0.0.1:1:"+record.EncodeCertHash([32]byte{1}))
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if n := strings.Count(r.stderr, "msg=published"); n < 3 {
		t.Fatalf("%d publications in 2 s at a 200 ms interval:\n%s", n, r.stderr)
	}
	if !strings.Contains(r.stderr, "daemon stopped") {
		t.Error("no clean stop")
	}
}
