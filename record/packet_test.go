package record

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/keyhole-p2p/keyhole/identity"
)

var testNow = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func testContent(t testing.TB) *Content {
	t.Helper()
	k1, _ := ParseKPSAddr("203.0.113.5:4242:uEiDhYw3FZ5PPKDsHpYUpdcjWvOzO9BWhcCpTEdDB4mF2SQ")
	k2, _ := ParseKPSAddr("[2001:db8::5]:4242:uEiDhYw3FZ5PPKDsHpYUpdcjWvOzO9BWhcCpTEdDB4mF2SQ")
	onionKey := [32]byte{1, 2, 3}
	return &Content{
		Direct: []KPSAddr{k1, k2},
		Boards: []string{"wss://board.example:8443/"},
		Nodes:  []string{"https://node.example/"},
		TURN:   []string{"turn:203.0.113.9:3478?transport=udp"},
		Onion:  &OnionAddr{Host: OnionHost(onionKey), Port: 4242},
	}
}

// Each way a packet can be wrong yields its own error, naming the check.
func TestVerifyNamesTheFailedCheck(t *testing.T) {
	key, _ := identity.Generate()
	other, _ := identity.Generate()
	p, err := Build(key, testContent(t), testNow)
	if err != nil {
		t.Fatal(err)
	}
	wire := p.Bytes()
	if _, err := p.Verify(VerifyOptions{Key: key.Public(), Now: testNow}); err != nil {
		t.Fatal(err)
	}

	parseVerify := func(b []byte, o VerifyOptions) error {
		p, err := ParsePacket(b)
		if err != nil {
			return err
		}
		_, err = p.Verify(o)
		return err
	}
	ok := VerifyOptions{Now: testNow}
	tests := []struct {
		name   string
		bytes  []byte
		opts   VerifyOptions
		want   error
		reason string
	}{
		{"truncated header", wire[:50], ok, ErrTruncated, "at least 104"},
		{"truncated DNS", wire[:len(wire)-3], ok, ErrBadSignature, "altered"},
		{"wrong key", wire, VerifyOptions{Key: other.Public(), Now: testNow}, ErrWrongKey, other.Public().String()},
		{"oversize", append(append([]byte(nil), wire...), make([]byte, MaxPacketSize)...), ok, ErrTooLarge, "at most 1104"},
		{"too old", wire, VerifyOptions{Now: testNow.Add(3 * time.Hour)}, ErrStale, "stopped republishing"},
		{"from the future", wire, VerifyOptions{Now: testNow.Add(-3 * time.Hour)}, ErrStale, "clock"},
		{"key swapped", swapKey(wire, other.Public()), ok, ErrBadSignature, other.Public().String()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := parseVerify(tc.bytes, tc.opts)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("got %v, want %v mentioning %q", err, tc.want, tc.reason)
			}
		})
	}
	// Every single flipped bit is caught.
	for i := 0; i < len(wire)*8; i++ {
		b := append([]byte(nil), wire...)
		b[i/8] ^= 1 << (i % 8)
		err := parseVerify(b, VerifyOptions{Now: testNow, Window: -1})
		if err == nil {
			t.Fatalf("bit %d flipped: accepted", i)
		}
		if !errors.Is(err, ErrBadSignature) {
			t.Fatalf("bit %d flipped: %v", i, err)
		}
	}
	// The window is configurable and inclusive.
	if err := parseVerify(wire, VerifyOptions{Now: testNow.Add(DefaultWindow)}); err != nil {
		t.Errorf("at the window edge: %v", err)
	}
	if err := parseVerify(wire, VerifyOptions{Now: testNow.Add(48 * time.Hour), Window: 49 * time.Hour}); err != nil {
		t.Errorf("wide window: %v", err)
	}
}

