// Command node measures keyhole's community node (package node) on
// 127.0.0.1, in one run:
//
//  1. Room fan-out. S subscribers hold Server-Sent Event streams on one
//     room; P posters send N posts of B bytes between them, each a real
//     HTTP POST with a real proof of work at difficulty 0 (the check runs
//     in full; only the solving is free, so the figure is the node's
//     cost, not the posters' CPU). The time runs from the first post to
//     the last event read by the last subscriber; events/s = N x S /
//     time. The peer is a bare Server-Sent Events broadcaster written
//     here with net/http: the same POST-then-fan-out shape, the same
//     per-subscriber queue, no validation, no work check, no metrics.
//     Clients are the same code for both. A third case puts the
//     subscribers on a second node that gets the posts through the mesh
//     (one node-to-node hop, signed and verified).
//  2. Proof of work: for each difficulty, the median time to solve
//     (pow.Solve over fresh tokens and bindings) against the median time
//     for the node to check a solution (pow.Issuer.Check: token MAC, age,
//     digest, spent-solution cache). Their ratio is what a flood costs
//     the flooder per unit of the node's work.
//
// Every loop is bounded in count and the run in time (-timeout).
//
//	go run ./bench/node
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyhole-p2p/keyhole/bench/internal/measure"
	"github.com/keyhole-p2p/keyhole/identity"
	"github.com/keyhole-p2p/keyhole/node"
	"github.com/keyhole-p2p/keyhole/node/pow"
)

var (
	subs     = flag.Int("subs", 200, "subscribers on the room")
	posts    = flag.Int("posts", 500, "posts in the fan-out run")
	posters  = flag.Int("posters", 8, "concurrent posters")
	bodySize = flag.Int("body", 256, "bytes per post")
	maxBits  = flag.Int("maxbits", 22, "highest difficulty measured")
	timeout  = flag.Duration("timeout", 5*time.Minute, "bound on the whole run")
)

func main() {
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	fmt.Printf("# node benchmark: %d subscribers, %d posts of %d B from %d posters; GOMAXPROCS %d; %s\n\n",
		*subs, *posts, *bodySize, *posters, runtime.GOMAXPROCS(0), time.Now().UTC().Format(time.RFC3339))

	fmt.Println("## Room fan-out (events delivered per second)")
	fmt.Println()
	fmt.Println("| case | time | events/s | posts/s | speed vs bare |")
	fmt.Println("|---|---|---|---|---|")
	bare := fanout(ctx, bareServer(), "", "bare")
	one := fanout(ctx, nodeServers(ctx, 1)[0], "", "node")
	pair := nodeServers(ctx, 2)
	pair[0].join(ctx, pair[1].URL)
	pair[1].join(ctx, pair[0].URL)
	mesh := fanout(ctx, pair[0], pair[1].URL, "mesh")
	row := func(name string, d time.Duration) {
		ev := float64(*posts**subs) / d.Seconds()
		fmt.Printf("| %s | %s | %.0f | %.0f | %.2f |\n", name, measure.Duration(d), ev, float64(*posts)/d.Seconds(), bare.Seconds()/d.Seconds())
	}
	row("bare SSE broadcaster (peer)", bare)
	row("keyhole node, one node", one)
	row("keyhole node, posts on A, subscribers on B (mesh hop)", mesh)
	fmt.Println()

	fmt.Println("## Proof of work: solving against checking")
	fmt.Println()
	fmt.Println("| bits | solve p50 | check p50 | solve / check | samples |")
	fmt.Println("|---|---|---|---|---|")
	secret := make([]byte, 32)
	rand.Read(secret)
	iss, _ := pow.NewIssuer(secret, pow.Options{MaxSpent: 1 << 22})
	for bits := 0; bits <= *maxBits; bits += 2 {
		var solve, check []time.Duration
		budget := time.Now().Add(8 * time.Second)
		for i := 0; i < 200 && (i < 5 || time.Now().Before(budget)) && ctx.Err() == nil; i++ {
			tok := iss.Token()
			var b [16]byte
			rand.Read(b[:])
			binding := pow.Binding("room/bench", b[:])
			t0 := time.Now()
			nonce, err := pow.Solve(ctx, tok, binding, bits)
			if err != nil {
				log.Fatal(err)
			}
			solve = append(solve, time.Since(t0))
			t1 := time.Now()
			if err := iss.Check(tok, nonce, binding, bits); err != nil {
				log.Fatal(err)
			}
			check = append(check, time.Since(t1))
		}
		s, c := measure.Percentile(solve, 0.5), measure.Percentile(check, 0.5)
		fmt.Printf("| %d | %s | %.2f µs | %.0f | %d |\n", bits, measure.Duration(s), float64(c)/1e3, float64(s)/float64(c), len(solve))
	}
}

// server is what the fan-out run talks to.
type server struct {
	URL  string
	node *node.Server
}

// join waits until s lists other among its peers: the nodes find each
// other through configured peers here (the DHT path is in the tests).
func (s *server) join(ctx context.Context, other string) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		req, _ := http.NewRequest(http.MethodGet, s.URL+"/nodes?format=json", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(raw), other) {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	log.Fatalf("%s never listed %s", s.URL, other)
}

type flatLoad struct{}

func (flatLoad) Load() (float64, float64) { return 0, 0 }

