// Package pow is the proof of work a community node asks before it does
// anything that costs it: relaying a room post, storing on the DHT,
// handing out TURN credentials. Work is what lets a node with no
// accounts stay open to everyone: a flood costs the flooder CPU in
// proportion to the node's load, and a busy node advertises a higher
// price so clients move to quieter ones.
//
// A challenge ("token") is the time it was issued plus an HMAC of that
// time under the node's secret, so the node checks recency and origin
// without remembering what it issued. A solution binds the token to the
// exact request it pays for (endpoint and body), so work cannot be moved
// to another request; a short-lived cache of spent solutions stops the
// same one from paying twice. The wire format is in node/PROTOCOL.md.
package pow

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Wire constants (node/PROTOCOL.md).
const (
	// TokenLen is the decoded length of a token: 8-byte time, 16-byte MAC.
	TokenLen = 24
	// MaxNonce keeps nonces exact in JavaScript numbers.
	MaxNonce = 1<<53 - 1
	// MaxBits bounds a difficulty; beyond it nothing is solvable anyway.
	MaxBits = 64

	tokenLabel  = "keyhole-node-challenge-v1"
	digestLabel = "keyhole-node-pow-v1"
)

// Errors a check returns; each says what to do next.
var (
	ErrMalformed    = errors.New("pow: malformed proof of work; send X-Keyhole-Pow: <token>.<nonce> with a token from the node's / endpoint")
	ErrForged       = errors.New("pow: the token was not issued by this node; fetch a fresh one from /")
	ErrStale        = errors.New("pow: the token has expired; fetch a fresh one from / and solve again")
	ErrInsufficient = errors.New("pow: not enough work for the node's current difficulty; solve again at the difficulty it advertises")
	ErrReused       = errors.New("pow: this solution was already spent; solve a new one")
	ErrBusy         = errors.New("pow: the node is tracking too many recent solutions; try again shortly or use another node")
)

