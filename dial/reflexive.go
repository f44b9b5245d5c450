package dial

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/pion/stun/v4"
)

// Reflexive asks the STUN server at stunURL ("stun:host:port") which
// address this machine's UDP traffic comes from: its public address when
// it is behind a NAT. A device watches it to notice a network change that
// its own interfaces do not show (the NAT's public address moved).
func Reflexive(ctx context.Context, stunURL string) (netip.AddrPort, error) {
	hostport, ok := strings.CutPrefix(stunURL, "stun:")
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("dial: %q is not a stun: URL", stunURL)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "udp4", hostport)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("dial: STUN %s: %w", hostport, err)
	}
	defer conn.Close()
	deadline := time.Now().Add(3 * time.Second)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	msg := stun.MustBuild(stun.TransactionID, stun.BindingRequest)
	buf := make([]byte, 1500)
	// Retransmit like a STUN client: 250 ms, then doubling, until the
	// deadline.
	for wait := 250 * time.Millisecond; time.Now().Before(deadline); wait *= 2 {
		if _, err := conn.Write(msg.Raw); err != nil {
			return netip.AddrPort{}, fmt.Errorf("dial: STUN %s: %w", hostport, err)
		}
		rd := time.Now().Add(wait)
		if rd.After(deadline) {
			rd = deadline
		}
		conn.SetReadDeadline(rd)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				break // retransmit, or give up at the deadline
			}
			var res stun.Message
			if res.UnmarshalBinary(buf[:n]) != nil || res.TransactionID != msg.TransactionID {
				continue
			}
			var xor stun.XORMappedAddress
			if err := xor.GetFrom(&res); err != nil {
				return netip.AddrPort{}, fmt.Errorf("dial: STUN %s answered without an address: %w", hostport, err)
			}
			ip, ok := netip.AddrFromSlice(xor.IP)
			if !ok {
				return netip.AddrPort{}, errors.New("dial: STUN answered with a malformed address")
			}
			return netip.AddrPortFrom(ip.Unmap(), uint16(xor.Port)), nil
		}
	}
	return netip.AddrPort{}, fmt.Errorf("dial: STUN %s did not answer", hostport)
}