// nodeServers starts n nodes that know each other as configured peers.
func nodeServers(ctx context.Context, n int) []*server {
	var ts []*httptest.Server
	var urls []string
	for range n {
		t := httptest.NewUnstartedServer(nil)
		ts = append(ts, t)
		urls = append(urls, "http://"+t.Listener.Addr().String())
	}
	var out []*server
	for i, t := range ts {
		peers := slices.Delete(slices.Clone(urls), i, i+1)
		s := newNode(ctx, peers)
		t.Config.Handler = s
		t.Start()
		out = append(out, &server{URL: t.URL, node: s})
	}
	return out
}

func newNode(ctx context.Context, peers []string) *node.Server {
	k, _ := identity.Generate()
	s, err := node.New(node.Options{
		Identity: k, Peers: peers, AnnounceInterval: time.Second, Load: flatLoad{},
		Pricing:        &node.Pricing{Base: 0, MaxBits: 0},
		RatePerClient:  1e6,
		MaxSubscribers: 1 << 20, MaxSubscribersPerClient: 1 << 20, SubscriberQueue: 1024,
	})
	if err != nil {
		log.Fatal(err)
	}
	go s.Run(ctx)
	return s
}

// bareServer is the peer: POST /room/x broadcasts the body to every GET
// /room/x stream, as Server-Sent Events, with a queue per subscriber.
func bareServer() *server {
	var mu sync.Mutex
	streams := map[chan []byte]struct{}{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /room/{hash}", func(w http.ResponseWriter, r *http.Request) {
		ch := make(chan []byte, 1024)
		mu.Lock()
		streams[ch] = struct{}{}
		mu.Unlock()
		defer func() { mu.Lock(); delete(streams, ch); mu.Unlock() }()
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		w.Write([]byte(": hi\n\n"))
		w.(http.Flusher).Flush()
		for {
			select {
			case ev := <-ch:
				w.Write(ev)
				w.(http.Flusher).Flush()
			case <-r.Context().Done():
				return
			}
		}
	})
	mux.HandleFunc("POST /room/{hash}", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		ev := []byte("data: " + string(body) + "\n\n")
		mu.Lock()
		for ch := range streams {
			select {
			case ch <- ev:
			default:
			}
		}
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	})
	return &server{URL: httptest.NewServer(mux).URL}
}

// fanout subscribes S streams (on subURL, or s), then posts N times to s
// and returns the time until every stream has read every post.
func fanout(ctx context.Context, s *server, subURL, label string) time.Duration {
	if subURL == "" {
		subURL = s.URL
	}
	room := "bench-room-" + label
	transport := &http.Transport{MaxConnsPerHost: 0, MaxIdleConnsPerHost: *posters * 2,
		DialContext: (&net.Dialer{}).DialContext}
	client := &http.Client{Transport: transport}
	var ready, done sync.WaitGroup
	var got atomic.Int64
	for range *subs {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			resp, err := client.Get(subURL + "/room/" + room)
			if err != nil {
				log.Fatal(err)
			}
			defer resp.Body.Close()
			br := bufio.NewReaderSize(resp.Body, 64<<10)
			// The stream's opening comment: subscribed.
			for {
				line, err := br.ReadSlice('\n')
				if err != nil {
					log.Fatal(err)
				}
				if len(line) == 1 {
					break
				}
			}
			ready.Done()
			n := 0
			for n < *posts {
				line, err := br.ReadSlice('\n')
				if err != nil {
					log.Fatalf("%s: stream ended after %d events: %v", label, n, err)
				}
				if bytes.HasPrefix(line, []byte("data: ")) {
					n++
					got.Add(1)
				}
			}
		}()
	}
	ready.Wait()
	body := make([]byte, *bodySize)
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}
	var tok tokenCache
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range *posters {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(*posts) || ctx.Err() != nil {
					return
				}
				b := slices.Clone(body)
				copy(b, fmt.Sprintf("%08d", i)) // distinct bodies: distinct solutions
				req, _ := http.NewRequest(http.MethodPost, s.URL+"/room/"+room, bytes.NewReader(b))
				if s.node != nil {
					t := tok.get(client, s.URL)
					nonce, _ := pow.Solve(ctx, t, pow.Binding("room/"+room, b), 0)
					req.Header.Set("X-Keyhole-Pow", pow.Header(t, nonce))
				}
				resp, err := client.Do(req)
				if err != nil {
					log.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusAccepted {
					log.Fatalf("%s: post %d: %s", label, i, resp.Status)
				}
			}
		})
	}
	wg.Wait()
	finished := make(chan struct{})
	go func() { done.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-ctx.Done():
		fmt.Fprintf(os.Stderr, "%s: timed out with %d of %d events\n", label, got.Load(), *posts**subs)
		os.Exit(1)
	case <-time.After(time.Minute):
		// A node drops what it cannot forward or deliver in time rather
		// than queue without bound; say so instead of waiting forever.
		fmt.Fprintf(os.Stderr, "%s: %d of %d events after a minute: posts were dropped (queues full)\n", label, got.Load(), *posts**subs)
		os.Exit(1)
	}
	return time.Since(start)
}

// tokenCache holds a node's work token, fetched again after a minute
// (tokens last two).
type tokenCache struct {
	mu    sync.Mutex
	token string
	at    time.Time
}

func (c *tokenCache) get(hc *http.Client, base string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.token != "" && time.Since(c.at) < time.Minute {
		return c.token
	}
	req, _ := http.NewRequest(http.MethodGet, base+"/", nil)
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	var v struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		log.Fatal(err)
	}
	c.token, c.at = v.Token, time.Now()
	return c.token
}
