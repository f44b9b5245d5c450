package node

import "github.com/keyhole-p2p/keyhole/identity"

// MeshSigned lets tests sign mesh messages as a node (or a forger) would.
func MeshSigned(room, id string, hops int, body string) []byte {
	return meshSigned(room, meshMessage{ID: id, Hops: hops, Body: body})
}

// Identity is the node's private key, for tests that act as the node.
func (s *Server) Identity() *identity.PrivateKey { return s.opts.Identity }
