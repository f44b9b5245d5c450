package board

import (
	"fmt"
	"net"

	"github.com/pion/turn/v5"
)

// STUNServer answers STUN binding requests on a UDP socket, so a device
// learns its server-reflexive address from the board it already uses:
// the candidate policy drops host candidates, so without one devices on
// different networks have nothing to offer each other. Given users, it
// is also a TURN relay for them (relay-only devices, symmetric NATs);
// the community node (package node) hands out short-lived credentials.
type STUNServer struct {
	srv  *turn.Server
	conn net.PacketConn
}

// STUNOptions configure ListenSTUN.
type STUNOptions struct {
	// Users maps TURN user names to passwords; empty: STUN only.
	Users map[string]string
	// Realm is the TURN realm (default "keyhole").
	Realm string
	// RelayIP is the address relays are opened on and advertised with
	// (default: the listening address, or 127.0.0.1 if that is
	// unspecified).
	RelayIP string
}

// ListenSTUN serves STUN (and TURN for Users) on the UDP address addr.
func ListenSTUN(addr string, o STUNOptions) (*STUNServer, error) {
	conn, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("board: STUN on %s: %w", addr, err)
	}
	if o.Realm == "" {
		o.Realm = "keyhole"
	}
	relay := o.RelayIP
	if relay == "" {
		relay = conn.LocalAddr().(*net.UDPAddr).IP.String()
		if ip := net.ParseIP(relay); ip == nil || ip.IsUnspecified() {
			relay = "127.0.0.1"
		}
	}
	keys := map[string][]byte{}
	for u, p := range o.Users {
		keys[u] = turn.GenerateAuthKey(u, o.Realm, p)
	}
	srv, err := turn.NewServer(turn.ServerConfig{
		Realm: o.Realm,
		AuthHandler: func(ra *turn.RequestAttributes) (string, []byte, bool) {
			k, ok := keys[ra.Username]
			return ra.Username, k, ok
		},
		PacketConnConfigs: []turn.PacketConnConfig{{
			PacketConn: conn,
			RelayAddressGenerator: &turn.RelayAddressGeneratorStatic{
				RelayAddress: net.ParseIP(relay),
				Address:      relay,
			},
		}},
	})
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("board: STUN: %w", err)
	}
	return &STUNServer{srv: srv, conn: conn}, nil
}

// Addr is the UDP address the server listens on.
func (s *STUNServer) Addr() *net.UDPAddr { return s.conn.LocalAddr().(*net.UDPAddr) }

// Close stops the server.
func (s *STUNServer) Close() error { return s.srv.Close() }
