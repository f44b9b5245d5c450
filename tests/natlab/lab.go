package natlab

import (
	"errors"
	"fmt"
	"io/fs"
	"log"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
)

// Addressing plan. Every address exists only inside the lab's namespaces;
// the root namespace never gets a route, an address or an interface.
var (
	// publicNet is the public segment (TEST-NET-3, RFC 5737), bridged in
	// the switch namespace. Public hosts get .10 to .99, router WANs .101
	// to .199 (router n has .100+n).
	publicNet = netip.MustParsePrefix("203.0.113.0/24")
)

const (
	firstPublicHost = 10
	maxPublicHosts  = 90
	maxLANs         = 99
)

// lanPrefix is private LAN n: 10.0.n.0/24, router 10.0.n.1, host 10.0.n.2.
func lanPrefix(n int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, byte(n), 0}), 24)
}

func publicAddr(last int) netip.Addr {
	a := publicNet.Addr().As4()
	a[3] = byte(last)
	return netip.AddrFrom4(a)
}

// Options configures a Lab. The zero value is ready to use.
type Options struct {
	// Logf receives the lab's notes: its id, stale namespaces it removed,
	// impairments it could not apply. If nil, the test's Logf.
	Logf func(format string, args ...any)
}

// Lab is a private internet in network namespaces: one public segment and
// any number of hosts on it or behind NAT routers. It exists so that
// dialing by key can be tested through real kernel NATs rather than
// simulated ones. A Lab owns every namespace it made and removes them all
// on Close, which New registers with the test's Cleanup.
type Lab struct {
	tb   testing.TB
	logf func(string, ...any)
	id   string
	sw   string   // the switch namespace, holding bridge br0
	lock *os.File // held for the lab's life; see lockDir

	mu         sync.Mutex // guards the following fields
	namespaces []string   // every namespace made, in creation order
	publics    int        // public addresses handed out
	lans       int        // private LANs made
	blocks     int        // Block tables made
	closed     bool
}

// unsupported says why this process cannot build a lab, or "".
func unsupported() string {
	if runtime.GOOS != "linux" {
		return "network namespaces need Linux, this is " + runtime.GOOS
	}
	if os.Geteuid() != 0 {
		return fmt.Sprintf("needs root for network namespaces (euid %d)", os.Geteuid())
	}
	for _, t := range []string{"ip", "nft"} {
		if _, err := tool(t); err != nil {
			return fmt.Sprintf("%v (apt-get install iproute2 nftables)", err)
		}
	}
	return ""
}

// skipOrFatal skips the test when the machine cannot run a lab, loudly,
// except under CI, where a lab test that silently never runs is a bug.
func skipOrFatal(tb testing.TB, reason string) {
	tb.Helper()
	if os.Getenv("CI") == "true" {
		tb.Fatalf("natlab: %s (CI=true, so this fails instead of skipping)", reason)
	}
	tb.Skipf("natlab: SKIPPED, %s; run as root: sudo go test ./tests/natlab/", reason)
}

// New builds an empty lab: the switch namespace with the public segment's
// bridge. It skips the test when the machine cannot run one (not root, no
// ip or nft, no network namespaces, no nftables NAT in the kernel), and
// fails it instead when the environment variable CI is "true". It first
// removes namespaces left by labs whose process died. New, Public and
// Private fail tb on error, so call them from the test's goroutine.
func New(tb testing.TB, o Options) *Lab {
	tb.Helper()
	if reason := unsupported(); reason != "" {
		skipOrFatal(tb, reason)
	}
	if o.Logf == nil {
		o.Logf = tb.Logf
	}
	l, err := Open(o)
	var ue *UnsupportedError
	if errors.As(err, &ue) {
		skipOrFatal(tb, ue.Reason)
	}
	if err != nil {
		tb.Fatal(err)
	}
	l.tb = tb
	tb.Cleanup(func() {
		if err := l.Close(); err != nil {
			tb.Errorf("natlab: close: %v", err)
		}
	})
	return l
}

// UnsupportedError means this machine cannot run a lab, and why.
type UnsupportedError struct{ Reason string }

func (e *UnsupportedError) Error() string { return "natlab: " + e.Reason }

