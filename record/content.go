package record

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/keyhole-p2p/keyhole/identity"
)

// Names of keyhole's TXT records inside a device's zone. Each is a set:
// one TXT record per value.
const (
	NameVersion = "_keyhole" // "v=1": marks the zone as keyhole's
	NameKPS     = "_kps"     // direct KPS addresses, <ip>:<port>:<certhash>
	NameBoard   = "_board"   // rendezvous boards, ws:// or wss:// URLs
	NameNode    = "_node"    // community nodes, http:// or https:// URLs
	NameTURN    = "_turn"    // TURN servers, turn: or turns: URIs
	NameOnion   = "_onion"   // Tor onion service, <56>.onion:<port>

	versionValue = "v=1"
	// DefaultTTL is how long resolvers may cache keyhole records. Short,
	// because addresses change when a device moves.
	DefaultTTL = 300
	maxValue   = 512 // longest single value we accept
)

// Content is what a keyhole device publishes about how to reach it.
type Content struct {
	Direct   []KPSAddr
	Boards   []string
	Nodes    []string
	TURN     []string
	Onion    *OnionAddr
	Openhost *OpenhostRecord // set when the device hosts an openhost app
}

// Build signs a packet carrying c at time now. When c carries an
// openhost record, its ts and the packet timestamp are both set to now in
// whole seconds, as openhost requires them to agree.
func Build(key *identity.PrivateKey, c *Content, now time.Time) (*SignedPacket, error) {
	ts := Micros(now)
	rrs := []RR{TXT(NameVersion, DefaultTTL, []byte(versionValue))}
	add := func(name string, v string, check func(string) error) error {
		if err := check(v); err != nil {
			return err
		}
		rrs = append(rrs, TXT(name, DefaultTTL, []byte(v)))
		return nil
	}
	for _, a := range c.Direct {
		if err := add(NameKPS, a.String(), checkKPS); err != nil {
			return nil, err
		}
	}
	for _, groups := range []struct {
		name string
		vals []string
		chk  func(string) error
	}{{NameBoard, c.Boards, checkBoard}, {NameNode, c.Nodes, checkNode}, {NameTURN, c.TURN, checkTURN}} {
		for _, v := range groups.vals {
			if err := add(groups.name, v, groups.chk); err != nil {
				return nil, err
			}
		}
	}
	if c.Onion != nil {
		if err := add(NameOnion, c.Onion.String(), checkOnion); err != nil {
			return nil, err
		}
	}
	if c.Openhost != nil {
		secs := uint64(now.Unix())
		ts = secs * 1_000_000
		oh := *c.Openhost
		oh.Timestamp = secs
		v, err := SignOpenhost(key, &oh)
		if err != nil {
			return nil, err
		}
		rrs = append(rrs, TXT(OpenhostName, OpenhostTTL, v))
	}
	dns, err := EncodeZone(key.Public(), rrs)
	if err != nil {
		return nil, err
	}
	return Sign(key, dns, ts)
}

// ParseContent reads keyhole's records (and the openhost record, if any)
// out of a verified packet's records. A value that is present but invalid
// is an error, naming the record: a device's own publisher never writes
// one, so it means tampering or a bug worth seeing. Unknown names are
// ignored, so later versions can add records.
func ParseContent(p *SignedPacket, rrs []RR, now time.Time) (*Content, error) {
	c := &Content{}
	if vs := Lookup(rrs, NameVersion); len(vs) > 0 {
		if len(vs) != 1 || string(vs[0]) != versionValue {
			return nil, fmt.Errorf("%w: %s says %q; this keyhole understands %q (upgrade keyhole?)", ErrInvalid, NameVersion, vs[0], versionValue)
		}
		for _, v := range Lookup(rrs, NameKPS) {
			a, err := ParseKPSAddr(string(v))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", NameKPS, err)
			}
			c.Direct = append(c.Direct, a)
		}
		for _, g := range []struct {
			name string
			dst  *[]string
			chk  func(string) error
		}{{NameBoard, &c.Boards, checkBoard}, {NameNode, &c.Nodes, checkNode}, {NameTURN, &c.TURN, checkTURN}} {
			for _, v := range Lookup(rrs, g.name) {
				if err := g.chk(string(v)); err != nil {
					return nil, err
				}
				*g.dst = append(*g.dst, string(v))
			}
		}
		switch vs := Lookup(rrs, NameOnion); len(vs) {
		case 0:
		case 1:
			o, err := ParseOnionAddr(string(vs[0]))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", NameOnion, err)
			}
			c.Onion = &o
		default:
			return nil, fmt.Errorf("%w: %d %s records, at most one is allowed", ErrInvalid, len(vs), NameOnion)
		}
	}
	if len(Lookup(rrs, OpenhostName)) > 0 {
		oh, err := OpenhostFromPacket(p, rrs, now)
		if err != nil {
			return nil, err
		}
		c.Openhost = oh
	}
	return c, nil
}

func checkKPS(v string) error {
	_, err := ParseKPSAddr(v)
	return err
}

func checkOnion(v string) error {
	_, err := ParseOnionAddr(v)
	return err
}

func checkURL(name, v string, schemes ...string) error {
	if len(v) > maxValue {
		return fmt.Errorf("%w: %s value is %d bytes, at most %d", ErrInvalid, name, len(v), maxValue)
	}
	u, err := url.Parse(v)
	if err == nil {
		for _, s := range schemes {
			if u.Scheme == s && u.Host != "" && u.User == nil {
				return nil
			}
		}
	}
	return fmt.Errorf("%w: %s %q must be a %s URL with a host", ErrInvalid, name, v, strings.Join(schemes, ":// or ")+"://")
}

func checkBoard(v string) error { return checkURL(NameBoard, v, "ws", "wss") }
func checkNode(v string) error  { return checkURL(NameNode, v, "http", "https") }

// checkTURN accepts RFC 7065 URIs: turn:host[:port][?transport=udp|tcp].
func checkTURN(v string) error {
	if len(v) > maxValue {
		return fmt.Errorf("%w: %s value is %d bytes, at most %d", ErrInvalid, NameTURN, len(v), maxValue)
	}
	scheme, rest, ok := strings.Cut(v, ":")
	hostport, query, _ := strings.Cut(rest, "?")
	if !ok || (scheme != "turn" && scheme != "turns") || hostport == "" || strings.ContainsAny(hostport, "/@ ") ||
		(query != "" && query != "transport=udp" && query != "transport=tcp") {
		return fmt.Errorf("%w: %s %q must look like turn:host:port[?transport=udp|tcp]", ErrInvalid, NameTURN, v)
	}
	return nil
}
