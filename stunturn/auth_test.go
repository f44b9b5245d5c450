package stunturn

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/turn/v5"
)

// TestAllocateRefused: every way of not holding a valid credential gets
// the Allocate refused, and counted.
func TestAllocateRefused(t *testing.T) {
	clk := newClock()
	users := map[string]string{"u": "p"}
	// A signer with the same clock and another secret.
	other := start(t, Options{Secret: []byte("another secret"), Now: clk.Now})
	forgedUser, forgedPass, err := other.Credentials("mallory", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		o    Options
		// cred mints the credential once the server is up.
		cred func(t *testing.T, s *Server) (user, pass string)
		want int
	}{
		{"no credentials", Options{Secret: testSecret}, fixed("", ""), 401},
		{"static user, wrong password", Options{Users: users}, fixed("u", "q"), 401},
		{"unknown static user", Options{Users: users}, fixed("v", "p"), 401},
		{"expired REST credential", Options{Secret: testSecret}, func(t *testing.T, s *Server) (string, string) {
			u, p := mint(t, s, "alice", time.Minute)
			clk.Advance(2 * time.Minute)
			return u, p
		}, 401},
		{"REST credential of another secret", Options{Secret: testSecret}, fixed(forgedUser, forgedPass), 401},
		{"far future, forged password", Options{Secret: testSecret},
			fixed("99999999999:mallory", "AAAAAAAAAAAAAAAAAAAAAAAAAAA="), 401},
		{"far future, password of a shorter expiry", Options{Secret: testSecret}, func(t *testing.T, s *Server) (string, string) {
			u, p := mint(t, s, "mallory", time.Minute)
			_, label, _ := strings.Cut(u, ":")
			return "99999999999:" + label, p
		}, 401},
		{"no colon, signed", Options{Secret: testSecret},
			fixed("mallory", restPassword(testSecret, "mallory")), 401},
		{"expiry not a number, signed", Options{Secret: testSecret},
			fixed("soon:mallory", restPassword(testSecret, "soon:mallory")), 401},
		{"REST credential on a server without secret", Options{Users: users},
			fixed("99999999999:mallory", restPassword(testSecret, "99999999999:mallory")), 401},
		{"STUN only", Options{}, fixed("u", "p"), 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Now = clk.Now
			s := start(t, tc.o)
			user, pass := tc.cred(t, s)
			_, err := allocate(t, udpClient(t, s, user, pass))
			if code(err) != tc.want {
				t.Fatalf("Allocate: %v, want error %d", err, tc.want)
			}
			if st := s.Stats(); tc.want == 401 && st.Refused == 0 {
				t.Fatalf("refusal not counted: %+v", st)
			}
		})
	}
}

func fixed(user, pass string) func(*testing.T, *Server) (string, string) {
	return func(*testing.T, *Server) (string, string) { return user, pass }
}

func mint(t *testing.T, s *Server, label string, ttl time.Duration) (string, string) {
	t.Helper()
	u, p, err := s.Credentials(label, ttl)
	if err != nil {
		t.Fatal(err)
	}
	return u, p
}

// TestAllocateRelays: a valid credential gets a relay that carries
// datagrams to a peer and back, over UDP and over TCP.
func TestAllocateRelays(t *testing.T) {
	for _, tc := range []struct {
		name string
		tcp  bool
		cred func(t *testing.T, s *Server) (string, string)
	}{
		{"static user", false, fixed("u", "p")},
		{"static user without colon form, with a secret too", false, fixed("alice", "wonderland")},
		{"REST credential", false, func(t *testing.T, s *Server) (string, string) { return mint(t, s, "device-1", time.Hour) }},
		{"REST credential with an empty label", false, func(t *testing.T, s *Server) (string, string) { return mint(t, s, "", time.Hour) }},
		{"REST credential over TCP", true, func(t *testing.T, s *Server) (string, string) { return mint(t, s, "device-1", time.Hour) }},
		{"static user over TCP", true, fixed("u", "p")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := start(t, Options{Secret: testSecret, Users: map[string]string{"u": "p", "alice": "wonderland"}, TCP: tc.tcp})
			user, pass := tc.cred(t, s)
			c := udpClient
			if tc.tcp {
				c = func(t *testing.T, s *Server, user, pass string) *turn.Client {
					c, _ := tcpClient(t, s, user, pass)
					return c
				}
			}
			relay := mustAllocate(t, c(t, s, user, pass))
			roundTrip(t, relay, peerSocket(t))
			st := s.Stats()
			if st.Allocations != 1 || st.AllocationsTotal != 1 || st.BytesRelayed < 8 {
				t.Fatalf("stats %+v, want 1 allocation and at least 8 bytes", st)
			}
		})
	}
}

func TestCredentials(t *testing.T) {
	clk := newClock()
	s := start(t, Options{Secret: testSecret, Now: clk.Now})
	user, pass := mint(t, s, "label:with:colons", 90*time.Second)
	if want := strconv.FormatInt(clk.Now().Add(90*time.Second).Unix(), 10) + ":label:with:colons"; user != want {
		t.Fatalf("user name %q, want %q", user, want)
	}
	// pion's own TURN REST handler (and so coturn's scheme) agrees on
	// the key.
	ra := &turn.RequestAttributes{Username: user, Realm: "keyhole"}
	_, want, ok := turn.LongTermTURNRESTAuthHandler(string(testSecret), quietPion.NewLogger("t"))(ra)
	_, got, ok2 := s.authenticate(ra)
	if !ok || !ok2 || !bytes.Equal(got, want) {
		t.Fatalf("key %x (%v), pion's %x (%v)", got, ok2, want, ok)
	}
	if got := turn.GenerateAuthKey(user, "keyhole", pass); !bytes.Equal(got, want) {
		t.Fatal("the password does not give the key")
	}

	for _, tc := range []struct {
		name  string
		o     Options
		label string
		ttl   time.Duration
		is    error
	}{
		{"no secret", Options{Users: map[string]string{"u": "p"}}, "x", time.Hour, ErrNoSecret},
		{"zero ttl", Options{Secret: testSecret}, "x", 0, nil},
		{"negative ttl", Options{Secret: testSecret}, "x", -time.Hour, nil},
		{"label too long", Options{Secret: testSecret}, strings.Repeat("x", 500), time.Hour, nil},
		{"label not UTF-8", Options{Secret: testSecret}, "\xff", time.Hour, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := start(t, tc.o)
			_, _, err := s.Credentials(tc.label, tc.ttl)
			if err == nil || (tc.is != nil && !errors.Is(err, tc.is)) {
				t.Fatalf("Credentials: %v, want an error (%v)", err, tc.is)
			}
		})
	}
}
