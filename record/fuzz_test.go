package record

import (
	"bytes"
	"testing"

	"github.com/keyhole-p2p/keyhole/identity"
)

func seedPacket(f *testing.F) *SignedPacket {
	key, _ := identity.NewPrivateKey(bytes.Repeat([]byte{3}, 32))
	c := testContent(f)
	c.Openhost = &OpenhostRecord{Version: 2, Roles: "server"}
	p, err := Build(key, c, testNow)
	if err != nil {
		f.Fatal(err)
	}
	return p
}

func FuzzParsePacket(f *testing.F) {
	p := seedPacket(f)
	f.Add(p.Bytes())
	f.Add(p.Bytes()[:104])
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParsePacket(b)
		if err != nil {
			return
		}
		if !bytes.Equal(p.Bytes(), b) {
			t.Fatal("parse/encode is not the identity")
		}
		rrs, err := p.Verify(VerifyOptions{Now: testNow, Window: -1})
		if err != nil {
			return
		}
		_, _ = ParseContent(p, rrs, testNow)
	})
}

func FuzzDecodeZone(f *testing.F) {
	p := seedPacket(f)
	f.Add(p.PublicKey[:], p.DNS)
	f.Fuzz(func(t *testing.T, key, dns []byte) {
		if len(key) != 32 {
			return
		}
		var k identity.PublicKey
		copy(k[:], key)
		rrs, err := DecodeZone(k, dns)
		if err != nil {
			return
		}
		// Whatever decodes and lies in the zone re-encodes to the same records.
		var in []RR
		for _, r := range rrs {
			if r.InZone() {
				in = append(in, r)
			}
		}
		again, err := EncodeZone(k, in)
		if err != nil {
			return // e.g. a name that only a hand-made packet can carry
		}
		back, err := DecodeZone(k, again)
		if err != nil || len(back) != len(in) {
			t.Fatalf("re-encoded zone does not decode: %v", err)
		}
		for i := range back {
			if back[i].Name != in[i].Name || !bytes.Equal(back[i].Text, in[i].Text) || back[i].Addr != in[i].Addr {
				t.Fatalf("record %d changed: %+v -> %+v", i, in[i], back[i])
			}
		}
	})
}

func FuzzOpenhostCanonical(f *testing.F) {
	r := &OpenhostRecord{Version: 2, Timestamp: 1700000000, Roles: "server", Disc: "dht=1"}
	c, _ := r.CanonicalBytes()
	f.Add(c)
	r.Version, r.TURN = 3, mustAddrPort("198.51.100.1:3478")
	c, _ = r.CanonicalBytes()
	f.Add(c)
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseOpenhostCanonical(b)
		if err != nil {
			return
		}
		c, err := r.CanonicalBytes()
		if err != nil || !bytes.Equal(c, b) {
			t.Fatalf("accepted bytes that do not re-encode identically: %v", err)
		}
	})
}

func FuzzVerifyOpenhost(f *testing.F) {
	key, _ := identity.NewPrivateKey(bytes.Repeat([]byte{3}, 32))
	v, _ := SignOpenhost(key, &OpenhostRecord{Version: 2, Timestamp: uint64(testNow.Unix()), Roles: "server"})
	f.Add(v)
	f.Fuzz(func(t *testing.T, txt []byte) {
		if _, err := VerifyOpenhost(key.Public(), txt, testNow); err == nil && !bytes.Equal(txt, v) {
			// Ed25519 signatures are deterministic and S is canonical, so only
			// the original value can verify under this key and timestamp.
			r, _ := VerifyOpenhost(key.Public(), txt, testNow)
			if r.Timestamp == uint64(testNow.Unix()) {
				again, _ := SignOpenhost(key, r)
				if !bytes.Equal(again, txt) {
					t.Fatalf("a malleated record verified: %s", txt)
				}
			}
		}
	})
}

func FuzzParseKPSAddr(f *testing.F) {
	f.Add("192.0.2.1:4242:" + EncodeCertHash([32]byte{1}))
	f.Add("[::1]:1:u")
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseKPSAddr(s)
		if err != nil {
			return
		}
		b, err := ParseKPSAddr(a.String())
		if err != nil || b != a {
			t.Fatalf("%q -> %q does not round trip", s, a)
		}
	})
}

func FuzzParseOnionAddr(f *testing.F) {
	f.Add(OnionHost([32]byte{9}) + ":80")
	f.Fuzz(func(t *testing.T, s string) {
		o, err := ParseOnionAddr(s)
		if err == nil && o.String() != s {
			t.Fatalf("%q -> %q", s, o)
		}
	})
}
