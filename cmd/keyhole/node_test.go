package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestNodeCommand: two 'keyhole node' processes on a loopback DHT
// testnet find each other, a config file sets what the command line does
// not, 'node list' finds both cheapest first, and the node keeps its key
// across restarts.
func TestNodeCommand(t *testing.T) {
	boot, _ := network(t)
	common := []string{"--addr", "127.0.0.1:0", "--turn-addr", "127.0.0.1:0", "--dht-addr", "127.0.0.1:0",
		"--bootstrap", boot, "--log-level", "error"}

	a, b := newHarness(t), newHarness(t)
	cfg := filepath.Join(a.home, "node.json")
	// The file asks 20 bits; the command line says 3 and wins. The file's
	// announce interval applies.
	if err := os.WriteFile(cfg, []byte(`{"pow-base": 20, "pow-max": 24, "announce-interval": "1s", "peer": []}`), 0o600); err != nil {
		t.Fatal(err)
	}
	urlA := a.background(append([]string{"node", "--config", cfg, "--pow-base", "3"}, common...)...)
	urlB := b.background(append([]string{"node", "--announce-interval", "1s", "--pow-base", "6"}, common...)...)
	for _, u := range []string{urlA, urlB} {
		if !strings.HasPrefix(u, "http://127.0.0.1:") {
			t.Fatalf("node printed %q, want its URL", u)
		}
	}
	var info struct {
		Node       string
		Difficulty int
		Board      string
		TURN       []string
	}
	getJSONURL(t, urlA+"/", &info)
	if info.Difficulty != 3 || len(info.TURN) != 2 || !strings.HasSuffix(info.Board, "/board") {
		t.Fatalf("node A: %+v", info)
	}
	waitListed := func(from, want string) {
		deadline := time.Now().Add(30 * time.Second)
		for {
			var urls []string
			getJSONURL(t, from+"/nodes", &urls)
			if slices.Contains(urls, want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s/nodes = %v, never listed %s", from, urls, want)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	waitListed(urlA, urlB)
	waitListed(urlB, urlA)

	c := newHarness(t)
	r := c.ok("", "node", "list", "--bootstrap", boot, "--dht-addr", "127.0.0.1:0", "--log-level", "error")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[1], urlA+" ") || !strings.HasPrefix(lines[2], urlB+" ") {
		t.Fatalf("node list, cheapest first:\n%s", r.stdout)
	}
	if _, err := os.Stat(filepath.Join(c.home, "nodes.json")); err != nil {
		t.Fatalf("node list kept no cache: %v", err)
	}

	// The key is kept: a second run on the same home is the same node.
	keyFile := filepath.Join(a.home, "node.key")
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("node key file: %v %v", fi, err)
	}
	again := a.background(append([]string{"node", "--pow-base", "3"}, common...)...)
	var info2 struct{ Node string }
	getJSONURL(t, again+"/", &info2)
	if info2.Node != info.Node {
		t.Fatalf("restarted node is %s, was %s", info2.Node, info.Node)
	}

	bad := filepath.Join(a.home, "bad.json")
	os.WriteFile(bad, []byte(`{"pow-bass": 3}`), 0o600)
	a.fails(2, `unknown setting "pow-bass"`, "", "node", "--config", bad)
	os.WriteFile(bad, []byte(`{"pow-base": "lots"}`), 0o600)
	a.fails(2, `"pow-base"`, "", "node", "--config", bad)
	os.WriteFile(bad, []byte(`[1]`), 0o600)
	a.fails(2, "not a JSON object", "", "node", "--config", bad)
	os.WriteFile(keyFile, []byte("damaged"), 0o600)
	a.fails(1, "node key", "", append([]string{"node"}, common...)...)
}

func getJSONURL(t *testing.T, url string, v any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("%s: %v", url, err)
	}
}
