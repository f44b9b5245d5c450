package natlab

import (
	"fmt"
	"net/netip"
	"strings"
)

// NATType names a NAT behaviour in the terms of RFC 4787 (mapping and
// filtering), so a dial test can state which combination it proves
// reachable. The values are the usual STUN-era names, as they appear in
// test names and logs.
type NATType string

const (
	// None puts the host directly on the public segment with a public
	// address: the "server on the internet" end of a dial.
	None NATType = "none"
	// FullCone maps endpoint-independently (the port is preserved) and
	// filters endpoint-independently: once the host has sent from a port,
	// anyone may send to that port on the router's WAN address.
	FullCone NATType = "full-cone"
	// Restricted maps endpoint-independently and filters by address: a
	// datagram gets in only from an address the host has sent to from
	// that port, from any port there.
	Restricted NATType = "restricted"
	// PortRestricted maps endpoint-independently and filters by address
	// and port: only the exact address:port the host has sent to gets in.
	// Most home routers behave like this.
	PortRestricted NATType = "port-restricted"
	// Symmetric maps endpoint-dependently (a random external port for each
	// destination) and filters by address and port: the case hole
	// punching cannot open between two such hosts, which needs a relay.
	Symmetric NATType = "symmetric"
)

func (n NATType) valid() bool {
	switch n {
	case None, FullCone, Restricted, PortRestricted, Symmetric:
		return true
	}
	return false
}

// mappingTimeout is how long the full-cone and restricted routers keep
// letting datagrams in after the host last sent from a port: the 2 minutes
// RFC 4787 (REQ-5) asks of a NAT's UDP mapping timer.
const mappingTimeout = "120s"

// routerRules returns the nftables ruleset of a NAT router for one host
// behind it. Interfaces are "wan" (the public segment) and "lan".
//
// All types share the forward and input chains: the router forwards what
// the LAN sends out, what belongs to a connection conntrack knows, and
// what prerouting redirected to the host (ct status dnat); anything else
// that arrives on the WAN is dropped silently, as consumer NATs do, and
// before conntrack confirms it: a confirmed entry for an inbound attempt
// would make the router pick a new external port when the host later
// sends to that peer, breaking both port preservation and the punch.
//
// Mapping comes from the postrouting snat. Without a flag Linux keeps the
// host's source port whenever that leaves the conntrack tuple unique,
// which for one host behind the router is always: endpoint-independent
// mapping. "fully-random" picks a fresh random port for every new
// conntrack, that is for every new destination: endpoint-dependent.
//
// Filtering is conntrack's (address and port dependent) unless widened:
// full-cone and restricted remember, after snat (hence priority srcnat +
// 10, where the packet already carries the external port), which
// external ports (full-cone) or which remote address and external port
// pairs (restricted) the host has sent from, and dnat a new inbound
// datagram that matches back to the host. The sets expire entries
// mappingTimeout after the host last sent.
func routerRules(nat NATType, wan, host netip.Addr, lan netip.Prefix) string {
	var set, match, remember, snatFlags string
	switch nat {
	case FullCone:
		set = "type inet_service"
		match = "udp dport @mapped"
		remember = "udp sport"
	case Restricted:
		set = "type ipv4_addr . inet_service"
		match = "ip saddr . udp dport @mapped"
		remember = "ip daddr . udp sport"
	case Symmetric:
		snatFlags = " fully-random"
	}
	var b strings.Builder
	b.WriteString("table ip natlab {\n")
	if set != "" {
		fmt.Fprintf(&b, `	set mapped {
		%s
		flags dynamic, timeout
		timeout %s
		size 65535
	}
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		iifname "wan" ip daddr %s %s dnat to %s
	}
	chain remember {
		type filter hook postrouting priority srcnat + 10; policy accept;
		oifname "wan" update @mapped { %s }
	}
`, set, mappingTimeout, wan, match, host, remember)
	}
	fmt.Fprintf(&b, `	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "wan" ip saddr %s snat to %s%s
	}
	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		iifname "lan" oifname "wan" accept
		iifname "wan" oifname "lan" ct status dnat accept
	}
	chain input {
		type filter hook input priority filter; policy accept;
		iifname "wan" ct state established,related accept
		iifname "wan" drop
	}
}
`, lan, wan, snatFlags)
	return b.String()
}

// probeRules exercises every kernel feature the routers and impairments
// use (nf_tables, NAT, dynamic sets with timeouts, numgen, conntrack
// state, the bridge family), and deletes itself in the same transaction:
// loading it proves the kernel can run a lab, and leaves nothing behind.
const probeRules = `table ip natlab_probe {
	set s {
		type ipv4_addr . inet_service
		flags dynamic, timeout
		timeout 1s
	}
	chain pre {
		type nat hook prerouting priority dstnat; policy accept;
		iifname "wan" ip daddr 192.0.2.2 ip saddr . udp dport @s dnat to 192.0.2.1
	}
	chain post {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "wan" snat to 192.0.2.1 fully-random
	}
	chain f {
		type filter hook postrouting priority srcnat + 10; policy accept;
		oifname "wan" update @s { ip daddr . udp sport }
		oifname "wan" numgen random mod 100 < 1 drop
	}
	chain i {
		type filter hook input priority filter; policy accept;
		iifname "wan" ct state established,related accept
	}
}
table bridge natlab_probe {
	chain f {
		type filter hook forward priority filter; policy accept;
		iifname "p1" meta protocol ip numgen random mod 100 < 1 drop
	}
}
delete table ip natlab_probe
delete table bridge natlab_probe
`
