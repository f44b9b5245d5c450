package node

import (
	"bytes"
	"container/list"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/keyhole-p2p/keyhole/identity"
)

// meshMessage is a post travelling between nodes (node/PROTOCOL.md).
type meshMessage struct {
	ID   string `json:"id"`
	Body string `json:"body"`
	Hops int    `json:"hops"`
}

// meshSigned is what a forwarding node signs: the room is in the URL, so
// it is bound here too, and hops so a hop count cannot be raised.
func meshSigned(room string, m meshMessage) []byte {
	var b bytes.Buffer
	b.WriteString("keyhole-node-mesh-v1\n")
	b.WriteString(room)
	b.WriteByte('\n')
	b.WriteString(m.ID)
	b.WriteByte('\n')
	b.WriteString(strconv.Itoa(m.Hops))
	b.WriteByte('\n')
	b.WriteString(m.Body)
	return b.Bytes()
}

// peer is another node of the mesh.
type peer struct {
	key    identity.PublicKey
	url    string
	seen   time.Time
	static bool
}

// peerSet holds the nodes this node forwards to and accepts posts from,
// by key, at most max of them.
type peerSet struct {
	mu  sync.Mutex
	max int
	m   map[identity.PublicKey]*peer
}

func newPeerSet(max int) *peerSet { return &peerSet{max: max, m: map[identity.PublicKey]*peer{}} }

// add records that key answered at url at time now. A node moving to a
// new URL keeps its key; when the set is full, the least recently seen
// node that was not configured makes room.
func (p *peerSet) add(key identity.PublicKey, url string, now time.Time, static bool) (isNew bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if e, ok := p.m[key]; ok {
		e.url, e.seen, e.static = url, now, e.static || static
		return false
	}
	if len(p.m) >= p.max {
		var oldest *peer
		for _, e := range p.m {
			if !e.static && (oldest == nil || e.seen.Before(oldest.seen)) {
				oldest = e
			}
		}
		if oldest == nil {
			return false
		}
		delete(p.m, oldest.key)
	}
	p.m[key] = &peer{key: key, url: url, seen: now, static: static}
	return true
}

func (p *peerSet) get(key identity.PublicKey) (peer, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.m[key]
	if !ok {
		return peer{}, false
	}
	return *e, true
}

// expire forgets nodes not seen since before; configured ones stay.
func (p *peerSet) expire(before time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, e := range p.m {
		if !e.static && e.seen.Before(before) {
			delete(p.m, k)
		}
	}
}

func (p *peerSet) all() []peer {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]peer, 0, len(p.m))
	for _, e := range p.m {
		out = append(out, *e)
	}
	return out
}

// sample returns up to n URLs of nodes seen since since, in random order.
func (p *peerSet) sample(n int, since time.Time) []string {
	var urls []string
	for _, e := range p.all() {
		if !e.seen.Before(since) {
			urls = append(urls, e.url)
		}
	}
	rand.Shuffle(len(urls), func(i, j int) { urls[i], urls[j] = urls[j], urls[i] })
	if len(urls) > n {
		urls = urls[:n]
	}
	if urls == nil {
		urls = []string{}
	}
	return urls
}

func (p *peerSet) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.m)
}

// seenSet remembers post IDs for a while, so a post reaching a node by
// two paths is delivered once, and bounded, oldest first out.
type seenSet struct {
	mu    sync.Mutex
	max   int
	ttl   time.Duration
	m     map[string]*list.Element
	order *list.List // of seenEntry, oldest at the front
}

type seenEntry struct {
	id string
	at time.Time
}

func newSeenSet(max int, ttl time.Duration) *seenSet {
	return &seenSet{max: max, ttl: ttl, m: map[string]*list.Element{}, order: list.New()}
}

// add records id and reports whether it was new.
func (s *seenSet) add(id string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for f := s.order.Front(); f != nil && (s.order.Len() >= s.max || now.Sub(f.Value.(seenEntry).at) > s.ttl); f = s.order.Front() {
		delete(s.m, f.Value.(seenEntry).id)
		s.order.Remove(f)
	}
	if _, ok := s.m[id]; ok {
		return false
	}
	s.m[id] = s.order.PushBack(seenEntry{id, now})
	return true
}

// forwardJob is one post on its way to one node.
type forwardJob struct {
	to   peer
	room string
	msg  meshMessage
}

// forwarders send posts to other nodes: one queue per peer with a few
// senders each, so a slow or dead node delays only what goes to it. A
// queue is bounded (posts to a node that cannot keep up are dropped, not
// held) and its senders end after a minute with nothing to send.
type forwarders struct {
	mu     sync.Mutex
	ctx    context.Context // Run's; nil until Run starts
	queues map[identity.PublicKey]chan forwardJob
}

const (
	forwardQueue   = 1024
	forwardSenders = 4 // requests in flight per peer
)

// spread sends a post to every peer except the one it came from, with
// hops left.
func (s *Server) spread(room, id string, body []byte, hops int, from *identity.PublicKey) {
	if hops <= 0 {
		return
	}
	m := meshMessage{ID: id, Body: string(body), Hops: hops}
	for _, p := range s.peers.all() {
		if from != nil && p.key == *from {
			continue
		}
		if !s.enqueue(forwardJob{to: p, room: room, msg: m}) {
			s.m.mesh.WithLabelValues("dropped").Inc()
		}
	}
}

