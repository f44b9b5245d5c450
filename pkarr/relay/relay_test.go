package relay

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/keyhole-p2p/keyhole/dht"
	"github.com/keyhole-p2p/keyhole/identity"
	"github.com/keyhole-p2p/keyhole/pkarr"
	"github.com/keyhole-p2p/keyhole/record"
)

func packet(t testing.TB, key *identity.PrivateKey, at time.Time, ttl uint32) *record.SignedPacket {
	t.Helper()
	dns, err := record.EncodeZone(key.Public(), []record.RR{record.TXT("_x", ttl, []byte("v"))})
	if err != nil {
		t.Fatal(err)
	}
	p, err := record.Sign(key, dns, record.Micros(at))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func do(t *testing.T, method, url string, body []byte, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, url, bytes.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func TestRelayHTTPAPI(t *testing.T) {
	srv := New(Config{})
	defer srv.Close()
	ts := httptest.NewServer(srv)
	defer ts.Close()
	key, _ := identity.Generate()
	now := time.Now()
	p := packet(t, key, now, 120)
	url := pkarr.URL(ts.URL, key.Public())

	if resp, _ := do(t, "GET", url, nil, nil); resp.StatusCode != 404 {
		t.Fatalf("unknown key: %s", resp.Status)
	}
	if resp, b := do(t, "PUT", url, p.RelayPayload(), nil); resp.StatusCode != 204 {
		t.Fatalf("put: %s %s", resp.Status, b)
	}
	resp, b := do(t, "GET", url, nil, nil)
	if resp.StatusCode != 200 || !bytes.Equal(b, p.RelayPayload()) || resp.Header.Get("Content-Type") != pkarr.ContentType {
		t.Fatalf("get: %s %q", resp.Status, resp.Header)
	}
	lm := resp.Header.Get("Last-Modified")
	if lm != p.Time().UTC().Format(http.TimeFormat) {
		t.Errorf("Last-Modified %q", lm)
	}
	if cc := resp.Header.Get("Cache-Control"); !strings.HasPrefix(cc, "public, max-age=1") {
		t.Errorf("Cache-Control %q, want about the record's 120 s TTL", cc)
	}
	if resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Error("no CORS header: browsers could not use this relay")
	}
	if resp, _ := do(t, "GET", url, nil, map[string]string{"If-Modified-Since": lm}); resp.StatusCode != 304 {
		t.Errorf("If-Modified-Since now: %s", resp.Status)
	}
	old := p.Time().Add(-time.Hour).UTC().Format(http.TimeFormat)
	if resp, _ := do(t, "GET", url, nil, map[string]string{"If-Modified-Since": old}); resp.StatusCode != 200 {
		t.Errorf("If-Modified-Since an hour before: %s", resp.Status)
	}
	// The same packet again is fine; an older or a different one with the same seq conflicts.
	if resp, _ := do(t, "PUT", url, p.RelayPayload(), nil); resp.StatusCode != 204 {
		t.Errorf("same packet again: %s", resp.Status)
	}
	older := packet(t, key, now.Add(-time.Minute), 120)
	if resp, _ := do(t, "PUT", url, older.RelayPayload(), nil); resp.StatusCode != 409 {
		t.Errorf("older: %s", resp.Status)
	}
	twin := packet(t, key, now, 60) // same timestamp, different content
	if resp, _ := do(t, "PUT", url, twin.RelayPayload(), nil); resp.StatusCode != 409 {
		t.Errorf("same seq, other content: %s", resp.Status)
	}
	if _, b := do(t, "GET", url, nil, nil); !bytes.Equal(b, p.RelayPayload()) {
		t.Fatal("a refused put replaced the record")
	}

	bad := p.RelayPayload()
	bad[10] ^= 1
	other, _ := identity.Generate()
	future := packet(t, key, now.Add(3*time.Hour), 60)
	for _, tc := range []struct {
		name, url string
		body      []byte
		code      int
		say       string
	}{
		{"flipped bit", url, bad, 400, "bad signature"},
		{"truncated", url, p.RelayPayload()[:40], 400, "truncated"},
		{"another key's path", pkarr.URL(ts.URL, other.Public()), p.RelayPayload(), 400, "bad signature"},
		{"too large", url, make([]byte, pkarr.MaxBody+1), 413, "at most 1000"},
		{"future", url, future.RelayPayload(), 400, "future"},
		{"bad key", ts.URL + "/notakey", p.RelayPayload(), 400, "52 characters"},
	} {
		resp, b := do(t, "PUT", tc.url, tc.body, nil)
		if resp.StatusCode != tc.code || !strings.Contains(string(b), tc.say) {
			t.Errorf("%s: %s %q", tc.name, resp.Status, b)
		}
	}
	if resp, _ := do(t, "DELETE", url, nil, nil); resp.StatusCode != 405 {
		t.Errorf("DELETE: %s", resp.Status)
	}
	if resp, _ := do(t, "OPTIONS", url, nil, nil); resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Methods") == "" {
		t.Errorf("preflight: %s", resp.Status)
	}

	// The Go client agrees with the server.
	c := &pkarr.Client{}
	got, err := c.Get(context.Background(), ts.URL, key.Public())
	if err != nil || !bytes.Equal(got.Bytes(), p.Bytes()) {
		t.Fatalf("client get: %v", err)
	}
	if err := c.Put(context.Background(), ts.URL, older); !errors.Is(err, pkarr.ErrConflict) {
		t.Errorf("client put older: %v", err)
	}
	if _, err := c.Get(context.Background(), ts.URL, other.Public()); !errors.Is(err, pkarr.ErrNotFound) {
		t.Errorf("client get unknown: %v", err)
	}
}

