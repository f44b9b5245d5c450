// Package node is the community node: the one process a volunteer runs
// so that others can connect. It combines a blind rendezvous board, a
// Pkarr relay, STUN and TURN, and a signaling mesh: rooms where every
// post to a hash reaches every subscriber of that hash on any node.
//
// Nodes find each other on the Mainline DHT, under a well-known
// info-hash, so there is no list to maintain and no central server. A
// node has no accounts; what costs it something costs the client proof
// of work instead, priced by the node's own load, so a busy node
// advertises a higher price and clients spread to quieter ones.
//
// The HTTP protocol is specified in node/PROTOCOL.md; node/client is the
// Go client and web/ the browser one.
package node
