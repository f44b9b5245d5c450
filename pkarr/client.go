// Package pkarr speaks the Pkarr relay HTTP API: a relay stores and serves
// signed packets over plain HTTP, for clients that cannot reach the DHT
// (browsers) or want an answer faster than a DHT lookup.
//
// A relay is never trusted: every packet this client returns has had its
// signature checked against the key that was asked for. The relay server
// itself lives in pkarr/relay.
package pkarr

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/keyhole-p2p/keyhole/identity"
	"github.com/keyhole-p2p/keyhole/record"
)

// ContentType is the media type of relay bodies.
const ContentType = "application/pkarr.org.relays.v1+octet"

// MaxBody is the largest valid relay body: signature, timestamp, DNS packet.
const MaxBody = record.MaxPacketSize - identity.PublicKeySize

// Errors returned by Client, wrapped with the relay and detail.
var (
	ErrNotFound    = errors.New("relay has no record for this key")
	ErrConflict    = errors.New("relay holds a newer record")
	ErrRateLimited = errors.New("relay is rate limiting us")
	ErrRejected    = errors.New("relay rejected the record")
	ErrBadAnswer   = errors.New("relay answered with an invalid record")
)

// Client talks to Pkarr relays. The zero value uses a client with a 10 s
// timeout.
type Client struct {
	HTTP *http.Client
}

var defaultHTTP = &http.Client{Timeout: 10 * time.Second}

func (c *Client) http() *http.Client {
	if c != nil && c.HTTP != nil {
		return c.HTTP
	}
	return defaultHTTP
}

// URL is the record URL for key on relay.
func URL(relay string, key identity.PublicKey) string {
	return strings.TrimRight(relay, "/") + "/" + key.String()
}

// Get fetches key's packet from relay and verifies its signature.
func (c *Client) Get(ctx context.Context, relay string, key identity.PublicKey) (*record.SignedPacket, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, URL(relay, key), nil)
	if err != nil {
		return nil, fmt.Errorf("pkarr: relay %s: %w", relay, err)
	}
	resp, err := c.http().Do(req)
	if err != nil {
		return nil, fmt.Errorf("pkarr: relay %s: %w", relay, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxBody+1))
	if err != nil {
		return nil, fmt.Errorf("pkarr: relay %s: reading the answer: %w", relay, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return nil, fmt.Errorf("%w (%s)", ErrNotFound, relay)
	case http.StatusTooManyRequests:
		return nil, fmt.Errorf("%w (%s)", ErrRateLimited, relay)
	default:
		return nil, fmt.Errorf("pkarr: relay %s answered %s: %s", relay, resp.Status, firstLine(body))
	}
	p, err := record.ParseRelayPayload(key, body)
	if err != nil {
		return nil, fmt.Errorf("%w (%s): %v", ErrBadAnswer, relay, err)
	}
	if err := p.VerifySignature(); err != nil {
		return nil, fmt.Errorf("%w (%s): %v", ErrBadAnswer, relay, err)
	}
	return p, nil
}

// Put stores p on relay.
func (c *Client) Put(ctx context.Context, relay string, p *record.SignedPacket) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, URL(relay, p.PublicKey), bytes.NewReader(p.RelayPayload()))
	if err != nil {
		return fmt.Errorf("pkarr: relay %s: %w", relay, err)
	}
	req.Header.Set("Content-Type", ContentType)
	resp, err := c.http().Do(req)
	if err != nil {
		return fmt.Errorf("pkarr: relay %s: %w", relay, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	switch resp.StatusCode {
	case http.StatusOK, http.StatusNoContent:
		return nil
	case http.StatusConflict:
		return fmt.Errorf("%w (%s): %s", ErrConflict, relay, firstLine(body))
	case http.StatusTooManyRequests:
		return fmt.Errorf("%w (%s)", ErrRateLimited, relay)
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		return fmt.Errorf("%w (%s, %s): %s", ErrRejected, relay, resp.Status, firstLine(body))
	default:
		return fmt.Errorf("pkarr: relay %s answered %s: %s", relay, resp.Status, firstLine(body))
	}
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// DefaultRelays are public Pkarr relays used when none are configured.
// None is assumed online; resolution races them against the DHT.
var DefaultRelays = []string{
	"https://pkarr.pubky.app",
	"https://relay.pkarr.org",
}
