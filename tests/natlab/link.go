package natlab

import (
	"fmt"
	"sync"
	"time"
)

// LinkOptions impair the link between the public segment and a private
// LAN's router (or a public host made by Private(None, ...)), the link
// that in real life is a home uplink or a mobile network. The zero value
// is a perfect link.
type LinkOptions struct {
	// LossPercent drops that share of IPv4 packets at random, in each
	// direction independently: a request and its answer both get through
	// with probability (1-N/100)². ARP is never dropped, and senders see
	// no error, as on a real lossy link. Uses nftables (numgen random) on
	// the switch's bridge, so it works on every kernel the lab runs on.
	// Must be 0 to 100.
	LossPercent int
	// Delay is added to each direction (a round trip grows by twice
	// Delay), with netem on both ends of the link. Kernels without
	// sch_netem cannot delay: the lab then logs that the delay is NOT
	// applied and goes on without it; tests that depend on delay check
	// NetemAvailable and skip.
	Delay time.Duration
}

// lossRules drops percent of the IPv4 packets crossing switch port port,
// in each direction. The drop happens on the bridge, in the switch
// namespace, as on a real lossy wire: the sender's sendto succeeds.
// (nftables in the host's own namespace would not do: a locally sent
// packet dropped there fails sendto with EPERM, which no real network
// does.) "add" is idempotent, so every impaired link appends its two
// rules to the one table.
func lossRules(port string, percent int) string {
	return fmt.Sprintf(`add table bridge natlab_loss
add chain bridge natlab_loss forward { type filter hook forward priority filter; policy accept; }
add rule bridge natlab_loss forward iifname %[1]q meta protocol ip numgen random mod 100 < %[2]d drop
add rule bridge natlab_loss forward oifname %[1]q meta protocol ip numgen random mod 100 < %[2]d drop
`, port, percent)
}

// impair applies o to the link whose ends are dev in namespace ns and port
// in the switch namespace.
func (l *Lab) impair(ns, dev, port string, o LinkOptions) error {
	if o.LossPercent < 0 || o.LossPercent > 100 {
		return fmt.Errorf("natlab: LossPercent %d is not within 0..100", o.LossPercent)
	}
	if o.Delay < 0 {
		return fmt.Errorf("natlab: negative Delay %v", o.Delay)
	}
	if o.LossPercent > 0 {
		if err := nft(l.sw, lossRules(port, o.LossPercent)); err != nil {
			return err
		}
	}
	if o.Delay == 0 {
		return nil
	}
	if !NetemAvailable() {
		l.logf("natlab: %s: link delay %v NOT applied: %v", ns, o.Delay, netemErr)
		return nil
	}
	us := fmt.Sprintf("%dus", max(o.Delay.Microseconds(), 1))
	if _, err := run("", "tc", "-n", ns, "qdisc", "add", "dev", dev, "root", "netem", "delay", us); err != nil {
		return err
	}
	_, err := run("", "tc", "-n", l.sw, "qdisc", "add", "dev", port, "root", "netem", "delay", us)
	return err
}

var (
	netemOnce sync.Once
	netemErr  error  // why netem is unavailable; nil when it is available
	netemNS   string // the probe's namespace, gone once probed
)

// NetemAvailable reports whether the kernel can delay packets (sch_netem),
// so that tests measuring latency can skip on kernels built without it
// (some CI and microVM kernels). It needs the same privileges as New and
// reports false without them. The answer is probed once, in a throwaway
// namespace, and cached.
func NetemAvailable() bool {
	netemOnce.Do(func() { netemErr = probeNetem() })
	return netemErr == nil
}

func probeNetem() error {
	if reason := unsupported(); reason != "" {
		return fmt.Errorf("natlab: %s", reason)
	}
	if _, err := tool("tc"); err != nil {
		return err
	}
	id, lock, err := acquireID()
	if err != nil {
		return err
	}
	defer releaseID(lock)
	ns := "kh-" + id + "-nt"
	netemNS = ns
	if _, err := run("", "ip", "netns", "add", ns); err != nil {
		return err
	}
	defer removeNamespaces([]string{ns})
	if _, err := run("", "tc", "-n", ns, "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"); err != nil {
		return fmt.Errorf("sch_netem missing from the kernel: %w", err)
	}
	return nil
}

// Block drops every IPv4 packet between the public addresses of a and b
// (a host's router's WAN address when it is behind a NAT) on the public
// segment, both ways, until the returned function lifts it: a firewall
// between two sites that still both reach the public hosts. Tests use it
// to make ICE settle on a relay, then lift it to watch the connection
// move to a direct pair.
func (l *Lab) Block(a, b *Host) (unblock func() error, err error) {
	l.mu.Lock()
	l.blocks++
	table := fmt.Sprintf("natlab_block%d", l.blocks)
	l.mu.Unlock()
	rules := fmt.Sprintf(`add table bridge %[1]s
add chain bridge %[1]s forward { type filter hook forward priority filter - 1; policy accept; }
add rule bridge %[1]s forward meta protocol ip ip saddr %[2]s ip daddr %[3]s drop
add rule bridge %[1]s forward meta protocol ip ip saddr %[3]s ip daddr %[2]s drop
`, table, a.PublicIP, b.PublicIP)
	if err := nft(l.sw, rules); err != nil {
		return nil, err
	}
	var once sync.Once
	return func() error {
		var err error
		once.Do(func() { err = nft(l.sw, "delete table bridge "+table+"\n") })
		return err
	}, nil
}
