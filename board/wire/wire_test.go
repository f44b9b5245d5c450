package wire

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/keyhole-p2p/keyhole/identity"
)

var now = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func key(t testing.TB) *identity.PrivateKey {
	t.Helper()
	k, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// edit decodes a JSON object, applies f, and encodes it again.
func edit(t testing.TB, raw []byte, f func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	f(m)
	return mustJSON(t, m)
}

func validFrame(t testing.TB, from *identity.PrivateKey, to identity.PublicKey, phase string) *Frame {
	f := &Frame{Type: TypeMatchOffer, MatchID: NewNonce(), Phase: phase, FromKey: EncodeKey(from.Public()), ToKey: EncodeKey(to), Timestamp: FormatTime(now)}
	if phase == PhaseKey {
		tk, _ := identity.NewTransportKey()
		b, err := identity.NewBinding(from, tk.Public(), now)
		if err != nil {
			t.Fatal(err)
		}
		f.Binding = &b
	} else {
		f.Sealed = strings.Repeat("A", 100)
	}
	if err := Sign(f, from); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestSchemasLoad(t *testing.T) {
	for _, name := range []string{"presence", "intent", "match_offer", "match_answer", "sealed_payload",
		"client_presence", "client_intent", "client_relay", "board_hello", "board_match", "peer_propagate"} {
		if SchemaFor(name) == nil {
			t.Errorf("no schema %s", name)
		}
	}
}

// TestRecordsRoundTrip: what the constructors build meets its schema and
// its signature verifies; any edit breaks the signature.
func TestRecordsRoundTrip(t *testing.T) {
	a, b := key(t), key(t)
	p, err := NewPresence(a, now, nil, "https://push.example/up/abc")
	if err != nil {
		t.Fatal(err)
	}
	in, _ := NewIntent(b, a.Public(), now)
	cases := []struct {
		schema string
		rec    any
		signer identity.PublicKey
	}{
		{"presence", p, a.Public()},
		{"intent", in, b.Public()},
		{"match_offer", validFrame(t, a, b.Public(), PhaseKey), a.Public()},
		{"match_offer", validFrame(t, a, b.Public(), PhaseSignaling), a.Public()},
	}
	for _, c := range cases {
		raw := mustJSON(t, c.rec)
		if err := SchemaFor(c.schema).Validate(raw); err != nil {
			t.Fatalf("%s: %v\n%s", c.schema, err, raw)
		}
		if err := VerifyRaw(raw, c.signer); err != nil {
			t.Fatalf("%s: %v", c.schema, err)
		}
		if err := VerifyRaw(raw, key(t).Public()); !errors.Is(err, ErrSignature) {
			t.Fatalf("%s verified under another key: %v", c.schema, err)
		}
		tampered := edit(t, raw, func(m map[string]any) { m["timestamp"] = FormatTime(now.Add(time.Second)) })
		if err := VerifyRaw(tampered, c.signer); !errors.Is(err, ErrSignature) {
			t.Fatalf("%s: tampered timestamp verified: %v", c.schema, err)
		}
	}
}

// TestSignatureIgnoresKeyOrder: the signature covers the canonical form,
// so a record re-serialized with other key order and spacing (as a
// browser might) still verifies.
func TestSignatureIgnoresKeyOrder(t *testing.T) {
	a := key(t)
	p, _ := NewPresence(a, now, []string{"wss://b.example/"}, "")
	raw := []byte(`{ "webrtc_caps": ["datachannel"], "type": "presence", "timestamp": "` + p.Timestamp +
		`", "signature": "` + p.Signature + `", "session_nonce": "` + p.SessionNonce +
		`", "self_key": "` + p.SelfKey + `", "boards_scope": [ "wss://b.example/" ] }`)
	if err := VerifyRaw(raw, a.Public()); err != nil {
		t.Fatal(err)
	}
}

// TestSchemaRejects: every way a record can break its schema is caught,
// with the field named.
func TestSchemaRejects(t *testing.T) {
	a, b := key(t), key(t)
	p, _ := NewPresence(a, now, nil, "")
	praw := mustJSON(t, p)
	kf := mustJSON(t, validFrame(t, a, b.Public(), PhaseKey))
	sf := mustJSON(t, validFrame(t, a, b.Public(), PhaseSignaling))
	cases := []struct {
		name   string
		schema string
		raw    []byte
		field  string
	}{
		{"extra field: an IP in a presence", "presence", edit(t, praw, func(m map[string]any) { m["ip"] = "192.0.2.1" }), "ip"},
		{"extra field: a transport key in a presence", "presence", edit(t, praw, func(m map[string]any) { m["transport_key"] = p.SelfKey }), "transport_key"},
		{"extra field: an SDP in a presence", "presence", edit(t, praw, func(m map[string]any) { m["sdp"] = "v=0" }), "sdp"},
		{"field with other case", "presence", edit(t, praw, func(m map[string]any) { m["Self_Key"] = m["self_key"] }), "Self_Key"},
		{"missing signature", "presence", edit(t, praw, func(m map[string]any) { delete(m, "signature") }), "signature"},
		{"short key", "presence", edit(t, praw, func(m map[string]any) { m["self_key"] = "abc" }), "self_key"},
		{"key with non-zero tail bits", "presence", edit(t, praw, func(m map[string]any) { s := m["self_key"].(string); m["self_key"] = s[:42] + "B" }), "self_key"},
		{"timestamp without milliseconds", "presence", edit(t, praw, func(m map[string]any) { m["timestamp"] = "2026-11-23T12:00:00Z" }), "timestamp"},
		{"push token not a URL", "presence", edit(t, praw, func(m map[string]any) { m["push_token"] = "fcm:abc" }), "push_token"},
		{"unknown capability", "presence", edit(t, praw, func(m map[string]any) { m["webrtc_caps"] = []string{"telepathy"} }), "webrtc_caps[0]"},
		{"duplicate scope", "presence", edit(t, praw, func(m map[string]any) { m["boards_scope"] = []string{"ws://a/", "ws://a/"} }), "boards_scope"},
		{"wrong type", "presence", edit(t, praw, func(m map[string]any) { m["type"] = "intent" }), "type"},
		{"number as string", "presence", edit(t, praw, func(m map[string]any) { m["session_nonce"] = 5 }), "session_nonce"},
		{"key phase frame with a sealed blob too", "match_offer", edit(t, kf, func(m map[string]any) { m["sealed"] = strings.Repeat("A", 100) }), ""},
		{"signaling frame with a binding too", "match_offer", edit(t, sf, func(m map[string]any) {
			m["binding"] = json.RawMessage(mustJSON(t, validFrame(t, a, b.Public(), PhaseKey).Binding))
		}), ""},
		{"key phase frame without binding", "match_offer", edit(t, kf, func(m map[string]any) { delete(m, "binding") }), ""},
		{"binding with an extra field", "match_offer", edit(t, kf, func(m map[string]any) { m["binding"].(map[string]any)["note"] = "x" }), ""},
		{"offer schema given an answer", "match_offer", edit(t, kf, func(m map[string]any) { m["type"] = TypeMatchAnswer }), "type"},
		{"sealed blob with padding", "match_offer", edit(t, sf, func(m map[string]any) { m["sealed"] = strings.Repeat("A", 100) + "==" }), ""},
		{"oversize sealed blob", "match_offer", edit(t, sf, func(m map[string]any) { m["sealed"] = strings.Repeat("A", 43001) }), ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := SchemaFor(c.schema).Validate(c.raw)
			if err == nil {
				t.Fatalf("accepted %s", c.raw)
			}
			var se *SchemaError
			if !errors.As(err, &se) {
				t.Fatalf("%T %v", err, err)
			}
			if c.field != "" && se.Path != c.field {
				t.Fatalf("error names %q, want %q: %v", se.Path, c.field, err)
			}
		})
	}
}

// TestParse: envelopes are checked by sender and kind, duplicate keys
// are refused before anything reads them, and a relay's blob must agree
// with its envelope.
func TestParse(t *testing.T) {
	a, b := key(t), key(t)
	p, _ := NewPresence(a, now, nil, "")
	good := mustJSON(t, map[string]any{"kind": "presence", "record": p, "req": "r1"})
	if e, err := Parse(good, FromClient); err != nil || e.Kind != KindPresence || e.Req != "r1" {
		t.Fatalf("%v %+v", err, e)
	}
	offer := validFrame(t, a, b.Public(), PhaseSignaling)
	relay := mustJSON(t, map[string]any{"kind": "relay", "match_id": offer.MatchID, "frame_kind": "offer", "blob": offer})
	if _, err := Parse(relay, FromClient); err != nil {
		t.Fatal(err)
	}
	bad := map[string][]byte{
		"a board message from a client": mustJSON(t, map[string]any{"kind": "match", "match_id": NewNonce(), "role": "initiator", "counterparty_key": p.SelfKey, "expires_in_ms": 1}),
		"unknown kind":                  []byte(`{"kind":"gossip"}`),
		"no kind":                       []byte(`{"record":{}}`),
		"duplicate key":                 []byte(`{"kind":"presence","kind":"intent"}`),
		"duplicate key inside a record": []byte(strings.Replace(string(good), `"type":"presence"`, `"type":"presence","type":"presence"`, 1)),
		"invalid UTF-8":                 append([]byte(`{"kind":"presence","req":"`), 0xff, '"', '}'),
		"trailing data":                 append(append([]byte{}, good...), []byte(` {}`)...),
		"not an object":                 []byte(`["presence"]`),
		"extra envelope field":          edit(t, good, func(m map[string]any) { m["ip"] = "192.0.2.1" }),
		"answer carried as offer":       edit(t, relay, func(m map[string]any) { m["frame_kind"] = "answer" }),
		"blob for another match":        edit(t, relay, func(m map[string]any) { m["match_id"] = NewNonce() }),
	}
	for name, raw := range bad {
		if _, err := Parse(raw, FromClient); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// The same kind name means different things by sender.
	if _, err := Parse(relay, FromBoard); err != nil {
		t.Fatalf("board relay: %v", err)
	}
	if _, err := Parse(good, FromBoard); err == nil {
		t.Fatal("a board may not send a presence")
	}
}

func TestCheckFresh(t *testing.T) {
	w, skew := 120*time.Second, 30*time.Second
	for _, c := range []struct {
		at   time.Time
		want error
	}{
		{now, nil},
		{now.Add(-119 * time.Second), nil},
		{now.Add(-121 * time.Second), ErrStale},
		{now.Add(29 * time.Second), nil},
		{now.Add(31 * time.Second), ErrFuture},
	} {
		_, err := CheckFresh(FormatTime(c.at), now, w, skew)
		if !errors.Is(err, c.want) && !(c.want == nil && err == nil) {
			t.Errorf("%s: got %v, want %v", c.at.Sub(now), err, c.want)
		}
	}
	if _, err := CheckFresh("yesterday", now, w, skew); !errors.Is(err, ErrMalformed) {
		t.Fatal(err)
	}
}

func FuzzParse(f *testing.F) {
	a, _ := identity.NewPrivateKey(make([]byte, 32))
	p, _ := NewPresence(a, now, []string{"ws://127.0.0.1:1/"}, "")
	f.Add(mustJSON(f, map[string]any{"kind": "presence", "record": p}), uint8(0))
	f.Add([]byte(`{"kind":"hello","version":1,"pow_bits":0,"max_frame":65536,"freshness_ms":120000}`), uint8(1))
	f.Add([]byte(`{"kind":"propagate","record_kind":"presence","record":{},"hops":1,"path":["ws://a/"]}`), uint8(2))
	senders := []Sender{FromClient, FromBoard, FromPeer}
	f.Fuzz(func(t *testing.T, raw []byte, who uint8) {
		from := senders[int(who)%len(senders)]
		e, err := Parse(raw, from)
		if err != nil {
			return
		}
		// Whatever parses must survive a round trip and parse again.
		again, err := Parse(Marshal(e), from)
		if err != nil {
			t.Fatalf("round trip of %s failed: %v", raw, err)
		}
		if again.Kind != e.Kind {
			t.Fatalf("kind changed: %s -> %s", e.Kind, again.Kind)
		}
	})
}

func FuzzSignedBytes(f *testing.F) {
	f.Add([]byte(`{"b":1,"a":"x","signature":"s"}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		b, err := SignedBytes(raw)
		if err != nil {
			return
		}
		// Canonical output is a fixed point and never keeps the signature.
		b2, err := SignedBytes(b)
		if err != nil || string(b2) != string(b) {
			t.Fatalf("not a fixed point: %s -> %s (%v)", b, b2, err)
		}
		var m map[string]json.RawMessage
		if json.Unmarshal(b, &m) == nil {
			if _, ok := m["signature"]; ok {
				t.Fatal("signature kept")
			}
		}
	})
}

func TestPoW(t *testing.T) {
	a := key(t)
	p, _ := NewPresence(a, now, nil, "")
	pow, err := SolvePoW(p.Signature, 12)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckPoW(p.Signature, pow, 12); err != nil {
		t.Fatal(err)
	}
	// Work for one record is worth nothing for another.
	q, _ := NewPresence(a, now, nil, "")
	weak := 0
	for i := 0; i < 20; i++ {
		if CheckPoW(q.Signature, pow, 12) != nil {
			weak++
		}
		q, _ = NewPresence(a, now, nil, "")
	}
	if weak < 19 {
		t.Fatalf("work carried over to other records %d times in 20", 20-weak)
	}
	if err := CheckPoW(p.Signature, "", 1); !errors.Is(err, ErrPoW) {
		t.Fatal("missing work accepted")
	}
	if err := CheckPoW(p.Signature, "", 0); err != nil {
		t.Fatal("work demanded at difficulty 0")
	}
}