func TestContentRoundTrip(t *testing.T) {
	key, _ := identity.Generate()
	c := testContent(t)
	c.Openhost = &OpenhostRecord{Version: 2, Roles: "server", Disc: ""}
	p, err := Build(key, c, testNow.Add(123456*time.Microsecond))
	if err != nil {
		t.Fatal(err)
	}
	if p.Timestamp%1_000_000 != 0 {
		t.Errorf("with an openhost record the timestamp must be whole seconds, got %d", p.Timestamp)
	}
	rrs, err := p.Verify(VerifyOptions{Key: key.Public(), Now: testNow})
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseContent(p, rrs, testNow)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Direct) != 2 || got.Direct[1] != c.Direct[1] || got.Boards[0] != c.Boards[0] || got.Nodes[0] != c.Nodes[0] ||
		got.TURN[0] != c.TURN[0] || *got.Onion != *c.Onion || got.Openhost == nil || got.Openhost.Timestamp != uint64(testNow.Unix()) {
		t.Fatalf("round trip lost data: %+v", got)
	}
	if n := bytes.Count(p.DNS, []byte(key.Public().String())); n != 1 {
		t.Errorf("the origin is spelled out %d times; names are not compressed", n)
	}
}

func TestBuildRefusesInvalidContent(t *testing.T) {
	key, _ := identity.Generate()
	for name, mutate := range map[string]func(*Content){
		"board scheme": func(c *Content) { c.Boards = []string{"http://x/"} },
		"node no host": func(c *Content) { c.Nodes = []string{"https://"} },
		"turn junk":    func(c *Content) { c.TURN = []string{"stun:x"} },
		"onion typo":   func(c *Content) { c.Onion.Host = typo(c.Onion.Host, 10) },
		"kps port 0":   func(c *Content) { c.Direct[0].AddrPort = netip.MustParseAddrPort("1.2.3.4:0") },
		"too many": func(c *Content) {
			for i := 0; i < 40; i++ {
				c.Direct = append(c.Direct, c.Direct[0])
			}
		},
	} {
		c := testContent(t)
		mutate(c)
		if _, err := Build(key, c, testNow); err == nil {
			t.Errorf("%s: built", name)
		}
	}
}

// A packet validly signed by its key but holding garbage in a keyhole
// record is refused by ParseContent, naming the record.
func TestParseContentRefusesBadValues(t *testing.T) {
	key, _ := identity.Generate()
	for _, tc := range []struct{ name, value, reason string }{
		{NameKPS, "1.2.3.4:5:notacerthash", "certhash"},
		{NameBoard, "javascript:alert(1)", NameBoard},
		{NameOnion, "x.onion:1", "56"},
		{NameVersion, "v=2", "upgrade"},
	} {
		rrs := []RR{TXT(NameVersion, 300, []byte("v=1")), TXT(tc.name, 300, []byte(tc.value))}
		if tc.name == NameVersion {
			rrs = rrs[1:]
		}
		dns, err := EncodeZone(key.Public(), rrs)
		if err != nil {
			t.Fatal(err)
		}
		p, _ := Sign(key, dns, Micros(testNow))
		got, _ := p.Verify(VerifyOptions{Now: testNow})
		if _, err := ParseContent(p, got, testNow); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.reason) {
			t.Errorf("%s=%q: %v", tc.name, tc.value, err)
		}
	}
}

func TestZoneEncoding(t *testing.T) {
	key, _ := identity.Generate()
	long := bytes.Repeat([]byte("x"), 600)
	rrs := []RR{
		TXT("_long", 60, long),
		TXT("_empty", 60, nil),
		{Name: Apex, TTL: 30, Type: TypeA, Addr: netip.MustParseAddr("192.0.2.1")},
		{Name: "www", TTL: 30, Type: TypeAAAA, Addr: netip.MustParseAddr("2001:db8::1")},
		{Name: "_x", TTL: 1, Type: 99, Raw: []byte{1, 2, 3}},
	}
	dns, err := EncodeZone(key.Public(), rrs)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeZone(key.Public(), dns)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(rrs) || !bytes.Equal(got[0].Text, long) || len(got[1].Text) != 0 || got[2].Addr != rrs[2].Addr ||
		got[3].Name != "www" || got[4].Type != 99 || !bytes.Equal(got[4].Raw, []byte{1, 2, 3}) {
		t.Fatalf("decoded %+v", got)
	}
	// 600 bytes need three character-strings.
	if n := bytes.Count(dns, []byte{255}); n < 2 {
		t.Errorf("long TXT not split into 255-byte strings")
	}
	// Names compare case-insensitively and foreign names are kept but marked.
	upper := bytes.ReplaceAll(dns, []byte(key.Public().String()), []byte(strings.ToUpper(key.Public().String())))
	got, err = DecodeZone(key.Public(), upper)
	if err != nil || got[0].Name != "_long" || len(Lookup(got, "_LONG")) != 1 {
		t.Errorf("upper-case origin: %+v %v", got, err)
	}
	other, _ := identity.Generate()
	got, _ = DecodeZone(other.Public(), dns)
	if got[0].InZone() || len(Lookup(got, "_long")) != 0 {
		t.Error("record of another zone treated as ours")
	}
}

