// Package board is a blind rendezvous board: the Open Relay Protocol
// (ORP) server that lets two devices which know only each other's keys
// meet and set up a direct WebRTC connection, without the board being
// able to read anything that matters.
//
// The board holds one RAM-only FIFO table of presence records ("I am
// here") and intent records ("I want to reach that key"), indexed by key
// so a match is O(1). A match opens a short-lived channel under a random
// match_id through which the two devices swap their bound transport keys
// and then SDP sealed to those keys; the board relays ciphertext it
// cannot open and forgets the channel at the first signaling answer or
// after ChannelTTL. Nothing is persisted, and logs carry counts only.
//
// Its blindness does not depend on the board behaving: the schemas
// (package wire) forbid every field that could carry a secret, and the
// client (package board/client) seals and filters before anything is
// sent. The board's own checks (signatures, freshness, replay, rate
// limits, participants) protect the board and the devices from each
// other, not the devices' secrets from the board.
package board
