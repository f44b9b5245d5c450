// Package natlab builds a small private internet out of Linux network
// namespaces, so that keyhole's "dial any key behind any NAT" tests run
// through real kernel NATs (nftables and conntrack), with real sockets,
// instead of a simulation that shares the assumptions of the code under
// test.
//
// # Topology
//
// A lab with two public hosts and two private LANs:
//
//	                     kh-<id>-sw: bridge br0, public segment 203.0.113.0/24
//	    +----------------+----------------+------------------+------------------+
//	    | p1             | p2             | r1               | r2               |
//	    | eth0           | eth0           | wan .101         | wan .102         |
//	kh-<id>-p1       kh-<id>-p2       kh-<id>-r1         kh-<id>-r2
//	203.0.113.10     203.0.113.11     NAT router         NAT router
//	(Public)         (Public)         | lan 10.0.1.1     | lan 10.0.2.1
//	                                  | eth0             | eth0
//	                                  kh-<id>-h1         kh-<id>-h2
//	                                  10.0.1.2           10.0.2.2
//	                                  (Private)          (Private)
//
// Every box is a network namespace and every line a veth pair. The switch
// namespace holds the bridge; public hosts and router WANs plug into it.
// Each private LAN is a router namespace (forwarding on, NAT rules in
// nftables) and a host namespace whose default route is the router.
// Nothing is added to the machine's own network namespace, so a test can
// reach nothing outside the lab and a crashed test leaks nothing into the
// machine's networking; addresses come from TEST-NET-3 and 10.0.0.0/8 and
// exist only inside the lab. There is no route between LANs and no route
// to any LAN from the public segment, so the only way in is through a
// NAT. IPv6 is off in every namespace.
//
// Namespaces are named kh-<6 hex digits>-<role> (sw, p<n>, r<n>, h<n>),
// unique per lab. New removes those left behind by a lab whose process
// died: each lab holds a lock file in /run/keyhole-natlab while it lives.
//
// # NAT types
//
// See NATType; the exact nftables rules, and why each is there, are in
// nat.go (routerRules) and link.go (lossRules). Mapping and
// filtering follow RFC 4787: full-cone, restricted and port-restricted
// preserve the host's port (endpoint-independent mapping) and differ in
// what they let in; symmetric picks a random port per destination. TCP
// gets the same mapping, but only UDP gets the full-cone and restricted
// filtering: inbound TCP is limited to the answers of connections the
// host opened, whatever the type.
//
// # Running
//
//	sudo go test ./tests/natlab/
//
// The tests in this package check that each router behaves as labelled,
// using real UDP from inside the namespaces. Without root, ip, nft or
// kernel support for namespaces and nftables NAT, New skips the test
// with a line saying why; when the environment variable CI is "true" it
// fails it instead, so CI cannot pass by skipping. Link delay needs
// sch_netem: without it (see NetemAvailable) the lab logs that the delay
// is not applied and delay tests skip. Packet loss uses nftables and
// always works.
package natlab