// Options tune an Issuer. Zero values have the defaults noted.
type Options struct {
	// TTL is how long a token stays valid; zero means 2 minutes.
	TTL time.Duration
	// MaxSpent bounds the spent-solution cache; zero means 500000. When
	// it is full, new solutions are refused (ErrBusy) until old ones
	// expire, so memory stays bounded under any flood.
	MaxSpent int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Issuer issues tokens and checks solutions for one node.
type Issuer struct {
	key      [32]byte
	ttl      time.Duration
	maxSpent int
	now      func() time.Time

	mu    sync.Mutex
	spent map[int64]map[[32]byte]struct{} // by token second: dropped whole when expired
	count int
}

// NewIssuer returns an Issuer keyed by secret (at least 16 bytes; a node
// makes a random one at start, so tokens die with the process).
func NewIssuer(secret []byte, o Options) (*Issuer, error) {
	if len(secret) < 16 {
		return nil, fmt.Errorf("pow: secret is %d bytes; use at least 16 random bytes", len(secret))
	}
	if o.TTL == 0 {
		o.TTL = 2 * time.Minute
	}
	if o.MaxSpent == 0 {
		o.MaxSpent = 500000
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	// Derive rather than use the secret directly, so the same secret can
	// key other things (TURN credentials) without sharing a MAC key.
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(tokenLabel))
	i := &Issuer{ttl: o.TTL, maxSpent: o.MaxSpent, now: o.Now, spent: map[int64]map[[32]byte]struct{}{}}
	copy(i.key[:], m.Sum(nil))
	return i, nil
}

// TTL is how long a token stays valid.
func (i *Issuer) TTL() time.Duration { return i.ttl }

// Token returns a fresh challenge.
func (i *Issuer) Token() string {
	var raw [TokenLen]byte
	binary.BigEndian.PutUint64(raw[:8], uint64(i.now().Unix()))
	copy(raw[8:], i.mac(raw[:8]))
	return base64.RawURLEncoding.EncodeToString(raw[:])
}

func (i *Issuer) mac(ts []byte) []byte {
	m := hmac.New(sha256.New, i.key[:])
	m.Write(ts)
	return m.Sum(nil)[:16]
}

// Check verifies a solution for binding at difficulty bits and marks it
// spent. It checks, cheapest first: the token's form and MAC, its age,
// the work, and only then the spent cache.
func (i *Issuer) Check(token string, nonce uint64, binding [32]byte, bits int) error {
	raw, err := decodeToken(token)
	if err != nil {
		return err
	}
	if !hmac.Equal(raw[8:], i.mac(raw[:8])) {
		return ErrForged
	}
	issued := int64(binary.BigEndian.Uint64(raw[:8]))
	now := i.now()
	age := now.Sub(time.Unix(issued, 0))
	if age > i.ttl || age < -5*time.Second {
		return ErrStale
	}
	d := Digest(raw, binding, nonce)
	if LeadingZeros(d) < bits {
		return ErrInsufficient
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	i.expire(now)
	bucket := i.spent[issued]
	if _, ok := bucket[d]; ok {
		return ErrReused
	}
	if i.count >= i.maxSpent {
		return ErrBusy
	}
	if bucket == nil {
		bucket = map[[32]byte]struct{}{}
		i.spent[issued] = bucket
	}
	bucket[d] = struct{}{}
	i.count++
	return nil
}

// expire drops the spent solutions of tokens that can no longer pass the
// age check. Callers hold mu.
func (i *Issuer) expire(now time.Time) {
	oldest := now.Add(-i.ttl).Unix()
	for ts, b := range i.spent {
		if ts < oldest {
			i.count -= len(b)
			delete(i.spent, ts)
		}
	}
}

// Spent is how many solutions the replay cache holds.
func (i *Issuer) Spent() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.expire(i.now())
	return i.count
}

func decodeToken(token string) ([]byte, error) {
	if len(token) != base64.RawURLEncoding.EncodedLen(TokenLen) {
		return nil, ErrMalformed
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(token)
	if err != nil || len(raw) != TokenLen {
		return nil, ErrMalformed
	}
	return raw, nil
}

// Binding is what a solution pays for: the endpoint ("room/<hash>",
// "token", "dht-put") and the exact body sent.
func Binding(endpoint string, body []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte(endpoint))
	h.Write([]byte{'\n'})
	h.Write(body)
	return [32]byte(h.Sum(nil))
}

// Digest is SHA-256(label | token | binding | nonce as 8 bytes big-endian);
// its leading zero bits are the work done.
func Digest(token []byte, binding [32]byte, nonce uint64) [32]byte {
	var buf [len(digestLabel) + TokenLen + 32 + 8]byte
	n := copy(buf[:], digestLabel)
	n += copy(buf[n:], token)
	n += copy(buf[n:], binding[:])
	binary.BigEndian.PutUint64(buf[n:], nonce)
	return sha256.Sum256(buf[:])
}

// LeadingZeros counts the leading zero bits of d.
func LeadingZeros(d [32]byte) int {
	n := 0
	for i := 0; i < len(d); i += 8 {
		w := binary.BigEndian.Uint64(d[i:])
		if w != 0 {
			return n + bits.LeadingZeros64(w)
		}
		n += 64
	}
	return n
}

// Solve finds the smallest nonce whose digest has at least bits leading
// zero bits. Expected work is 2^bits hashes; ctx bounds it.
func Solve(ctx context.Context, token string, binding [32]byte, bits int) (uint64, error) {
	return SolveFrom(ctx, token, binding, bits, 0)
}

// SolveFrom is Solve searching from nonce start. Clients start at a
// random nonce: two requests with the same body under the same token
// (a token changes once a second) would otherwise find the same
// solution, and the second would be refused as spent.
func SolveFrom(ctx context.Context, token string, binding [32]byte, bits int, start uint64) (uint64, error) {
	raw, err := decodeToken(token)
	if err != nil {
		return 0, err
	}
	if bits < 0 || bits > MaxBits {
		return 0, fmt.Errorf("pow: difficulty %d is outside 0..%d", bits, MaxBits)
	}
	// Hash the constant prefix once; only the nonce changes.
	var buf [len(digestLabel) + TokenLen + 32 + 8]byte
	n := copy(buf[:], digestLabel)
	n += copy(buf[n:], raw)
	n += copy(buf[n:], binding[:])
	if start > MaxNonce {
		return 0, fmt.Errorf("pow: start nonce %d is above %d", start, uint64(MaxNonce))
	}
	for nonce := start; nonce <= MaxNonce; nonce++ {
		if nonce&0xffff == 0 && ctx.Err() != nil {
			return 0, fmt.Errorf("pow: solving %d bits: %w", bits, ctx.Err())
		}
		binary.BigEndian.PutUint64(buf[n:], nonce)
		if LeadingZeros(sha256.Sum256(buf[:])) >= bits {
			return nonce, nil
		}
	}
	return 0, fmt.Errorf("pow: no nonce solves %d bits", bits)
}

// Header formats a solution for the X-Keyhole-Pow request header.
func Header(token string, nonce uint64) string {
	return token + "." + strconv.FormatUint(nonce, 10)
}

// ParseHeader reads an X-Keyhole-Pow header value.
func ParseHeader(v string) (token string, nonce uint64, err error) {
	token, num, ok := strings.Cut(strings.TrimSpace(v), ".")
	if !ok || num == "" || len(num) > 16 || (len(num) > 1 && num[0] == '0') {
		return "", 0, ErrMalformed
	}
	nonce, err = strconv.ParseUint(num, 10, 64)
	if err != nil || nonce > MaxNonce {
		return "", 0, ErrMalformed
	}
	if _, err := decodeToken(token); err != nil {
		return "", 0, err
	}
	return token, nonce, nil
}
