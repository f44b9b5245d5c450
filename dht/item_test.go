package dht

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/anacrolix/dht/v2/bep44"
	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/torrent/bencode"

	"github.com/keyhole-p2p/keyhole/identity"
)

// signItem signs v (already bencoded) as BEP 44 says, whatever v is.
func signItem(key *identity.PrivateKey, salt []byte, seq int64, v []byte) *Item {
	it := &Item{Key: key.Public(), Salt: salt, Seq: seq, V: v}
	copy(it.Sig[:], key.Sign(it.signedBytes()))
	return it
}

// libraryAccepts is what an anacrolix/dht node checks on a put: the
// value decoded and encoded again, its size, salt size and signature.
func libraryAccepts(it *Item) error {
	var x any
	if err := bencode.Unmarshal(it.V, &x); err != nil {
		return err
	}
	return bep44.Check(&bep44.Item{V: x, K: it.Key, Salt: it.Salt, Sig: it.Sig, Seq: it.Seq})
}

func TestItemVerify(t *testing.T) {
	key, _ := identity.NewPrivateKey(bytes.Repeat([]byte{7}, 32))
	other, _ := identity.NewPrivateKey(bytes.Repeat([]byte{8}, 32))
	valueOf := func(n int) []byte { return bencode.MustMarshal(strings.Repeat("x", n)) }
	forged := signItem(key, []byte("salt"), 5, []byte("5:hello"))
	forged.Sig[10] ^= 1
	otherKey := signItem(other, nil, 1, []byte("1:x"))
	otherKey.Key = key.Public()
	otherSalt := signItem(key, []byte("a"), 1, []byte("1:x"))
	otherSalt.Salt = []byte("b")
	otherSeq := signItem(key, nil, 1, []byte("1:x"))
	otherSeq.Seq = 2
	for _, tc := range []struct {
		name string
		it   *Item
		want string // in the error; empty means valid
	}{
		{"no salt", signItem(key, nil, 1, []byte("5:hello")), ""},
		{"empty salt", signItem(key, []byte{}, 1, []byte("5:hello")), ""},
		{"salt", signItem(key, []byte("community"), 1, []byte("5:hello")), ""},
		{"64-byte salt", signItem(key, bytes.Repeat([]byte{1}, 64), 1, []byte("5:hello")), ""},
		{"seq 0", signItem(key, nil, 0, []byte("i0e")), ""},
		{"dict value", signItem(key, nil, 9, bencode.MustMarshal(map[string]any{"a": 1, "b": []any{"x", 2}})), ""},
		{"1000-byte value", signItem(key, nil, 1, valueOf(996)), ""},
		{"65-byte salt", signItem(key, bytes.Repeat([]byte{1}, 65), 1, []byte("5:hello")), "salt is 65 bytes"},
		{"negative seq", signItem(key, nil, -1, []byte("5:hello")), "negative"},
		{"1001-byte value", signItem(key, nil, 1, valueOf(997)), "value is 1001 bytes"},
		{"empty value", signItem(key, nil, 1, nil), "empty"},
		{"trailing bytes", signItem(key, nil, 1, []byte("1:a1:b")), "not one bencoded value"},
		{"truncated", signItem(key, nil, 1, []byte("5:hell")), "not one bencoded value"},
		{"not bencode", signItem(key, nil, 1, []byte("hello")), "not one bencoded value"},
		{"unsorted dict", signItem(key, nil, 1, []byte("d1:bi1e1:ai2ee")), "not one bencoded value"},
		// Other encodings of a value: nodes would re-encode it and refuse
		// the signature. (The decoder refuses them itself; checkBencode
		// also compares with the value encoded again, in case it changes.)
		{"leading zero", signItem(key, nil, 1, []byte("i03e")), "not one bencoded value"},
		{"minus zero", signItem(key, nil, 1, []byte("i-0e")), "not one bencoded value"},
		{"zero-padded length", signItem(key, nil, 1, []byte("05:hello")), "not one bencoded value"},
		{"forged signature", forged, "invalid signature"},
		{"another key's signature", otherKey, "invalid signature"},
		{"signed for another salt", otherSalt, "invalid signature"},
		{"signed for another seq", otherSeq, "invalid signature"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.it.Verify()
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				// Whatever passes here, an anacrolix node accepts too.
				if err := libraryAccepts(tc.it); err != nil {
					t.Fatalf("the library refuses it: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidItem) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want ErrInvalidItem and %q", err, tc.want)
			}
		})
	}
}

