// Package wire is the Open Relay Protocol as keyhole speaks it: the
// JSON messages between devices and a blind rendezvous board, the
// schemas that close them, and how records are signed.
//
// A board is untrusted by construction, so everything here is designed
// around what it may see. Presence and intent records carry public keys,
// a nonce and a time, nothing else; the schemas forbid every other field.
// Transport keys travel only inside a match's channel, and SDP only
// sealed to the recipient's transport key (package seal).
//
// Every record (presence, intent, match offer, match answer) is signed
// with its author's Ed25519 key over the canonical JSON (package
// canonjson: sorted keys, compact) of the record without its signature
// field, and carries its own type, so a signature over one kind of
// record cannot be passed off as another.
//
// The protocol, one message per WebSocket text frame:
//
//	device -> board: presence{record} | intent{record} | relay{match_id, frame_kind, blob}
//	board -> device: hello | ack | rejected{code, reason} | evicted | match{match_id, role, counterparty_key}
//	                 | relay{match_id, frame_kind, blob} | channel_closed{match_id, reason} | referral{board}
//	board -> board:  peer_hello{board} | propagate{record_kind, record, hops, path}
//
// schema/orp.schema.json is the normative description of each message.
package wire
