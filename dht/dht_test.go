package dht

import (
	"bytes"
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/anacrolix/dht/v2/bep44"
	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/torrent/bencode"

	"github.com/keyhole-p2p/keyhole/identity"
	"github.com/keyhole-p2p/keyhole/record"
)

func startTestnet(t testing.TB, n int) *Testnet {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tn, err := StartTestnet(ctx, n, TestnetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tn.Close)
	return tn
}

// client is a node outside the testnet that joins it like a user would.
func client(t testing.TB, tn *Testnet) *Node {
	t.Helper()
	n, err := New(Config{Addr: "127.0.0.1:0", Bootstrap: tn.Bootstrap(), Testnet: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

func packet(t testing.TB, key *identity.PrivateKey, at time.Time, note string) *record.SignedPacket {
	t.Helper()
	dns, err := record.EncodeZone(key.Public(), []record.RR{record.TXT("_note", 60, []byte(note))})
	if err != nil {
		t.Fatal(err)
	}
	p, err := record.Sign(key, dns, record.Micros(at))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestPutGetSeqCAS(t *testing.T) {
	tn := startTestnet(t, 40)
	pub, res := client(t, tn), client(t, tn)
	key, _ := identity.Generate()
	now := time.Now()

	p1 := packet(t, key, now, "one")
	r, err := pub.Put(ctxT(t, 20*time.Second), p1, 0)
	if err != nil {
		t.Fatal(err)
	}
	if r.Stored < 8 || r.Stored > r.Tried {
		t.Fatalf("stored on %d of %d nodes; a 40-node testnet should give at least 8", r.Stored, r.Tried)
	}
	got, st, err := res.Get(ctxT(t, 10*time.Second), key.Public(), GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), p1.Bytes()) || st.Values == 0 || st.Invalid != 0 {
		t.Fatalf("got %v %+v", got.Time(), st)
	}

	// A newer record replaces it everywhere the lookup looks.
	p2 := packet(t, key, now.Add(time.Second), "two")
	if _, err := pub.Put(ctxT(t, 20*time.Second), p2, 0); err != nil {
		t.Fatal(err)
	}
	got, _, err = res.Get(ctxT(t, 10*time.Second), key.Public(), GetOptions{})
	if err != nil || got.Timestamp != p2.Timestamp {
		t.Fatalf("after update: %v %v", got, err)
	}
	// Putting the old one again is refused: the network holds a newer seq.
	if _, err := res.Put(ctxT(t, 20*time.Second), p1, 0); !errors.Is(err, ErrOutdated) {
		t.Fatalf("stale put: %v", err)
	}
	// Compare-and-swap: the right cas succeeds, a wrong one is refused.
	p3 := packet(t, key, now.Add(2*time.Second), "three")
	if r, err := pub.Put(ctxT(t, 20*time.Second), p3, p1.Timestamp); err == nil || r.Stored != 0 {
		t.Fatalf("wrong cas stored on %d nodes (err %v)", r.Stored, err)
	}
	if r, err := pub.Put(ctxT(t, 20*time.Second), p3, p2.Timestamp); err != nil || r.Stored == 0 {
		t.Fatalf("right cas: %+v %v", r, err)
	}
	// Asking only for newer records than we hold returns nothing new.
	if _, _, err := res.Get(ctxT(t, 10*time.Second), key.Public(), GetOptions{NewerThan: p3.Timestamp}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("NewerThan: %v", err)
	}
	// An unknown key is not found, and the search ends by itself.
	other, _ := identity.Generate()
	if _, _, err := res.Get(ctxT(t, 15*time.Second), other.Public(), GetOptions{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown key: %v", err)
	}
}

func TestPutRefusesForgedPacket(t *testing.T) {
	tn := startTestnet(t, 4)
	key, _ := identity.Generate()
	p := packet(t, key, time.Now(), "x")
	p.DNS[len(p.DNS)-1] ^= 1
	if _, err := tn.Nodes[0].Put(ctxT(t, 5*time.Second), p, 0); err == nil {
		t.Fatal("published a packet with a bad signature")
	}
}

// liar answers every query as a DHT node would, but with a forged record
// for the key (newer seq, bad signature) and optionally other garbage.
type liar struct {
	conn net.PacketConn
	id   krpc.ID
}

func startLiar(t *testing.T, key identity.PublicKey, reply func(q krpc.Msg) krpc.Msg) *liar {
	return startLiarNear(t, bep44.MakeMutableTarget(key, nil), reply)
}

// startLiarNear starts a liar whose ID is right next to target: it is
// then among the nodes every lookup for target asks first.
func startLiarNear(t *testing.T, target bep44.Target, reply func(q krpc.Msg) krpc.Msg) *liar {
	id := krpc.ID(target)
	id[19] ^= 1
	return startFakeNode(t, id, func(q krpc.Msg) (krpc.Msg, bool) { return reply(q), true })
}

// startFakeNode answers queries with whatever reply says, or not at all
// when it says false.
func startFakeNode(t *testing.T, id krpc.ID, reply func(q krpc.Msg) (krpc.Msg, bool)) *liar {
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &liar{conn: conn, id: id}
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			var q krpc.Msg
			if bencode.Unmarshal(buf[:n], &q) != nil || q.Y != "q" {
				continue
			}
			m, ok := reply(q)
			if !ok {
				continue
			}
			m.T, m.Y = q.T, "r"
			if m.R == nil {
				m.R = &krpc.Return{}
			}
			m.R.ID = l.id
			b, err := bencode.Marshal(m)
			if err == nil {
				conn.WriteTo(b, from)
			}
		}
	}()
	t.Cleanup(func() { conn.Close() })
	return l
}

func (l *liar) addr() *net.UDPAddr { return l.conn.LocalAddr().(*net.UDPAddr) }

// A node that returns forged records never wins over the real one, even
// with a higher seq, an oversize value, or another key's item.
func TestGetIgnoresLyingNodes(t *testing.T) {
	tn := startTestnet(t, 20)
	key, _ := identity.Generate()
	other, _ := identity.Generate()
	real := packet(t, key, time.Now(), "real")
	if _, err := tn.Nodes[5].Put(ctxT(t, 20*time.Second), real, 0); err != nil {
		t.Fatal(err)
	}
	forgedSeq := int64(real.Timestamp + 1e9)
	otherPkt := packet(t, other, time.Now().Add(time.Hour), "other")
	lies := []func(q krpc.Msg) krpc.Msg{
		func(q krpc.Msg) krpc.Msg { // forged signature, newer seq
			v := bencode.MustMarshal(real.DNS)
			return krpc.Msg{R: &krpc.Return{Token: ptr("t"), Bep44Return: krpc.Bep44Return{K: key.Public(), V: v, Seq: &forgedSeq, Sig: real.Signature}}}
		},
		func(q krpc.Msg) krpc.Msg { // another key's valid item
			v := bencode.MustMarshal(otherPkt.DNS)
			seq := int64(otherPkt.Timestamp)
			return krpc.Msg{R: &krpc.Return{Token: ptr("t"), Bep44Return: krpc.Bep44Return{K: other.Public(), V: v, Seq: &seq, Sig: otherPkt.Signature}}}
		},
		func(q krpc.Msg) krpc.Msg { // oversize value
			v := bencode.MustMarshal(make([]byte, 5000))
			return krpc.Msg{R: &krpc.Return{Token: ptr("t"), Bep44Return: krpc.Bep44Return{K: key.Public(), V: v, Seq: &forgedSeq}}}
		},
		func(q krpc.Msg) krpc.Msg { // value that is not a byte string
			return krpc.Msg{R: &krpc.Return{Token: ptr("t"), Bep44Return: krpc.Bep44Return{K: key.Public(), V: bencode.MustMarshal([]int{1, 2}), Seq: &forgedSeq}}}
		},
	}
	c := clientNear(t, tn, bep44.MakeMutableTarget(key.Public(), nil))
	for i, lie := range lies {
		l := startLiar(t, key.Public(), lie)
		c.srv.Ping(l.addr())
		got, st, err := c.Get(ctxT(t, 10*time.Second), key.Public(), GetOptions{Grace: 300 * time.Millisecond})
		if err != nil {
			t.Fatalf("lie %d: %v", i, err)
		}
		if got.Timestamp != real.Timestamp || !bytes.Equal(got.DNS, real.DNS) {
			t.Fatalf("lie %d won: seq %d", i, got.Timestamp)
		}
		if st.Invalid == 0 {
			t.Errorf("lie %d: the liar was not queried (stats %+v); the test proves nothing", i, st)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// Malformed KRPC and hostile puts sent straight to a node's socket: it
// keeps working and stores nothing it should not.
func TestNodeSurvivesHostileKRPC(t *testing.T) {
	tn := startTestnet(t, 6)
	target := tn.Nodes[2]
	key, _ := identity.Generate()
	good := packet(t, key, time.Now(), "good")
	if _, err := tn.Nodes[0].Put(ctxT(t, 10*time.Second), good, 0); err != nil {
		t.Fatal(err)
	}
	before := target.StoredItems()
	conn, err := net.Dial("udp", target.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	forged := *good
	forged.Timestamp += 5
	seq := int64(forged.Timestamp)
	k := [32]byte(key.Public())
	token := getToken(t, conn, key.Public())
	var hostile [][]byte
	hostile = append(hostile,
		[]byte("d1:ad2:id20:"), []byte("garbage"), []byte{'d'}, bytes.Repeat([]byte("l"), 10000), []byte("de"),
		[]byte("d1:q3:put1:t2:aa1:y1:qe"), // put without arguments
	)
	putMsg := func(v []byte, sig [64]byte, seq int64) []byte {
		return bencode.MustMarshal(map[string]any{"t": "ab", "y": "q", "q": "put", "a": map[string]any{
			"id": string(bytes.Repeat([]byte{1}, 20)), "k": string(k[:]), "seq": seq, "sig": string(sig[:]), "token": token, "v": string(v)}})
	}
	hostile = append(hostile, putMsg(forged.DNS, forged.Signature, seq)) // newer seq, signature of the old one
	hostile = append(hostile, putMsg(make([]byte, 1500), [64]byte{}, seq), make([]byte, 65000))
	for i := 0; i < 50; i++ {
		for _, h := range hostile {
			conn.Write(h)
		}
	}
	time.Sleep(200 * time.Millisecond)
	if after := target.StoredItems(); after > before {
		t.Fatalf("hostile puts were stored: %d -> %d items", before, after)
	}
	got, _, err := tn.Nodes[4].Get(ctxT(t, 10*time.Second), key.Public(), GetOptions{})
	if err != nil || got.Timestamp != good.Timestamp {
		t.Fatalf("after the attack: %v %v", got, err)
	}
	// Positive control: the same socket and token do store a valid put, so
	// the refusals above were the node's checks, not a broken harness.
	newer := packet(t, key, time.Now().Add(time.Minute), "newer")
	conn.Write(putMsg(newer.DNS, newer.Signature, int64(newer.Timestamp)))
	deadline := time.Now().Add(2 * time.Second)
	for {
		it, err := target.store.Get(bep44.MakeMutableTarget(key.Public(), nil))
		if err == nil && it.Seq == int64(newer.Timestamp) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("positive control: a valid put over the same socket was not stored")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// getToken asks for a write token over conn itself: tokens are bound to
// the asking address, so the hostile puts must come from the same socket.
func getToken(t *testing.T, conn net.Conn, key identity.PublicKey) string {
	target := bep44.MakeMutableTarget(key, nil)
	q := bencode.MustMarshal(map[string]any{"t": "tk", "y": "q", "q": "get", "a": map[string]any{
		"id": string(bytes.Repeat([]byte{1}, 20)), "target": string(target[:])}})
	buf := make([]byte, 65536)
	for try := 0; try < 5; try++ {
		conn.Write(q)
		conn.SetReadDeadline(time.Now().Add(time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			continue
		}
		var m krpc.Msg
		if bencode.Unmarshal(buf[:n], &m) == nil && m.R != nil && m.R.Token != nil {
			conn.SetReadDeadline(time.Time{})
			return *m.R.Token
		}
	}
	t.Fatal("no token")
	return ""
}

func TestBoundedStore(t *testing.T) {
	s := newBoundedStore(3)
	keys := make([]*identity.PrivateKey, 5)
	var items []*bep44.Item
	for i := range keys {
		keys[i], _ = identity.Generate()
		it := &bep44.Item{K: keys[i].Public(), Seq: 1, V: []byte("v")}
		items = append(items, it)
		if err := s.Put(it); err != nil {
			t.Fatal(err)
		}
	}
	if s.Len() != 3 {
		t.Fatalf("len %d, want the bound 3", s.Len())
	}
	for i, it := range items {
		_, err := s.Get(it.Target())
		if (i < 2) != errors.Is(err, bep44.ErrItemNotFound) {
			t.Errorf("item %d: %v (oldest two should be gone)", i, err)
		}
	}
	// CAS is checked against the stored seq, and the stored copy keeps no cas.
	upd := &bep44.Item{K: keys[4].Public(), Seq: 2, Cas: 7, V: []byte("w")}
	if err := s.Put(upd); !errors.Is(err, bep44.ErrCasHashMismatched) {
		t.Fatalf("wrong cas: %v", err)
	}
	upd.Cas = 1
	if err := s.Put(upd); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Get(upd.Target())
	if got.Seq != 2 || got.Cas != 0 {
		t.Fatalf("stored %+v", got)
	}
}

// A 200-node testnet on loopback: it starts, and a record put from one
// node is found from others.
func TestTestnet200(t *testing.T) {
	if testing.Short() {
		t.Skip("200-node testnet skipped in -short mode")
	}
	start := time.Now()
	tn := startTestnet(t, 200)
	t.Logf("200 nodes up in %v", time.Since(start).Round(time.Millisecond))
	key, _ := identity.Generate()
	p := packet(t, key, time.Now(), "big")
	r, err := tn.Nodes[17].Put(ctxT(t, 30*time.Second), p, 0)
	if err != nil {
		t.Fatal(err)
	}
	if r.Stored < 10 {
		t.Fatalf("stored on only %d of %d", r.Stored, r.Tried)
	}
	for _, i := range []int{0, 50, 123, 199} {
		got, st, err := tn.Nodes[i].Get(ctxT(t, 10*time.Second), key.Public(), GetOptions{})
		if err != nil || got.Timestamp != p.Timestamp {
			t.Fatalf("node %d: %v", i, err)
		}
		t.Logf("node %d found it in %v after %d answers", i, st.Elapsed.Round(time.Microsecond), st.Responses)
	}
}

// FuzzItemPacket feeds arbitrary get replies to the decoder: it must never
// panic, and must accept only items that verify under the asked-for key.
func FuzzItemPacket(f *testing.F) {
	key, _ := identity.NewPrivateKey(bytes.Repeat([]byte{5}, 32))
	p := packet(f, key, time.Unix(1_800_000_000, 0), "seed")
	pub := key.Public()
	f.Add(pub[:], []byte(bencode.MustMarshal(p.DNS)), int64(p.Timestamp), p.Signature[:])
	f.Fuzz(func(t *testing.T, k, v []byte, seq int64, sig []byte) {
		r := &krpc.Return{}
		copy(r.K[:], k)
		copy(r.Sig[:], sig)
		r.V, r.Seq = v, &seq
		got, err := itemPacket(key.Public(), r)
		if err != nil {
			return
		}
		if err := got.VerifySignature(); err != nil || got.PublicKey != key.Public() {
			t.Fatalf("accepted an item that does not verify: %v", err)
		}
	})
}

// clientNear is a node on tn whose ID sits next to target, so liars that
// answer for target land in a deep, empty bucket of its routing table
// and are kept, where a random ID could file them in a bucket the
// testnet's nodes already fill.
func clientNear(t *testing.T, tn *Testnet, target bep44.Target) *Node {
	t.Helper()
	near := krpc.ID(target)
	near[19] ^= 2
	c, err := New(Config{Addr: "127.0.0.1:0", Bootstrap: tn.Bootstrap(), Testnet: true, id: &near})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Bootstrap(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	return c
}