// Open builds an empty lab outside a test: for the natlab command, which
// keeps one up for a person to use. The caller must Close it; a lab
// whose process dies is removed by the next Open or New. Options.Logf
// nil means log.Printf.
func Open(o Options) (*Lab, error) {
	if reason := unsupported(); reason != "" {
		return nil, &UnsupportedError{reason}
	}
	logf := o.Logf
	if logf == nil {
		logf = log.Printf
	}
	removeStale(logf)
	id, lock, err := acquireID()
	if err != nil {
		return nil, err
	}
	l := &Lab{logf: logf, id: id, lock: lock}
	l.sw = l.nsName("sw")
	fail := func(err error) (*Lab, error) {
		l.Close()
		return nil, err
	}
	if err := l.addNamespace(l.sw); err != nil {
		return fail(&UnsupportedError{fmt.Sprintf("cannot create a network namespace: %v", err)})
	}
	if err := nft(l.sw, probeRules); err != nil {
		return fail(&UnsupportedError{fmt.Sprintf("the kernel cannot run nftables NAT: %v", err)})
	}
	// nf_call_*: with br_netfilter loaded, bridged frames would otherwise
	// cross the switch namespace's (empty) netfilter hooks and conntrack.
	if err := ipBatch(l.sw,
		"link add br0 type bridge nf_call_iptables 0 nf_call_ip6tables 0 nf_call_arptables 0",
		"link set br0 up",
	); err != nil {
		return fail(err)
	}
	logf("natlab: lab kh-%s: public segment %s on br0 in %s", id, publicNet, l.sw)
	return l, nil
}

func (l *Lab) nsName(role string) string { return "kh-" + l.id + "-" + role }

// addNamespace creates a namespace with loopback up and IPv6 off (no
// router advertisements, no duplicate address detection, no second
// address family for a test to reason about), recording it first so that
// Close removes even a half-made one.
func (l *Lab) addNamespace(name string) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return errors.New("natlab: lab is closed")
	}
	l.namespaces = append(l.namespaces, name)
	l.mu.Unlock()
	if _, err := run("", "ip", "netns", "add", name); err != nil {
		return err
	}
	if err := sysctl(name, "net.ipv6.conf.all.disable_ipv6", "1", "net.ipv6.conf.default.disable_ipv6", "1"); err != nil {
		return err
	}
	return ipBatch(name, "link set lo up")
}

// sysctl sets key/value pairs inside namespace ns through /proc/sys, which
// shows the values of the namespace of the thread that opens it.
func sysctl(ns string, kv ...string) error {
	return inNetns(ns, func() error {
		for i := 0; i+1 < len(kv); i += 2 {
			p := filepath.Join("/proc/sys", strings.ReplaceAll(kv[i], ".", "/"))
			err := os.WriteFile(p, []byte(kv[i+1]), 0o644)
			if errors.Is(err, fs.ErrNotExist) && strings.HasPrefix(kv[i], "net.ipv6.") {
				continue // a kernel without IPv6 is as good as IPv6 off
			}
			if err != nil {
				return fmt.Errorf("natlab: sysctl %s=%s in %s: %w", kv[i], kv[i+1], ns, err)
			}
		}
		return nil
	})
}

// Public adds a host to the public segment, where the servers every dial
// needs (a DHT testnet, a board, STUN and TURN) run, each reachable by
// every host in the lab. Call it once per server that needs its own
// address.
func (l *Lab) Public() *Host {
	l.tb.Helper()
	h, err := l.AddPublic()
	if err != nil {
		l.tb.Fatal(err)
	}
	return h
}

// AddPublic is Public for a lab made with Open.
func (l *Lab) AddPublic() (*Host, error) { return l.addPublic(LinkOptions{}) }

// Private adds a host behind a NAT router of the given type on a LAN of
// its own, with o impairing the router's WAN link. Private(None, o) puts
// the host straight on the public segment instead, with o impairing its
// own link.
func (l *Lab) Private(nat NATType, o LinkOptions) *Host {
	l.tb.Helper()
	h, err := l.AddPrivate(nat, o)
	if err != nil {
		l.tb.Fatal(err)
	}
	return h
}

