package natlab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
)

// Host is one machine of the lab: a network namespace with one interface,
// eth0. Tests run a keyhole binary in it with Command, or open sockets in
// it from the test process with ListenUDP, Listen, DialContext or Run.
type Host struct {
	// Name is the host's network namespace, for `ip netns exec` when
	// debugging a failed test by hand (while it is paused).
	Name string
	// IP is the host's own address: on the public segment for public
	// hosts, on its LAN (10.0.n.2) behind a NAT.
	IP netip.Addr
	// PublicIP is where the host's traffic appears on the public segment:
	// IP for a public host, the router's WAN address behind a NAT. A peer
	// that knows only this cannot reach the host until the NAT lets it.
	PublicIP netip.Addr
	// NAT is the type of the router between the host and the public
	// segment; None for public hosts.
	NAT NATType
	// Router is the NAT router (IP is its WAN address), so a failing test
	// can dump its state, e.g. Router.Command(ctx, "nft", "list",
	// "ruleset"). Nil for public hosts.
	Router *Host
}

// String returns the namespace name and address, for test logs.
func (h *Host) String() string {
	if h.Router == nil {
		return fmt.Sprintf("%s(%s)", h.Name, h.IP)
	}
	return fmt.Sprintf("%s(%s behind %s %s)", h.Name, h.IP, h.NAT, h.PublicIP)
}

// Command prepares a command that runs inside the host's namespace (via
// `ip netns exec`), such as a keyhole binary under test. The caller owns
// it and must Wait; whatever still runs when the lab closes is killed.
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	ip, err := tool("ip")
	if err != nil {
		ip = "ip" // Start reports the lookup failure
	}
	return exec.CommandContext(ctx, ip, append([]string{"netns", "exec", h.Name, name}, args...)...)
}

// Run calls fn on an OS thread switched into the host's namespace, so that
// sockets fn creates belong to the host while the test keeps a single
// process, shared memory and the race detector. Only what fn does itself
// runs in the namespace: goroutines it starts do not, and neither does a
// name lookup, so use IP literals. The calling goroutine's thread is
// never switched.
func (h *Host) Run(fn func() error) error {
	return inNetns(h.Name, fn)
}

// ListenUDP opens a UDP socket on all of the host's addresses (port 0
// picks a free one), for QUIC and KPS listeners and STUN servers; IPv4
// only, as the lab is.
func (h *Host) ListenUDP(port int) (*net.UDPConn, error) {
	var c *net.UDPConn
	err := h.Run(func() error {
		var err error
		c, err = net.ListenUDP("udp4", &net.UDPAddr{Port: port})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("natlab: %s: %w", h.Name, err)
	}
	return c, nil
}

// Listen opens a TCP listener on all of the host's addresses, for HTTP
// servers such as a board or a Pkarr relay.
func (h *Host) Listen(port int) (net.Listener, error) {
	var ln net.Listener
	err := h.Run(func() error {
		var err error
		ln, err = net.Listen("tcp4", fmt.Sprintf(":%d", port))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("natlab: %s: %w", h.Name, err)
	}
	return ln, nil
}

// DialContext connects from the host, with the signature of
// net.Dialer.DialContext so it can be an http.Transport's DialContext.
// address must be an IP literal with a port.
func (h *Host) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	var c net.Conn
	err := h.Run(func() error {
		var err error
		c, err = new(net.Dialer).DialContext(ctx, network, address)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("natlab: %s: %w", h.Name, err)
	}
	return c, nil
}
