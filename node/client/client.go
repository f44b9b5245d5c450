// Package client uses keyhole community nodes from Go: it picks the
// least loaded of several nodes by the price they advertise, pays their
// proof of work, posts to and listens on rooms, gets TURN credentials,
// and finds nodes on the DHT, remembering them between runs.
package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/keyhole-p2p/keyhole/node"
	"github.com/keyhole-p2p/keyhole/node/pow"
)

// Client talks to community nodes. The zero value is ready to use.
type Client struct {
	// HTTP is the client for requests; nil means one with a 30 s timeout
	// (room streams are not bounded by it).
	HTTP *http.Client
	// MaxBits refuses nodes asking more work than this; zero means 26,
	// about a minute of one core.
	MaxBits int
}

func (c *Client) http() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return defaultHTTP
}

var defaultHTTP = &http.Client{Timeout: 30 * time.Second}

func (c *Client) maxBits() int {
	if c.MaxBits == 0 {
		return 26
	}
	return c.MaxBits
}

// Info asks one node for its self-description and current price.
func (c *Client) Info(ctx context.Context, base string) (*node.Info, error) {
	return node.FetchInfo(ctx, c.http(), strings.TrimRight(base, "/"))
}

// Pick asks every node in bases for its price, in parallel and within
// ctx, and returns those that answered, cheapest first (then least
// loaded). This is how load spreads: a busy node asks more work, so
// clients go elsewhere.
func (c *Client) Pick(ctx context.Context, bases []string) []*node.Info {
	var mu sync.Mutex
	var out []*node.Info
	var wg sync.WaitGroup
	for _, b := range bases {
		wg.Go(func() {
			in, err := c.Info(ctx, b)
			if err != nil || in.Difficulty > c.maxBits() {
				return
			}
			mu.Lock()
			out = append(out, in)
			mu.Unlock()
		})
	}
	wg.Wait()
	slices.SortStableFunc(out, func(a, b *node.Info) int {
		if a.Difficulty != b.Difficulty {
			return a.Difficulty - b.Difficulty
		}
		switch {
		case a.Load < b.Load:
			return -1
		case a.Load > b.Load:
			return 1
		}
		return 0
	})
	return out
}

// Error is a node's refusal: the HTTP status and the node's one line.
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("node: %d: %s", e.Status, e.Message) }

// workRefusal is the body of a refused proof of work.
type workRefusal struct {
	Error      string `json:"error"`
	Token      string `json:"token"`
	Difficulty int    `json:"difficulty"`
}

// paid sends a request that costs proof of work: it solves the node's
// current challenge for endpoint and body, and if the node refuses the
// work (the price rose, the token expired) solves once more with the
// token and price the refusal carries.
func (c *Client) paid(ctx context.Context, base, endpoint, path string, body []byte, out any) error {
	base = strings.TrimRight(base, "/")
	in, err := c.Info(ctx, base)
	if err != nil {
		return err
	}
	token, bits := in.Token, in.Difficulty
	for attempt := 0; ; attempt++ {
		if bits > c.maxBits() {
			return fmt.Errorf("node: %s asks %d bits of work, more than the %d allowed; use another node", base, bits, c.maxBits())
		}
		nonce, err := pow.SolveFrom(ctx, token, pow.Binding(endpoint, body), bits, rand.Uint64N(1<<52))
		if err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+path, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("X-Keyhole-Pow", pow.Header(token, nonce))
		req.Header.Set("Accept", "application/json")
		resp, err := c.http().Do(req)
		if err != nil {
			return err
		}
		raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if err != nil {
			return err
		}
		if resp.StatusCode/100 == 2 {
			if out == nil {
				return nil
			}
			return json.Unmarshal(raw, out)
		}
		var ref workRefusal
		json.Unmarshal(raw, &ref)
		retry := resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusConflict || resp.StatusCode == http.StatusPreconditionRequired
		if !retry || attempt > 0 || ref.Token == "" {
			if ref.Error == "" {
				ref.Error = strings.TrimSpace(string(raw))
			}
			return &Error{Status: resp.StatusCode, Message: ref.Error}
		}
		token, bits = ref.Token, ref.Difficulty
	}
}

// Post sends body to room on the node at base and returns the post's id.
func (c *Client) Post(ctx context.Context, base, room string, body []byte) (string, error) {
	var out struct {
		ID string `json:"id"`
	}
	if err := c.paid(ctx, base, "room/"+room, "/room/"+room, body, &out); err != nil {
		return "", err
	}
	return out.ID, nil
}

// TURNCredentials are what /token returns.
type TURNCredentials struct {
	Username string   `json:"username"`
	Password string   `json:"password"`
	TTL      int      `json:"ttl"`
	URIs     []string `json:"uris"`
}

// Token pays for TURN credentials on the node at base.
func (c *Client) Token(ctx context.Context, base string) (*TURNCredentials, error) {
	var out TURNCredentials
	if err := c.paid(ctx, base, "token", "/token", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Message is one room post as a subscriber receives it.
type Message struct {
	ID   string
	Body []byte
}

// Subscribe opens the room's event stream on the node at base. Messages
// arrive on the returned channel until ctx ends or the stream breaks;
// then the channel closes and Err says why.
func (c *Client) Subscribe(ctx context.Context, base, room string) (*Subscription, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+"/room/"+room, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	// The stream lives as long as ctx, not the client's request timeout.
	hc := *c.http()
	hc.Timeout = 0
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, &Error{Status: resp.StatusCode, Message: strings.TrimSpace(string(raw))}
	}
	ch := make(chan Message, 64)
	s := &Subscription{C: ch, body: resp.Body}
	go s.read(ch)
	return s, nil
}

// Subscription is an open room stream.
type Subscription struct {
	C    <-chan Message
	body io.ReadCloser
	err  error
}

// Err is why the stream ended, once C is closed.
func (s *Subscription) Err() error { return s.err }

// Close ends the stream.
func (s *Subscription) Close() error { return s.body.Close() }

// read parses Server-Sent Events: "id:" and "data:" fields, events ended
// by a blank line, comments ignored, data lines joined with LF.
func (s *Subscription) read(out chan<- Message) {
	defer close(out)
	sc := bufio.NewScanner(s.body)
	sc.Buffer(make([]byte, 4096), 64<<10)
	var m Message
	var data [][]byte
	for sc.Scan() {
		line := sc.Bytes()
		switch {
		case len(line) == 0:
			if data != nil {
				m.Body = bytes.Join(data, []byte{'\n'})
				out <- m
			}
			m, data = Message{}, nil
		case line[0] == ':':
		default:
			field, value, _ := bytes.Cut(line, []byte{':'})
			value = bytes.TrimPrefix(value, []byte{' '})
			switch string(field) {
			case "id":
				m.ID = string(value)
			case "data":
				data = append(data, bytes.Clone(value))
			}
		}
	}
	s.err = sc.Err()
	if s.err == nil {
		s.err = errors.New("node: the room stream ended")
	}
}
