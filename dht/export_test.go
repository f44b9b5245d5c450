package dht

import (
	"net"

	adht "github.com/anacrolix/dht/v2"
)

var QueryRateLimitingZero = adht.QueryRateLimiting{}

func newAddr(n *Node) adht.Addr {
	return adht.NewAddr(net.UDPAddrFromAddrPort(n.Addr()))
}
