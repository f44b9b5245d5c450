package node

import (
	"bytes"
	"errors"
	"net/netip"
	"sync"
	"unicode/utf8"
)

// Room limits from node/PROTOCOL.md.
const (
	MaxPost     = 1024
	minRoomHash = 8
	maxRoomHash = 128
)

// validRoomHash reports whether h can name a room: 8 to 128 characters
// of base64url's alphabet, which covers hex and base64url digests and
// needs no escaping in a URL.
func validRoomHash(h string) bool {
	if len(h) < minRoomHash || len(h) > maxRoomHash {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// checkPost says what is wrong with a post body, if anything. Posts must
// survive Server-Sent Events unchanged: an EventSource splits data on
// CR and LF and joins lines with LF, so a CR would not come back as sent.
func checkPost(b []byte) error {
	switch {
	case len(b) == 0:
		return errors.New("the post is empty; send 1 to 1024 bytes of text")
	case len(b) > MaxPost:
		return errors.New("the post is larger than 1024 bytes; split it or shorten it")
	case !utf8.Valid(b):
		return errors.New("the post is not UTF-8 text; encode binary data (base64) first")
	case bytes.IndexByte(b, '\r') >= 0 || bytes.IndexByte(b, 0) >= 0:
		return errors.New("the post contains CR or NUL, which Server-Sent Events cannot carry; use LF line ends")
	}
	return nil
}

// sseEvent encodes one post as a Server-Sent Event, once for all
// subscribers.
func sseEvent(id string, body []byte) []byte {
	var b bytes.Buffer
	b.Grow(len(body) + len(id) + 16)
	b.WriteString("id: ")
	b.WriteString(id)
	b.WriteByte('\n')
	for line := range bytes.SplitSeq(body, []byte{'\n'}) {
		b.WriteString("data: ")
		b.Write(line)
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	return b.Bytes()
}

// subscriber is one open event stream.
type subscriber struct {
	room  string
	block netip.Prefix
	ch    chan []byte
	// gone closes when the hub drops the subscriber for falling behind.
	gone chan struct{}
	once sync.Once
}

func (s *subscriber) drop() { s.once.Do(func() { close(s.gone) }) }

// hub holds every room's subscribers. Rooms exist only while someone
// listens; posts are never stored.
type hub struct {
	mu       sync.Mutex
	rooms    map[string]map[*subscriber]struct{}
	perBlock map[netip.Prefix]int
	total    int

	max, maxPerBlock, queue int
}

func newHub(max, maxPerBlock, queue int) *hub {
	return &hub{
		rooms:    map[string]map[*subscriber]struct{}{},
		perBlock: map[netip.Prefix]int{},
		max:      max, maxPerBlock: maxPerBlock, queue: queue,
	}
}

var (
	errTooManySubscribers = errors.New("this node has as many subscribers as it serves; use another node from /nodes")
	errTooManyFromYou     = errors.New("too many open room streams from your address; close some first")
)

func (h *hub) join(room string, from netip.Addr) (*subscriber, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	b := clientBlock(from)
	if h.total >= h.max {
		return nil, errTooManySubscribers
	}
	if h.perBlock[b] >= h.maxPerBlock {
		return nil, errTooManyFromYou
	}
	s := &subscriber{room: room, block: b, ch: make(chan []byte, h.queue), gone: make(chan struct{})}
	r := h.rooms[room]
	if r == nil {
		r = map[*subscriber]struct{}{}
		h.rooms[room] = r
	}
	r[s] = struct{}{}
	h.perBlock[b]++
	h.total++
	return s, nil
}

func (h *hub) leave(s *subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.rooms[s.room]
	if _, ok := r[s]; !ok {
		return
	}
	delete(r, s)
	if len(r) == 0 {
		delete(h.rooms, s.room)
	}
	if h.perBlock[s.block]--; h.perBlock[s.block] <= 0 {
		delete(h.perBlock, s.block)
	}
	h.total--
}

// publish queues ev for every subscriber of room and returns how many
// got it. A subscriber whose queue is full is dropped rather than
// waited for: one slow reader must not hold up a room.
func (h *hub) publish(room string, ev []byte) (delivered, dropped int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.rooms[room] {
		select {
		case s.ch <- ev:
			delivered++
		default:
			s.drop()
			dropped++
		}
	}
	return delivered, dropped
}

func (h *hub) counts() (rooms, subscribers int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.rooms), h.total
}
