// Package stunturn is keyhole's STUN and TURN server: reflexive
// addresses for hole punching, and relays for the networks where
// punching fails (symmetric NATs, UDP-hostile firewalls, relay-only
// devices).
//
// A board serves STUN only, on its own UDP port, so devices learn their
// public address from the board they already use. A community node also
// relays: it hands out short-lived TURN REST credentials
// (draft-uberti-behave-turn-rest-00, see Server.Credentials) from its
// /token endpoint in exchange for proof of work, and this package
// checks them without any shared state beyond the secret.
//
// A relay is bandwidth someone else pays for, so every allocation is
// bounded: in number (per server, per credential, per client IP), in
// total bytes, and in rate. Traffic over a bound is dropped, not
// queued; allocations over a bound are refused with 486 (per user or
// IP) or 508 (whole server). Only UDP relays are offered (RFC 6062 TCP
// relays would escape the byte accounting); TCP is offered only as the
// client-to-server leg, for networks that block UDP.
//
// The protocol work is pion/turn's; this package adds the credential
// check (expiry follows Options.Now, failures are logged at debug and
// never with secrets), the quotas, and a Close that frees every port
// before it returns.
package stunturn