// AddPrivate is Private for a lab made with Open.
func (l *Lab) AddPrivate(nat NATType, o LinkOptions) (*Host, error) {
	switch {
	case nat == None:
		return l.addPublic(o)
	case nat.valid():
		return l.addPrivate(nat, o)
	}
	return nil, fmt.Errorf("natlab: unknown NAT type %q", nat)
}

func (l *Lab) addPublic(o LinkOptions) (*Host, error) {
	l.mu.Lock()
	if l.publics == maxPublicHosts {
		l.mu.Unlock()
		return nil, fmt.Errorf("natlab: the lab has room for %d public hosts", maxPublicHosts)
	}
	l.publics++
	n := l.publics
	l.mu.Unlock()
	port := fmt.Sprintf("p%d", n)
	name := l.nsName(port)
	ip := publicAddr(firstPublicHost + n - 1)
	if err := l.addNamespace(name); err != nil {
		return nil, err
	}
	if err := ipBatch(l.sw,
		fmt.Sprintf("link add %s type veth peer name eth0 netns %s", port, name),
		fmt.Sprintf("link set %s master br0", port),
		fmt.Sprintf("link set %s up", port),
	); err != nil {
		return nil, err
	}
	if err := ipBatch(name,
		fmt.Sprintf("addr add %s/%d dev eth0", ip, publicNet.Bits()),
		"link set eth0 up",
	); err != nil {
		return nil, err
	}
	if err := l.impair(name, "eth0", port, o); err != nil {
		return nil, err
	}
	return &Host{Name: name, IP: ip, PublicIP: ip, NAT: None}, nil
}

func (l *Lab) addPrivate(nat NATType, o LinkOptions) (*Host, error) {
	l.mu.Lock()
	if l.lans == maxLANs {
		l.mu.Unlock()
		return nil, fmt.Errorf("natlab: the lab has room for %d private LANs", maxLANs)
	}
	l.lans++
	n := l.lans
	l.mu.Unlock()
	port := fmt.Sprintf("r%d", n)
	rname, hname := l.nsName(port), l.nsName(fmt.Sprintf("h%d", n))
	wan := publicAddr(100 + n)
	lan := lanPrefix(n)
	gw := lan.Addr().Next()
	ip := gw.Next()
	if err := l.addNamespace(rname); err != nil {
		return nil, err
	}
	if err := sysctl(rname, "net.ipv4.ip_forward", "1"); err != nil {
		return nil, err
	}
	if err := l.addNamespace(hname); err != nil {
		return nil, err
	}
	if err := ipBatch(l.sw,
		fmt.Sprintf("link add %s type veth peer name wan netns %s", port, rname),
		fmt.Sprintf("link set %s master br0", port),
		fmt.Sprintf("link set %s up", port),
	); err != nil {
		return nil, err
	}
	if err := ipBatch(rname,
		fmt.Sprintf("link add lan type veth peer name eth0 netns %s", hname),
		fmt.Sprintf("addr add %s/%d dev wan", wan, publicNet.Bits()),
		fmt.Sprintf("addr add %s/%d dev lan", gw, lan.Bits()),
		"link set wan up",
		"link set lan up",
	); err != nil {
		return nil, err
	}
	if err := ipBatch(hname,
		fmt.Sprintf("addr add %s/%d dev eth0", ip, lan.Bits()),
		"link set eth0 up",
		fmt.Sprintf("route add default via %s", gw),
	); err != nil {
		return nil, err
	}
	if err := nft(rname, routerRules(nat, wan, ip, lan)); err != nil {
		return nil, err
	}
	if err := l.impair(rname, "wan", port, o); err != nil {
		return nil, err
	}
	router := &Host{Name: rname, IP: wan, PublicIP: wan, NAT: None}
	return &Host{Name: hname, IP: ip, PublicIP: wan, NAT: nat, Router: router}, nil
}

// Close removes every namespace the lab made, with their interfaces,
// rules and any process still running in them, then releases the lab's
// id. It is idempotent and safe after a failed or panicking test; New
// registers it with the test's Cleanup, so calling it is only needed to
// tear a lab down early.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	names := slices.Clone(l.namespaces)
	l.mu.Unlock()
	slices.Reverse(names)
	return errors.Join(removeNamespaces(names), releaseID(l.lock))
}
