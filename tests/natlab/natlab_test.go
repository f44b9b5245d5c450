package natlab

import (
	"net/netip"
	"testing"
	"time"
)

// Behaviour classes of RFC 4787, for mapping (section 4.1) and filtering
// (section 5).
const (
	endpointIndependent     = "endpoint-independent"
	addressDependent        = "address-dependent"
	addressAndPortDependent = "address-and-port-dependent"
)

// negativeWait is how long a test waits before concluding that a datagram
// was filtered. Inside one machine an answer takes well under a
// millisecond; the margin is for -race on a loaded CI runner.
const negativeWait = 400 * time.Millisecond

// classifyMapping asks three reflector endpoints (same address other port,
// other address) what source they see for one socket of h, and reports
// the mapping class and whether the host's port was kept.
func classifyMapping(t *testing.T, h *Host, r *reflector) (class string, preserved bool, external netip.AddrPort) {
	c := listen(t, h)
	s1 := mustAsk(t, c, r.mainAP, "who").seen
	s2 := mustAsk(t, c, r.altPortAP, "who").seen
	s3 := mustAsk(t, c, r.altAddrAP, "who").seen
	t.Logf("%s: local :%d seen as %s (p1:%d), %s (p1:%d), %s (p2:%d)", h, localPort(c), s1, reflectorPort, s2, altPort, s3, reflectorPort)
	switch {
	case s1 == s2 && s2 == s3:
		class = endpointIndependent
	case s1 == s2:
		class = addressDependent
	default:
		class = addressAndPortDependent
	}
	return class, s1.Port() == localPort(c), s1
}

// classifyFiltering asks the reflector to answer from another address,
// then (on a fresh socket, so the first request opened nothing for it)
// from another port of the same address; the first that gets through
// gives the class.
func classifyFiltering(t *testing.T, h *Host, r *reflector) string {
	// Control: the ordinary answer must come, or negatives mean nothing.
	mustAsk(t, listen(t, h), r.mainAP, "who")
	if a, ok := ask(t, listen(t, h), r.mainAP, "via-addr", negativeWait); ok {
		if a.from != r.altAddrAP {
			t.Fatalf("answer to via-addr came from %s, want %s", a.from, r.altAddrAP)
		}
		return endpointIndependent
	}
	if a, ok := ask(t, listen(t, h), r.mainAP, "via-port", negativeWait); ok {
		if a.from != r.altPortAP {
			t.Fatalf("answer to via-port came from %s, want %s", a.from, r.altPortAP)
		}
		return addressDependent
	}
	return addressAndPortDependent
}

// TestNATBehaviour proves each router type maps and filters as its name
// says, with real UDP between the namespaces.
func TestNATBehaviour(t *testing.T) {
	tests := []struct {
		nat       NATType
		mapping   string
		filtering string
		preserved bool // the host's own port shows on the outside
	}{
		{None, endpointIndependent, endpointIndependent, true},
		{FullCone, endpointIndependent, endpointIndependent, true},
		{Restricted, endpointIndependent, addressDependent, true},
		{PortRestricted, endpointIndependent, addressAndPortDependent, true},
		{Symmetric, addressAndPortDependent, addressAndPortDependent, false},
	}
	t.Parallel()
	lab := New(t, Options{})
	r := newReflector(t, lab.Public(), lab.Public())
	hosts := make([]*Host, len(tests))
	for i, tt := range tests {
		hosts[i] = lab.Private(tt.nat, LinkOptions{})
	}
	for i, tt := range tests {
		h := hosts[i]
		t.Run(string(tt.nat), func(t *testing.T) {
			t.Parallel()
			mapping, preserved, external := classifyMapping(t, h, r)
			if external.Addr() != h.PublicIP {
				t.Errorf("reflector saw %s, want the address %s", external.Addr(), h.PublicIP)
			}
			if mapping != tt.mapping {
				t.Errorf("mapping: got %s, want %s", mapping, tt.mapping)
			}
			// A symmetric NAT keeps the port only by a 1-in-64511 chance,
			// so only the preserving types are held to it.
			if tt.preserved && !preserved {
				t.Errorf("the host's port was not preserved (seen as %s)", external)
			}
			filtering := classifyFiltering(t, h, r)
			if filtering != tt.filtering {
				t.Errorf("filtering: got %s, want %s", filtering, tt.filtering)
			}
			t.Logf("%s: mapping %s, filtering %s, port preserved %v", tt.nat, mapping, filtering, preserved)
		})
	}
}
