package seal

import (
	"bytes"
	"errors"
	"testing"

	"github.com/keyhole-p2p/keyhole/identity"
)

func newKey(t testing.TB) *identity.TransportKey {
	t.Helper()
	k, err := identity.NewTransportKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestRoundTrip(t *testing.T) {
	k := newKey(t)
	for _, n := range []int{0, 1, 100, 70000} {
		msg := bytes.Repeat([]byte{byte(n)}, n)
		box, err := Seal(k.Public(), msg)
		if err != nil {
			t.Fatal(err)
		}
		if len(box) != n+Overhead {
			t.Fatalf("box of %d bytes for %d, want %d", len(box), n, n+Overhead)
		}
		got, err := Open(k, box)
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("open: %v", err)
		}
	}
}

// TestFreshEveryTime: the same message sealed twice gives unrelated
// boxes (a fresh ephemeral key each time), so equal plaintexts cannot be
// linked by an observer.
func TestFreshEveryTime(t *testing.T) {
	k := newKey(t)
	a, _ := Seal(k.Public(), []byte("same"))
	b, _ := Seal(k.Public(), []byte("same"))
	if bytes.Equal(a[:32], b[:32]) || bytes.Equal(a[32:], b[32:]) {
		t.Fatal("two seals of one message share an ephemeral key or ciphertext")
	}
}

// TestTamper: flipping any single bit, truncating, or opening with
// another key fails with ErrOpen.
func TestTamper(t *testing.T) {
	k, other := newKey(t), newKey(t)
	box, _ := Seal(k.Public(), []byte("the sdp with ice-pwd and fingerprint"))
	for i := range len(box) * 8 {
		bad := bytes.Clone(box)
		bad[i/8] ^= 1 << (i % 8)
		if _, err := Open(k, bad); !errors.Is(err, ErrOpen) {
			t.Fatalf("bit %d flipped: %v", i, err)
		}
	}
	for n := range Overhead + 3 {
		if _, err := Open(k, box[:n]); !errors.Is(err, ErrOpen) {
			t.Fatalf("truncated to %d: %v", n, err)
		}
	}
	if _, err := Open(other, box); !errors.Is(err, ErrOpen) {
		t.Fatalf("wrong key: %v", err)
	}
}

// TestLowOrderRecipient: sealing to a low-order point would use an
// all-zero secret anyone can compute; it is refused.
func TestLowOrderRecipient(t *testing.T) {
	var zero [32]byte
	if _, err := Seal(zero, []byte("x")); err == nil {
		t.Fatal("sealed to the all-zero point")
	}
}

// TestReaddressed: a box cannot be turned into a box for another
// recipient by swapping the ephemeral key, since both keys go into the
// derivation.
func TestReaddressed(t *testing.T) {
	k := newKey(t)
	a, _ := Seal(k.Public(), []byte("one"))
	b, _ := Seal(k.Public(), []byte("two"))
	mixed := append(bytes.Clone(a[:32]), b[32:]...)
	if _, err := Open(k, mixed); !errors.Is(err, ErrOpen) {
		t.Fatalf("spliced box opened: %v", err)
	}
}

func FuzzOpen(f *testing.F) {
	k, _ := identity.TransportKeyFromSecret([32]byte{1, 2, 3})
	good, _ := Seal(k.Public(), []byte("hello"))
	f.Add(good)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, box []byte) {
		pt, err := Open(k, box)
		if err != nil {
			if !errors.Is(err, ErrOpen) {
				t.Fatalf("error not ErrOpen: %v", err)
			}
			return
		}
		// Forging a box needs the recipient's key or a tag collision:
		// only a seed (a real box of "hello"; each fuzz worker seals its
		// own, with its own ephemeral key) can open.
		if string(pt) != "hello" || len(pt) != len(box)-Overhead {
			t.Fatalf("a box the fuzzer made opened to %q: %x", pt, box)
		}
	})
}
