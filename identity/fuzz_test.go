package identity

import (
	"bytes"
	"testing"
	"time"
)

func FuzzParseAddress(f *testing.F) {
	for _, s := range []string{"47pjoycnsrfmxikm95jh13y88e8qnhzu5kungjpxyepgt7a8krpy", "oh://47pjoycnsrfmxikm95jh13y88e8qnhzu5kungjpxyepgt7a8krpy/a", "keyhole://x", "pk:", "://"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseAddress(s)
		if err != nil {
			return
		}
		// Whatever parses must re-encode to a form that parses to the same key.
		again, err := ParseKey(k.String())
		if err != nil || again != k {
			t.Fatalf("%q -> %s does not round trip: %v", s, k, err)
		}
		if u, err := ParseURL(s); err == nil {
			if u2, err := ParseURL(u.String()); err != nil || u2 != u {
				t.Fatalf("URL %q normalizes to %q which parses to %v, %v", s, u, u2, err)
			}
		}
	})
}

func FuzzZBase32(f *testing.F) {
	f.Add("yyyy", 2)
	f.Add("47pjoycnsrfmxikm95jh13y88e8qnhzu5kungjpxyepgt7a8krpy", 32)
	f.Fuzz(func(t *testing.T, s string, n int) {
		if n < 0 || n > 256 {
			return
		}
		b, err := DecodeZBase32(s, n)
		if err != nil {
			return
		}
		if len(b) != n {
			t.Fatalf("decoded %d bytes, want %d", len(b), n)
		}
		if got := EncodeZBase32(b); !bytes.EqualFold([]byte(got), []byte(s)) {
			t.Fatalf("%q decodes to %x which encodes to %q", s, b, got)
		}
	})
}

func FuzzVerifyStrict(f *testing.F) {
	k, _ := NewPrivateKey(make([]byte, 32))
	sig := k.Sign([]byte("m"))
	pub := k.Public()
	f.Add(pub[:], []byte("m"), sig)
	f.Fuzz(func(t *testing.T, pubb, msg, sig []byte) {
		if len(pubb) != 32 {
			return
		}
		var p PublicKey
		copy(p[:], pubb)
		_ = VerifyStrict(p, msg, sig) // must not panic
	})
}

func FuzzBindingVerify(f *testing.F) {
	id, _ := NewPrivateKey(bytes.Repeat([]byte{1}, 32))
	tk, _ := TransportKeyFromSecret([32]byte{2})
	now := time.Unix(1_800_000_000, 0)
	b, _ := NewBinding(id, tk.Public(), now)
	f.Add(b.IdentityKey, b.TransportKey, b.CreatedUTC, b.BindingSig)
	f.Fuzz(func(t *testing.T, a, b, c, d string) {
		bd := Binding{a, b, c, d}
		gotID, _, err := bd.Verify(PublicKey{}, now)
		if err == nil && gotID != id.Public() {
			// Only the key we signed with can produce a valid binding here.
			t.Fatalf("forged binding verified for %s", gotID)
		}
	})
}