// The signed buffer is the one BEP 44 spells out (its test vector for a
// salted item is "4:salt6:foobar3:seqi1e1:v12:Hello World!").
func TestItemSignedBytes(t *testing.T) {
	it := &Item{Salt: []byte("foobar"), Seq: 1, V: []byte("12:Hello World!")}
	if got, want := string(it.signedBytes()), "4:salt6:foobar3:seqi1e1:v12:Hello World!"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	it.Salt = nil
	if got, want := string(it.signedBytes()), "3:seqi1e1:v12:Hello World!"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// Items with and without salt go round the testnet; each salt is its own
// item; a newer seq replaces an older one, and an older one is refused.
func TestPutGetItem(t *testing.T) {
	tn := startTestnet(t, 30)
	pub, res := client(t, tn), client(t, tn)
	key, _ := identity.Generate()
	items := []*Item{
		signItem(key, nil, 1, []byte("7:no salt")),
		signItem(key, []byte("a"), 1, []byte("6:salt a")),
		signItem(key, []byte("b"), 7, bencode.MustMarshal(map[string]any{"salt": "b", "n": 7})),
	}
	for _, it := range items {
		r, err := pub.PutItem(ctxT(t, 20*time.Second), it, 0)
		if err != nil || r.Stored < 8 {
			t.Fatalf("salt %q: %+v %v", it.Salt, r, err)
		}
	}
	for _, tc := range []struct {
		salt string
		want *Item // nil: not found
	}{
		{"", items[0]},
		{"a", items[1]},
		{"b", items[2]},
		{"c", nil},
	} {
		got, st, err := res.GetItem(ctxT(t, 10*time.Second), key.Public(), []byte(tc.salt), GetOptions{})
		if tc.want == nil {
			if !errors.Is(err, ErrNotFound) {
				t.Fatalf("salt %q: got %v, %v; want ErrNotFound", tc.salt, got, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("salt %q: %v", tc.salt, err)
		}
		if !bytes.Equal(got.V, tc.want.V) || got.Seq != tc.want.Seq || got.Sig != tc.want.Sig || string(got.Salt) != tc.salt || st.Invalid != 0 {
			t.Fatalf("salt %q: got %+v %+v, want %+v", tc.salt, got, st, tc.want)
		}
	}
	// A newer seq wins, under its own salt only.
	newer := signItem(key, []byte("a"), 2, []byte("5:newer"))
	if _, err := pub.PutItem(ctxT(t, 20*time.Second), newer, 1); err != nil {
		t.Fatal(err)
	}
	for salt, want := range map[string]*Item{"a": newer, "b": items[2]} {
		got, _, err := res.GetItem(ctxT(t, 10*time.Second), key.Public(), []byte(salt), GetOptions{})
		if err != nil || got.Seq != want.Seq || !bytes.Equal(got.V, want.V) {
			t.Fatalf("salt %q after the update: %+v %v", salt, got, err)
		}
	}
	if _, err := res.PutItem(ctxT(t, 20*time.Second), items[1], 0); !errors.Is(err, ErrOutdated) {
		t.Fatalf("stale put: %v", err)
	}
	// The Pkarr record is the unsalted item: Get refuses a value that is
	// not a DNS packet's byte string rather than misreading it.
	dict := signItem(key, nil, 2, []byte("d1:ai1ee"))
	if _, err := pub.PutItem(ctxT(t, 20*time.Second), dict, 0); err != nil {
		t.Fatal(err)
	}
	if _, st, err := res.Get(ctxT(t, 10*time.Second), key.Public(), GetOptions{}); !errors.Is(err, ErrNotFound) || st.Invalid == 0 {
		t.Fatalf("Get of a dict item: %+v %v", st, err)
	}
}

// PutItem refuses what Verify refuses, before sending anything.
func TestPutItemRefusesInvalid(t *testing.T) {
	tn := startTestnet(t, 4)
	key, _ := identity.Generate()
	forged := signItem(key, []byte("s"), 3, []byte("1:x"))
	forged.Sig[0] ^= 1
	oversize := signItem(key, nil, 3, bencode.MustMarshal(make([]byte, 1000)))
	notBencode := signItem(key, nil, 3, []byte("1:x1:y"))
	for name, it := range map[string]*Item{"forged": forged, "oversize": oversize, "not bencode": notBencode} {
		if _, err := tn.Nodes[0].PutItem(ctxT(t, 5*time.Second), it, 0); !errors.Is(err, ErrInvalidItem) {
			t.Errorf("%s: %v", name, err)
		}
	}
	valid := signItem(key, nil, 3, []byte("1:x"))
	if _, err := tn.Nodes[0].PutItem(ctxT(t, 5*time.Second), valid, -1); err == nil {
		t.Error("a negative cas was sent")
	}
	for i, n := range tn.Nodes {
		if n.StoredItems() != 0 {
			t.Errorf("node %d stored %d items", i, n.StoredItems())
		}
	}
}

// A node that returns forged items for a salted key never wins over the
// real one.
func TestGetItemIgnoresLyingNodes(t *testing.T) {
	tn := startTestnet(t, 20)
	key, _ := identity.Generate()
	salt := []byte("community")
	real := signItem(key, salt, 10, []byte("4:real"))
	if _, err := tn.Nodes[5].PutItem(ctxT(t, 20*time.Second), real, 0); err != nil {
		t.Fatal(err)
	}
	reply := func(it *Item) func(krpc.Msg) krpc.Msg {
		return func(krpc.Msg) krpc.Msg {
			seq := it.Seq
			return krpc.Msg{R: &krpc.Return{Token: ptr("t"), Bep44Return: krpc.Bep44Return{K: it.Key, V: it.V, Seq: &seq, Sig: it.Sig}}}
		}
	}
	forged := *real
	forged.Seq, forged.V = 11, []byte("6:forged")
	otherSalt := signItem(key, []byte("elsewhere"), 11, []byte("5:other"))       // valid, for another salt
	unsalted := signItem(key, nil, 11, []byte("8:unsalted"))                     // valid, without the salt
	oversize := signItem(key, salt, 11, bencode.MustMarshal(make([]byte, 1500))) // signed, but too big
	negative := signItem(key, salt, -1, []byte("8:negative"))                    // signed, but seq < 0
	// (A value that is not one bencoded value cannot even be sent: the
	// whole reply would not parse.)
	lies := map[string]*Item{"forged signature": &forged, "another salt": otherSalt, "no salt": unsalted, "oversize": oversize, "negative seq": negative}
	target := bep44.MakeMutableTarget(key.Public(), salt)
	c := clientNear(t, tn, target)
	for name, lie := range lies {
		t.Run(name, func(t *testing.T) {
			l := startLiarNear(t, target, reply(lie))
			c.srv.Ping(l.addr())
			got, st, err := c.GetItem(ctxT(t, 10*time.Second), key.Public(), salt, GetOptions{Grace: 300 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			if got.Seq != real.Seq || !bytes.Equal(got.V, real.V) {
				t.Fatalf("the lie won: seq %d, %q", got.Seq, got.V)
			}
			if st.Invalid == 0 {
				t.Errorf("the liar was not queried (stats %+v); the test proves nothing", st)
			}
		})
	}
}

// FuzzItemVerify: Verify never panics; an item it accepts verifies again,
// and an anacrolix node would accept it too.
func FuzzItemVerify(f *testing.F) {
	key, _ := identity.NewPrivateKey(bytes.Repeat([]byte{5}, 32))
	for _, it := range []*Item{
		signItem(key, nil, 1, []byte("5:hello")),
		signItem(key, []byte("salt"), 1_800_000_000, []byte("d1:ai1e1:bl1:xee")),
		signItem(key, nil, 0, []byte("i-7e")),
	} {
		f.Add(it.Key[:], it.Salt, it.Seq, it.V, it.Sig[:])
	}
	f.Fuzz(func(t *testing.T, k, salt []byte, seq int64, v, sig []byte) {
		it := &Item{Salt: salt, Seq: seq, V: v}
		copy(it.Key[:], k)
		copy(it.Sig[:], sig)
		if it.Verify() != nil {
			return
		}
		again := &Item{Key: it.Key, Salt: bytes.Clone(salt), Seq: seq, V: bytes.Clone(v), Sig: it.Sig}
		if err := again.Verify(); err != nil {
			t.Fatalf("verified once, then not: %v", err)
		}
		if err := libraryAccepts(it); err != nil {
			t.Fatalf("verified, but an anacrolix node refuses it: %v", err)
		}
	})
}