func (s *Server) enqueue(j forwardJob) bool {
	f := &s.fwd
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ctx == nil || f.ctx.Err() != nil {
		return false
	}
	q, ok := f.queues[j.to.key]
	if !ok {
		q = make(chan forwardJob, forwardQueue)
		f.queues[j.to.key] = q
		for range forwardSenders {
			go s.forwardLoop(f.ctx, j.to.key, q)
		}
	}
	select {
	case q <- j:
		return true
	default:
		return false
	}
}

func (s *Server) forwardLoop(ctx context.Context, key identity.PublicKey, q chan forwardJob) {
	idle := time.NewTimer(time.Minute)
	defer idle.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-idle.C:
			// The first idle sender retires the queue; the others find
			// it retired (or replaced) and end too.
			s.fwd.mu.Lock()
			if cur, ok := s.fwd.queues[key]; ok && cur == q && len(q) > 0 {
				s.fwd.mu.Unlock()
				idle.Reset(time.Minute)
				continue
			}
			if s.fwd.queues[key] == q {
				delete(s.fwd.queues, key)
			}
			s.fwd.mu.Unlock()
			return
		case j := <-q:
			if err := s.send(ctx, j); err != nil {
				s.m.mesh.WithLabelValues("failed").Inc()
				s.log.Debug("node: forwarding a post failed", "to", j.to.url, "err", err)
			} else {
				s.m.mesh.WithLabelValues("sent").Inc()
			}
			idle.Reset(time.Minute)
		}
	}
}

func (s *Server) send(ctx context.Context, j forwardJob) error {
	body, _ := json.Marshal(j.msg)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, j.to.url+"/mesh/room/"+j.room, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Keyhole-Node", s.key.String())
	req.Header.Set("X-Keyhole-Sig", base64.RawURLEncoding.EncodeToString(s.opts.Identity.Sign(meshSigned(j.room, j.msg))))
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		var e struct{ Error string }
		json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&e)
		return fmt.Errorf("%s: %s", resp.Status, e.Error)
	}
	return nil
}

// serveMesh takes a post forwarded by another node of the mesh.
func (s *Server) serveMesh(w http.ResponseWriter, r *http.Request) {
	room := r.PathValue("hash")
	if !validRoomHash(room) {
		s.fail(w, r, http.StatusBadRequest, "a room hash is 8 to 128 characters of A-Z a-z 0-9 _ -")
		return
	}
	from, err := identity.ParseKey(r.Header.Get("X-Keyhole-Node"))
	if err != nil {
		s.fail(w, r, http.StatusBadRequest, "X-Keyhole-Node must be the sending node's key")
		return
	}
	if _, ok := s.peers.get(from); !ok {
		s.m.mesh.WithLabelValues("unknown").Inc()
		s.fail(w, r, http.StatusForbidden, "this node takes mesh posts only from nodes it found; announce on the DHT and wait to be found")
		return
	}
	if !s.meshLim.Allow(from, s.opts.Now()) {
		s.m.mesh.WithLabelValues("rate").Inc()
		s.fail(w, r, http.StatusTooManyRequests, "too many mesh posts from your node; slow down")
		return
	}
	raw, ok := s.readBody(w, r, 8*MaxPost, "the mesh message")
	if !ok {
		return
	}
	var m meshMessage
	sig, serr := base64.RawURLEncoding.Strict().DecodeString(r.Header.Get("X-Keyhole-Sig"))
	if err := json.Unmarshal(raw, &m); err != nil || serr != nil {
		s.fail(w, r, http.StatusBadRequest, "the mesh message is not {id, body, hops} JSON with an X-Keyhole-Sig signature")
		return
	}
	if err := from.Verify(meshSigned(room, m), sig); err != nil {
		s.m.mesh.WithLabelValues("forged").Inc()
		s.fail(w, r, http.StatusForbidden, "the signature does not match the sending node's key")
		return
	}
	if len(m.ID) != 32 || m.Hops < 0 || m.Hops > 8 {
		s.fail(w, r, http.StatusBadRequest, "a mesh message needs a 32-hex-digit id and 0 to 8 hops")
		return
	}
	if _, err := hex.DecodeString(m.ID); err != nil {
		s.fail(w, r, http.StatusBadRequest, "a mesh message needs a 32-hex-digit id")
		return
	}
	if err := checkPost([]byte(m.Body)); err != nil {
		s.fail(w, r, http.StatusBadRequest, err.Error())
		return
	}
	if !s.seen.add(m.ID, s.opts.Now()) {
		s.m.mesh.WithLabelValues("duplicate").Inc()
		writeJSON(w, http.StatusOK, map[string]any{"duplicate": true})
		return
	}
	s.m.mesh.WithLabelValues("received").Inc()
	n := s.deliver(room, m.ID, []byte(m.Body), "mesh")
	s.spread(room, m.ID, []byte(m.Body), m.Hops-1, &from)
	writeJSON(w, http.StatusAccepted, map[string]any{"subscribers": n})
}