func TestRelayRateLimit(t *testing.T) {
	srv := New(Config{RatePerIP: 1, BurstPerIP: 3})
	defer srv.Close()
	ts := httptest.NewServer(srv)
	defer ts.Close()
	key, _ := identity.Generate()
	codes := map[int]int{}
	for i := 0; i < 10; i++ {
		resp, _ := do(t, "GET", pkarr.URL(ts.URL, key.Public()), nil, nil)
		codes[resp.StatusCode]++
		if resp.StatusCode == 429 && resp.Header.Get("Retry-After") == "" {
			t.Error("429 without Retry-After")
		}
	}
	if codes[429] < 6 || codes[404] < 3 {
		t.Fatalf("codes %v: want the burst of 3 served and the rest limited", codes)
	}
	err := (&pkarr.Client{}).Put(context.Background(), ts.URL, packet(t, key, time.Now(), 60))
	if !errors.Is(err, pkarr.ErrRateLimited) {
		t.Errorf("client sees %v", err)
	}
}

// A relay backed by a DHT serves records it never received over HTTP and
// republishes the ones it did receive.
func TestRelayWithDHT(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tn, err := dht.StartTestnet(ctx, 20, dht.TestnetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer tn.Close()
	node, err := dht.New(dht.Config{Addr: "127.0.0.1:0", Bootstrap: tn.Bootstrap(), Testnet: true})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	srv := New(Config{DHT: node})
	defer srv.Close()
	ts := httptest.NewServer(srv)
	defer ts.Close()
	c := &pkarr.Client{}

	// On the DHT only: the relay looks it up.
	a, _ := identity.Generate()
	pa := packet(t, a, time.Now(), 60)
	if _, err := tn.Nodes[3].Put(ctx, pa, 0); err != nil {
		t.Fatal(err)
	}
	got, err := c.Get(ctx, ts.URL, a.Public())
	if err != nil || got.Timestamp != pa.Timestamp {
		t.Fatalf("relay lookup through the DHT: %v", err)
	}
	// Put to the relay only: it reaches the DHT.
	b, _ := identity.Generate()
	pb := packet(t, b, time.Now(), 60)
	if err := c.Put(ctx, ts.URL, pb); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		got, _, err := tn.Nodes[11].Get(ctx, b.Public(), dht.GetOptions{})
		if err == nil && got.Timestamp == pb.Timestamp {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("record put to the relay never reached the DHT: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A relay that lies is caught by the client.
func TestClientRejectsLyingRelay(t *testing.T) {
	key, _ := identity.Generate()
	other, _ := identity.Generate()
	p := packet(t, other, time.Now(), 60) // valid, but for another key
	forged := packet(t, key, time.Now(), 60).RelayPayload()
	forged[len(forged)-1] ^= 1
	for name, body := range map[string][]byte{"other key": p.RelayPayload(), "forged": forged, "short": []byte("x"), "huge": make([]byte, 5000)} {
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) }))
		_, err := (&pkarr.Client{}).Get(context.Background(), ts.URL, key.Public())
		if !errors.Is(err, pkarr.ErrBadAnswer) {
			t.Errorf("%s: %v", name, err)
		}
		ts.Close()
	}
}

// FuzzRelayPut throws arbitrary bodies at PUT: the relay answers with one
// of the documented codes and stores only what verifies.
func FuzzRelayPut(f *testing.F) {
	key, _ := identity.NewPrivateKey(bytes.Repeat([]byte{6}, 32))
	p := packet(f, key, time.Now(), 60)
	f.Add(p.RelayPayload())
	f.Add([]byte{})
	srv := New(Config{RatePerIP: 1e9, BurstPerIP: 1 << 30})
	defer srv.Close()
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest("PUT", "/"+key.Public().String(), bytes.NewReader(body))
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, req)
		switch w.Code {
		case 204:
			got, err := record.ParseRelayPayload(key.Public(), body)
			if err != nil || got.VerifySignature() != nil {
				t.Fatalf("stored an unverifiable body: %v", err)
			}
		case 400, 409, 413:
		default:
			t.Fatalf("unexpected status %d", w.Code)
		}
	})
}
