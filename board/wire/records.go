package wire

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/keyhole-p2p/keyhole/canonjson"
	"github.com/keyhole-p2p/keyhole/identity"
)

// TimeLayout is how every timestamp is written: UTC with milliseconds,
// exactly as JavaScript's Date.toISOString writes it, so browser and Go
// clients produce the same signed bytes.
const TimeLayout = "2006-01-02T15:04:05.000Z"

// B64 is the encoding of every key, signature, nonce and blob: unpadded
// base64url, strict (the unused low bits of the last character must be
// zero), so each value has exactly one spelling.
var B64 = base64.RawURLEncoding.Strict()

// Record types, the "type" field of each signed object. Putting the type
// inside the signed bytes keeps a signature over one kind of record
// from being passed off as another.
const (
	TypePresence    = "presence"
	TypeIntent      = "intent"
	TypeMatchOffer  = "match_offer"
	TypeMatchAnswer = "match_answer"
	TypeSignaling   = "signaling"
)

// Frame phases.
const (
	PhaseKey       = "key"
	PhaseSignaling = "signaling"
)

// Presence is a device's always-on beacon: "I am here, match me".
type Presence struct {
	Type         string   `json:"type"`
	SelfKey      string   `json:"self_key"`
	BoardsScope  []string `json:"boards_scope"`
	WebRTCCaps   []string `json:"webrtc_caps"`
	SessionNonce string   `json:"session_nonce"`
	Timestamp    string   `json:"timestamp"`
	PushToken    string   `json:"push_token,omitempty"`
	Signature    string   `json:"signature"`
}

// Intent asks the board to match the sender with a target.
type Intent struct {
	Type         string `json:"type"`
	SelfKey      string `json:"self_key"`
	TargetKey    string `json:"target_key"`
	SessionNonce string `json:"session_nonce"`
	Timestamp    string `json:"timestamp"`
	Signature    string `json:"signature"`
}

// Frame is a match offer or answer, relayed through a match's channel.
// In the KEY phase it carries the sender's bound transport key, in the
// SIGNALING phase a sealed SDP.
type Frame struct {
	Type      string            `json:"type"`
	MatchID   string            `json:"match_id"`
	Phase     string            `json:"phase"`
	FromKey   string            `json:"from_key"`
	ToKey     string            `json:"to_key"`
	Timestamp string            `json:"timestamp"`
	Binding   *identity.Binding `json:"binding,omitempty"`
	Sealed    string            `json:"sealed,omitempty"`
	Signature string            `json:"signature"`
}

// SealedPayload is the plaintext inside a signaling frame's box.
type SealedPayload struct {
	Type    string `json:"type"`
	MatchID string `json:"match_id"`
	FromKey string `json:"from_key"`
	ToKey   string `json:"to_key"`
	SDPType string `json:"sdp_type"`
	SDP     string `json:"sdp"`
}

// Errors a record check can fail with. Each is wrapped with detail.
var (
	ErrMalformed = errors.New("malformed message")
	ErrSignature = errors.New("bad signature")
	ErrStale     = errors.New("stale timestamp")
	ErrFuture    = errors.New("timestamp in the future")
)

// EncodeKey writes a public key the way records carry it.
func EncodeKey(k identity.PublicKey) string { return B64.EncodeToString(k[:]) }

// DecodeKey reads a key written by EncodeKey.
func DecodeKey(s string) (identity.PublicKey, error) {
	var k identity.PublicKey
	b, err := B64.DecodeString(s)
	if err != nil || len(b) != len(k) {
		return k, fmt.Errorf("%w: %q is not a 32-byte base64url key", ErrMalformed, s)
	}
	copy(k[:], b)
	return k, nil
}

// FormatTime writes t in TimeLayout.
func FormatTime(t time.Time) string { return t.UTC().Format(TimeLayout) }

// NewNonce returns 16 fresh random bytes, encoded.
func NewNonce() string {
	var b [16]byte
	rand.Read(b[:])
	return B64.EncodeToString(b[:])
}

// CheckFresh refuses a timestamp older than window or more than skew
// ahead of now. The window is also what bounds the replay cache: a
// record old enough to have left the cache is old enough to be refused.
func CheckFresh(ts string, now time.Time, window, skew time.Duration) (time.Time, error) {
	t, err := time.Parse(TimeLayout, ts)
	if err != nil {
		return t, fmt.Errorf("%w: timestamp %q is not %s", ErrMalformed, ts, TimeLayout)
	}
	if age := now.Sub(t); age > window {
		return t, fmt.Errorf("%w: signed %s ago, the window is %s (check the device's clock)", ErrStale, age.Round(time.Millisecond), window)
	}
	if ahead := t.Sub(now); ahead > skew {
		return t, fmt.Errorf("%w: signed %s ahead of the board's clock, at most %s is allowed (check the device's clock)", ErrFuture, ahead.Round(time.Millisecond), skew)
	}
	return t, nil
}

// SignedBytes is what a record's signature covers: the canonical JSON
// (sorted keys, compact) of the object without its "signature" field.
func SignedBytes(raw []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil || m == nil {
		return nil, fmt.Errorf("%w: a record must be a JSON object", ErrMalformed)
	}
	delete(m, "signature")
	b, err := canonjson.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return b, nil
}

// Sign fills in rec's signature (rec is a *Presence, *Intent or *Frame).
func Sign(rec any, key *identity.PrivateKey) error {
	raw, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	msg, err := SignedBytes(raw)
	if err != nil {
		return err
	}
	sig := B64.EncodeToString(key.Sign(msg))
	switch r := rec.(type) {
	case *Presence:
		r.Signature = sig
	case *Intent:
		r.Signature = sig
	case *Frame:
		r.Signature = sig
	default:
		return fmt.Errorf("wire: cannot sign a %T", rec)
	}
	return nil
}

// VerifyRaw checks that the record in raw (as received, already schema
// checked) carries a valid signature by signer.
func VerifyRaw(raw []byte, signer identity.PublicKey) error {
	var s struct {
		Signature string `json:"signature"`
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	sig, err := B64.DecodeString(s.Signature)
	if err != nil {
		return fmt.Errorf("%w: the signature is not base64url", ErrSignature)
	}
	msg, err := SignedBytes(raw)
	if err != nil {
		return err
	}
	if err := identity.VerifyStrict(signer, msg, sig); err != nil {
		return fmt.Errorf("%w: not signed by %s", ErrSignature, signer)
	}
	return nil
}

// NewPresence builds and signs a presence for key.
func NewPresence(key *identity.PrivateKey, now time.Time, scope []string, pushToken string) (*Presence, error) {
	if scope == nil {
		scope = []string{}
	}
	p := &Presence{
		Type:         TypePresence,
		SelfKey:      EncodeKey(key.Public()),
		BoardsScope:  scope,
		WebRTCCaps:   []string{"datachannel"},
		SessionNonce: NewNonce(),
		Timestamp:    FormatTime(now),
		PushToken:    pushToken,
	}
	return p, Sign(p, key)
}

// NewIntent builds and signs an intent from key toward target.
func NewIntent(key *identity.PrivateKey, target identity.PublicKey, now time.Time) (*Intent, error) {
	in := &Intent{
		Type:         TypeIntent,
		SelfKey:      EncodeKey(key.Public()),
		TargetKey:    EncodeKey(target),
		SessionNonce: NewNonce(),
		Timestamp:    FormatTime(now),
	}
	return in, Sign(in, key)
}
