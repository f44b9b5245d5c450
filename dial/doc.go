// Package dial connects to a device given only its key, wherever the
// device sits: it resolves the device's record and races the ways in
// that the record offers, and the first connection whose peer proves the
// key wins.
//
// The ladder, fastest first: the direct KPS addresses in the record (a
// device with a public address or a forwarded port); an ICE hole punch
// through one of the device's boards, with server-reflexive candidates
// from the community nodes' STUN servers (devices behind NATs); and a
// TURN relay from a node (symmetric NATs, UDP-hostile networks). The
// punch and the relay are one ICE session: it may start on the relay
// and move to a punched path when one succeeds later (ICE renomination),
// without breaking open streams. Onion services come later.
//
// Whatever wins is a kps.Conn with the same streams, datagrams and
// identity proof, so the layers above never care how it was made.
package dial
