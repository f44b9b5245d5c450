package resolve

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/keyhole-p2p/keyhole/dht"
	"github.com/keyhole-p2p/keyhole/identity"
	"github.com/keyhole-p2p/keyhole/pkarr"
	"github.com/keyhole-p2p/keyhole/record"
)

// DHTPutter is the part of a DHT node the publisher uses.
type DHTPutter interface {
	Put(ctx context.Context, p *record.SignedPacket, cas uint64) (dht.PutResult, error)
}

// Defaults for Publisher fields left zero.
const (
	DefaultInterval   = time.Hour
	DefaultPutTimeout = 30 * time.Second
	minBackoff        = 2 * time.Second
	maxBackoff        = 5 * time.Minute
)

// Publisher keeps a device's record on the DHT and on relays.
type Publisher struct {
	Key    *identity.PrivateKey
	DHT    DHTPutter // nil: relays only
	Relays []string
	Client *pkarr.Client
	// Interval between republications; zero means DefaultInterval. BEP 44
	// items fade after about two hours, and the record's timestamp must
	// stay inside resolvers' window, so each republication re-signs.
	Interval time.Duration
	// Timeout bounds one publication; zero means DefaultPutTimeout.
	Timeout time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// OnPublish, if set, is called after every attempt.
	OnPublish func(Report, error)

	mu      sync.Mutex
	content *record.Content
	changed chan struct{}
	lastSeq uint64
}

// RelayReport is one relay's answer to a publication.
type RelayReport struct {
	URL string `json:"url"`
	Err string `json:"error,omitempty"`
}

// Report says where one publication landed.
type Report struct {
	Seq     uint64               `json:"seq"`
	Size    int                  `json:"size"`
	DHT     *dht.PutResult       `json:"dht,omitempty"`
	DHTErr  string               `json:"dht_error,omitempty"`
	Relays  []RelayReport        `json:"relays"`
	Elapsed time.Duration        `json:"elapsed_ns"`
	Packet  *record.SignedPacket `json:"-"`
}

// Landed counts the places that accepted the record.
func (r Report) Landed() (dhtNodes, relays int) {
	if r.DHT != nil {
		dhtNodes = r.DHT.Stored
	}
	for _, rr := range r.Relays {
		if rr.Err == "" {
			relays++
		}
	}
	return dhtNodes, relays
}

// ErrNotPublished means no DHT node and no relay accepted the record.
var ErrNotPublished = errors.New("the record was not published anywhere")

// SetContent replaces what the record says; Run republishes at once.
func (p *Publisher) SetContent(c *record.Content) {
	p.mu.Lock()
	p.content = c
	ch := p.changed
	p.mu.Unlock()
	if ch != nil {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func (p *Publisher) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

// PublishOnce signs the current content now and puts it everywhere in
// parallel. It fails only if nothing accepted it.
func (p *Publisher) PublishOnce(ctx context.Context) (Report, error) {
	p.mu.Lock()
	c := p.content
	// Each publication needs a higher seq than the last, even if the clock
	// stepped back or two publications fall in the same tick.
	at := p.now()
	if last := p.lastSeq; last > 0 && record.Micros(at) <= last {
		at = time.UnixMicro(int64(last) + 1)
		if c != nil && c.Openhost != nil {
			at = time.Unix(int64(last/1_000_000)+1, 0) // openhost needs whole seconds
		}
	}
	p.mu.Unlock()
	if c == nil {
		c = &record.Content{}
	}
	start := time.Now()
	pkt, err := record.Build(p.Key, c, at)
	if err != nil {
		return Report{}, err
	}
	p.mu.Lock()
	p.lastSeq = max(p.lastSeq, pkt.Timestamp)
	p.mu.Unlock()
	timeout := p.Timeout
	if timeout == 0 {
		timeout = DefaultPutTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	rep := Report{Seq: pkt.Timestamp, Size: len(pkt.Bytes()), Packet: pkt, Relays: make([]RelayReport, len(p.Relays))}
	var wg sync.WaitGroup
	if p.DHT != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := p.DHT.Put(ctx, pkt, 0)
			rep.DHT = &r
			if err != nil {
				rep.DHTErr = err.Error()
			}
		}()
	}
	for i, relay := range p.Relays {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rep.Relays[i].URL = relay
			if err := p.Client.Put(ctx, relay, pkt); err != nil {
				rep.Relays[i].Err = err.Error()
			}
		}()
	}
	wg.Wait()
	rep.Elapsed = time.Since(start)
	if n, r := rep.Landed(); n == 0 && r == 0 {
		var why []string
		if rep.DHTErr != "" {
			why = append(why, "dht: "+rep.DHTErr)
		}
		for _, rr := range rep.Relays {
			why = append(why, rr.URL+": "+rr.Err)
		}
		if len(why) == 0 {
			why = append(why, "no DHT and no relays configured")
		}
		return rep, fmt.Errorf("%w (%s)", ErrNotPublished, strings.Join(why, "; "))
	}
	return rep, nil
}

// Run publishes now, then again every Interval and whenever SetContent is
// called, until ctx ends. After a failure it retries with exponential
// backoff (2 s doubling to 5 min, with jitter) instead of waiting a whole
// interval.
func (p *Publisher) Run(ctx context.Context) error {
	p.mu.Lock()
	if p.changed == nil {
		p.changed = make(chan struct{}, 1)
	}
	changed := p.changed
	p.mu.Unlock()
	interval := p.Interval
	if interval == 0 {
		interval = DefaultInterval
	}
	backoff := time.Duration(0)
	for {
		rep, err := p.PublishOnce(ctx)
		if p.OnPublish != nil && ctx.Err() == nil {
			p.OnPublish(rep, err)
		}
		wait := interval
		if err != nil {
			backoff = min(maxBackoff, max(minBackoff, backoff*2))
			wait = backoff/2 + rand.N(backoff/2+1)
		} else {
			backoff = 0
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-changed:
			t.Stop()
		case <-t.C:
		}
	}
}
