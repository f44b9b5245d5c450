// Package kps implements Key Pinned Streams: an authenticated, encrypted
// connection to an endpoint identified by the hash of its self-signed
// certificate (<ip>:<port>:<certhash>), carrying unnamed reliable byte
// streams and unreliable datagrams.
//
// One UDP port serves both transports: WebRTC-direct (ICE-lite, DTLS,
// SCTP data channels, with the answer synthesized from the address, so
// browsers can dial with no signaling server) and QUIC (for native
// clients). The same certificate is presented in the DTLS and the TLS 1.3
// handshake, so one certhash pins both. The wire format follows the KPS
// specification (reference/kps/SPEC.md) so that KPS clients and servers
// interoperate with keyhole.
//
// KPS itself authenticates only the listener, by certhash. keyhole's
// identity keys are proven on top of a connection by the auth exchange in
// auth.go, which a listener may require or not.
package kps
