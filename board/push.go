package board

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"syscall"
	"time"
)

// Pusher wakes a sleeping device. The board calls it at most once per
// timed-out channel, with the endpoint from the responder's newest
// signed presence, and never waits for it: a slow or failing endpoint
// cannot hold up or break the channel's teardown.
type Pusher interface {
	Push(ctx context.Context, endpoint string) error
}

// HTTPPusher sends the wake-up as a UnifiedPush / Web Push style
// request: an empty POST with a TTL header. The body is empty on
// purpose: the notification says only "reconnect", nothing about who
// asked or why.
//
// The endpoint comes from a device, so by default it may only be an
// https URL on a public address: a board must not be turned into a
// scanner of its own network. AllowPrivate (tests, lab setups) lifts
// both rules.
type HTTPPusher struct {
	AllowPrivate bool
	Timeout      time.Duration // zero: 10 s

	once   sync.Once
	client *http.Client
}

// Push implements Pusher.
func (p *HTTPPusher) Push(ctx context.Context, endpoint string) error {
	u, err := url.Parse(endpoint)
	if err != nil {
		return fmt.Errorf("push endpoint: %w", err)
	}
	if u.Scheme != "https" && !p.AllowPrivate {
		return errors.New("push endpoint: only https endpoints are used")
	}
	p.once.Do(func() { p.client = p.newClient() })
	timeout := p.Timeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, http.NoBody)
	if err != nil {
		return err
	}
	req.Header.Set("TTL", "60")
	req.Header.Set("Urgency", "high")
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("push endpoint answered %s", resp.Status)
	}
	return nil
}

func (p *HTTPPusher) newClient() *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	if !p.AllowPrivate {
		d.Control = func(network, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return err
			}
			a := ap.Addr().Unmap()
			if !a.IsGlobalUnicast() || a.IsPrivate() || a.IsLoopback() || a.IsLinkLocalUnicast() || nonPublic(a) {
				return fmt.Errorf("push endpoint resolves to %s, a non-public address", a)
			}
			return nil
		}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = d.DialContext
	tr.Proxy = nil
	return &http.Client{
		Transport: tr,
		// A redirect could point anywhere; a push service has no reason
		// to redirect.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// nonPublicPrefixes are ranges netip does not flag but that are not the
// public internet: carrier-grade NAT, benchmarking, NAT64 and the
// IPv4-compatible and 6to4 embeddings of private addresses.
var nonPublicPrefixes = []netip.Prefix{
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("64:ff9b::/96"),
	netip.MustParsePrefix("64:ff9b:1::/48"),
	netip.MustParsePrefix("2002::/16"),
}

func nonPublic(a netip.Addr) bool {
	for _, p := range nonPublicPrefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
