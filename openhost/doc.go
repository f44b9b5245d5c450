// Package openhost speaks openhost's protocol so that keyhole hosts and
// clients interoperate with openhost's own daemon, CLI and browser
// extension: reaching a self-hosted HTTP app by the host's key.
//
// This file set holds the cryptographic pieces both sides share: the
// allowlist hash that keeps paired client keys out of any published
// record, and the channel binding that ties the DTLS session to both
// identity keys (openhost spec 01 and reference/openhost notes section 1).
package openhost
