// Package identity holds the one thing every other part of keyhole trusts:
// an Ed25519 key pair. The public key is the device's address, written in
// z-base-32 so that it fits a DNS label and survives being read aloud.
//
// Verification here is strict RFC 8032 (canonical S, canonical and
// non-small-order points), because Go's crypto/ed25519 alone accepts
// signatures that other implementations (ed25519-dalek's verify_strict,
// which openhost uses) reject; a signature must mean the same thing on
// both sides of an interop boundary.
package identity