// A hand-made packet using a compression pointer, as Pkarr's encoder makes them.
func TestZoneFollowsCompressionPointers(t *testing.T) {
	key, _ := identity.Generate()
	origin := key.Public().String()
	var b []byte
	b = append(b, 0, 0, 0x80, 0, 0, 0, 0, 2, 0, 0, 0, 0)
	// answer 1: _a.<origin> TXT "1"
	b = append(b, 2, '_', 'a', 52)
	b = append(b, origin...)
	b = append(b, 0, 0, 16, 0, 1, 0, 0, 0, 60, 0, 2, 1, '1')
	// answer 2: _b + pointer to <origin> at offset 15
	b = append(b, 2, '_', 'b', 0xc0, 15, 0, 16, 0, 1, 0, 0, 0, 60, 0, 2, 1, '2')
	got, err := DecodeZone(key.Public(), b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[1].Name != "_b" || string(got[1].Text) != "2" {
		t.Fatalf("%+v", got)
	}
	// A pointer loop must fail cleanly.
	loop := append([]byte(nil), b[:len(b)-17]...)
	loop = append(loop, 0xc0, byte(len(loop)))
	if _, err := DecodeZone(key.Public(), loop); err == nil {
		t.Error("pointer loop accepted")
	}
}

func TestKPSAddr(t *testing.T) {
	d := CertHashOf([]byte("cert"))
	for _, s := range []string{"192.0.2.1:4242:" + EncodeCertHash(d), "[2001:db8::1]:1:" + EncodeCertHash(d)} {
		a, err := ParseKPSAddr(s)
		if err != nil || a.String() != s || a.CertHash != d {
			t.Errorf("%s: %v %v", s, a, err)
		}
	}
	if got := EncodeCertHash(d); len(got) != 47 || got[:3] != "uEi" {
		t.Errorf("certhash %s", got)
	}
	for _, s := range []string{"", "1.2.3.4:5", "1.2.3.4:0:" + EncodeCertHash(d), "host:5:" + EncodeCertHash(d), "1.2.3.4:5:m" + EncodeCertHash(d)[1:],
		"1.2.3.4:5:uEi", "2001:db8::1:5:" + EncodeCertHash(d), "[fe80::1%eth0]:5:" + EncodeCertHash(d)} {
		if _, err := ParseKPSAddr(s); !errors.Is(err, ErrInvalid) {
			t.Errorf("%q accepted", s)
		}
	}
}

func TestOnionAddr(t *testing.T) {
	// The Tor Project's own onion service, as a known-good checksum.
	const torproject = "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion"
	if _, err := ParseOnionAddr(torproject + ":80"); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{typo(torproject, 5) + ":80", typo(torproject, 54) + ":80", torproject, torproject + ":0", "abc.onion:80", strings.ToUpper(torproject) + ":80"} {
		if _, err := ParseOnionAddr(s); !errors.Is(err, ErrInvalid) {
			t.Errorf("%q accepted", s)
		}
	}
}

func swapKey(wire []byte, k identity.PublicKey) []byte {
	return append(append([]byte(nil), k[:]...), wire[32:]...)
}

// typo changes the character at i to another base32 letter.
func typo(s string, i int) string {
	c := byte('a')
	if s[i] == 'a' {
		c = 'b'
	}
	return s[:i] + string(c) + s[i+1:]
}
