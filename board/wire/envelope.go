package wire

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/keyhole-p2p/keyhole/canonjson"
)

// Envelope kinds. A device sends presence, intent and relay; a board
// sends hello, ack, rejected, evicted, match, relay, channel_closed and
// referral; boards send each other peer_hello and propagate.
const (
	KindPresence      = "presence"
	KindIntent        = "intent"
	KindRelay         = "relay"
	KindHello         = "hello"
	KindAck           = "ack"
	KindRejected      = "rejected"
	KindEvicted       = "evicted"
	KindMatch         = "match"
	KindChannelClosed = "channel_closed"
	KindReferral      = "referral"
	KindPeerHello     = "peer_hello"
	KindPropagate     = "propagate"
)

// Frame kinds, and the record type each must carry.
const (
	FrameOffer  = "offer"
	FrameAnswer = "answer"
)

// Roles in a match: the initiator sent the intent, the responder owns
// the presence.
const (
	RoleInitiator = "initiator"
	RoleResponder = "responder"
)

// Envelope is every message on a board connection. Which fields may be
// set depends on Kind; the schema for the kind is checked before the
// Envelope is filled, so an Envelope from Parse never has a field its
// kind does not allow.
type Envelope struct {
	Kind string `json:"kind"`
	Req  string `json:"req,omitempty"`

	// presence, intent, propagate
	Record json.RawMessage `json:"record,omitempty"`
	PoW    string          `json:"pow,omitempty"`

	// relay, match, channel_closed
	MatchID   string          `json:"match_id,omitempty"`
	FrameKind string          `json:"frame_kind,omitempty"`
	Blob      json.RawMessage `json:"blob,omitempty"`

	// hello
	Version     int      `json:"version,omitempty"`
	PoWBits     *int     `json:"pow_bits,omitempty"`
	MaxFrame    int      `json:"max_frame,omitempty"`
	FreshnessMS int64    `json:"freshness_ms,omitempty"`
	STUN        []string `json:"stun,omitempty"`

	// rejected, evicted, channel_closed
	Code   string `json:"code,omitempty"`
	Reason string `json:"reason,omitempty"`

	// evicted, propagate
	RecordKind   string `json:"record_kind,omitempty"`
	SessionNonce string `json:"session_nonce,omitempty"`

	// match, referral
	Role            string `json:"role,omitempty"`
	CounterpartyKey string `json:"counterparty_key,omitempty"`
	ExpiresInMS     *int64 `json:"expires_in_ms,omitempty"`

	// referral, peer_hello
	Board string `json:"board,omitempty"`

	// propagate
	Hops *int     `json:"hops,omitempty"`
	Path []string `json:"path,omitempty"`
}

// Sender says who wrote a message, which picks the schemas it must meet.
type Sender string

// The three kinds of sender.
const (
	FromClient Sender = "client"
	FromBoard  Sender = "board"
	FromPeer   Sender = "peer"
)

var schemas = mustLoadSchemas()

func mustLoadSchemas() map[string]*Schema {
	s, err := loadSchemas()
	if err != nil {
		panic("wire: embedded schema: " + err.Error())
	}
	return s
}

// SchemaFor returns the named definition of orp.schema.json, or nil.
func SchemaFor(name string) *Schema { return schemas[name] }

// Parse checks one message from sender against the schema for its kind
// and decodes it. The text must also have one canonical form (no
// duplicate keys, valid UTF-8, no NaN), so that what the schema checked
// is exactly what the signature covers.
func Parse(raw []byte, from Sender) (*Envelope, error) {
	if _, err := canonjson.Canonicalize(raw); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	var head struct {
		Kind string `json:"kind"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return nil, fmt.Errorf("%w: not a JSON object with a kind: %v", ErrMalformed, err)
	}
	name := string(from) + "_" + head.Kind
	if from == FromPeer {
		name = "peer_" + strings.TrimPrefix(head.Kind, "peer_")
	}
	s := schemas[name]
	if s == nil || head.Kind == "" {
		return nil, fmt.Errorf("%w: unknown message kind %q from a %s", ErrMalformed, head.Kind, from)
	}
	if err := s.Validate(raw); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	var e Envelope
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&e); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if e.Kind == KindRelay {
		want := map[string]string{FrameOffer: TypeMatchOffer, FrameAnswer: TypeMatchAnswer}[e.FrameKind]
		var t struct {
			Type    string `json:"type"`
			MatchID string `json:"match_id"`
		}
		json.Unmarshal(e.Blob, &t)
		if t.Type != want {
			return nil, fmt.Errorf("%w: a %s frame must carry a %s, not a %s", ErrMalformed, e.FrameKind, want, t.Type)
		}
		if t.MatchID != e.MatchID {
			return nil, fmt.Errorf("%w: the frame names another match than the envelope", ErrMalformed)
		}
	}
	return &e, nil
}

// DecodeRecord checks a record against a schema (presence, intent,
// frame, sealed_payload, binding) and decodes it into v.
func DecodeRecord(raw []byte, schema string, v any) error {
	if _, err := canonjson.Canonicalize(raw); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	s := schemas[schema]
	if s == nil {
		return fmt.Errorf("wire: no schema %q", schema)
	}
	if err := s.Validate(raw); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return nil
}

// Marshal encodes a message. It does not check the schema: the sending
// side builds messages from typed fields, and tests check that what it
// builds parses.
func Marshal(e *Envelope) []byte {
	b, _ := json.Marshal(e)
	return b
}
