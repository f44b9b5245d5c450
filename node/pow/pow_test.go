package pow

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/vectors.json")

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newTestIssuer(t testing.TB, c *clock) *Issuer {
	t.Helper()
	i, err := NewIssuer([]byte("0123456789abcdef0123456789abcdef"), Options{Now: c.now, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return i
}

func TestCheck(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	i := newTestIssuer(t, c)
	other, err := NewIssuer([]byte("another secret of sixteen+ bytes"), Options{Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	b := Binding("room/abcdefgh", []byte("hello"))
	solve := func(tok string, bits int) uint64 {
		n, err := Solve(context.Background(), tok, b, bits)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	fresh := i.Token()
	nonce := solve(fresh, 10)
	// A nonce that fails 10 bits, to prove the work check bites.
	var weak uint64
	for LeadingZeros(Digest(mustDecode(t, fresh), b, weak)) >= 10 {
		weak++
	}
	foreign := other.Token()
	foreignNonce := solve(foreign, 10)
	raw := mustDecode(t, fresh)
	raw[7] ^= 1 // one second later: the MAC no longer matches
	tampered := base64.RawURLEncoding.EncodeToString(raw)
	tests := []struct {
		name    string
		token   string
		nonce   uint64
		binding [32]byte
		bits    int
		advance time.Duration
		want    error
	}{
		{"valid", fresh, nonce, b, 10, 0, nil},
		{"same solution again", fresh, nonce, b, 10, 0, ErrReused},
		{"not enough work", fresh, weak, b, 10, 0, ErrInsufficient},
		{"work for another body", fresh, nonce, Binding("room/abcdefgh", []byte("hellO")), 10, 0, ErrInsufficient},
		{"harder than solved", fresh, nonce, b, 40, 0, ErrInsufficient},
		{"token of another node", foreign, foreignNonce, b, 10, 0, ErrForged},
		{"tampered timestamp", tampered, nonce, b, 10, 0, ErrForged},
		{"stale", fresh, solve(fresh, 4) + 0, b, 0, 2 * time.Minute, ErrStale},
		{"garbage", "not-a-token", 0, b, 0, 0, ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c.t = c.t.Add(tc.advance)
			defer func() { c.t = c.t.Add(-tc.advance) }()
			err := i.Check(tc.token, tc.nonce, tc.binding, tc.bits)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Check = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestTokenFromTheFutureIsStale(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	i := newTestIssuer(t, c)
	c.t = c.t.Add(time.Minute)
	tok := i.Token()
	c.t = c.t.Add(-time.Minute)
	if err := i.Check(tok, 0, Binding("token", nil), 0); !errors.Is(err, ErrStale) {
		t.Fatalf("token issued a minute ahead: %v, want ErrStale", err)
	}
}

// The spent cache forgets a solution only once its token is too old to
// pass anyway, and is bounded: when full it refuses rather than grows.
func TestSpentCacheBoundedAndExpires(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	i, err := NewIssuer([]byte("0123456789abcdef"), Options{Now: c.now, TTL: time.Minute, MaxSpent: 3})
	if err != nil {
		t.Fatal(err)
	}
	tok := i.Token()
	for n := uint64(0); n < 3; n++ {
		if err := i.Check(tok, n, Binding("token", nil), 0); err != nil {
			t.Fatalf("solution %d: %v", n, err)
		}
	}
	if err := i.Check(tok, 3, Binding("token", nil), 0); !errors.Is(err, ErrBusy) {
		t.Fatalf("fourth solution with a cache of 3: %v, want ErrBusy", err)
	}
	if got := i.Spent(); got != 3 {
		t.Fatalf("Spent = %d, want 3", got)
	}
	c.t = c.t.Add(61 * time.Second)
	if got := i.Spent(); got != 0 {
		t.Fatalf("Spent after the TTL = %d, want 0", got)
	}
	if err := i.Check(i.Token(), 0, Binding("token", nil), 0); err != nil {
		t.Fatalf("fresh solution after expiry: %v", err)
	}
}

func TestParseHeader(t *testing.T) {
	tok := newTestIssuer(t, &clock{t: time.Unix(1_800_000_000, 0)}).Token()
	tests := []struct {
		in    string
		nonce uint64
		ok    bool
	}{
		{tok + ".0", 0, true},
		{tok + ".123", 123, true},
		{" " + tok + ".9007199254740991 ", MaxNonce, true},
		{tok + ".9007199254740992", 0, false}, // beyond JavaScript's exact integers
		{tok + ".012", 0, false},              // one spelling per nonce
		{tok + ".-1", 0, false},
		{tok + ".", 0, false},
		{tok, 0, false},
		{tok[1:] + ".1", 0, false},
		{strings.Replace(tok, tok[:1], "+", 1) + ".1", 0, false},
		{"", 0, false},
	}
	for _, tc := range tests {
		gotTok, n, err := ParseHeader(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("ParseHeader(%q) err = %v, want ok=%v", tc.in, err, tc.ok)
			continue
		}
		if tc.ok && (n != tc.nonce || gotTok != tok) {
			t.Errorf("ParseHeader(%q) = %q,%d", tc.in, gotTok, n)
		}
		if !tc.ok && !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseHeader(%q) error %v is not ErrMalformed", tc.in, err)
		}
	}
	if h := Header(tok, 42); h != tok+".42" {
		t.Fatalf("Header = %q", h)
	}
}

func TestLeadingZeros(t *testing.T) {
	var d [32]byte
	if LeadingZeros(d) != 256 {
		t.Fatal("all zero")
	}
	d[0] = 0x80
	if LeadingZeros(d) != 0 {
		t.Fatal("top bit")
	}
	d[0], d[9] = 0, 0x01
	if LeadingZeros(d) != 79 {
		t.Fatalf("got %d, want 79", LeadingZeros(d))
	}
}

func TestSolveRespectsContext(t *testing.T) {
	tok := newTestIssuer(t, &clock{t: time.Unix(1_800_000_000, 0)}).Token()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Solve(ctx, tok, Binding("token", nil), 60); !errors.Is(err, context.Canceled) {
		t.Fatalf("Solve with a cancelled context: %v", err)
	}
}

// vector is one entry of testdata/vectors.json, which the browser client
// checks its own solver against.
type vector struct {
	Token    string `json:"token"`
	Endpoint string `json:"endpoint"`
	Body     string `json:"body"`
	Binding  string `json:"binding"`
	Bits     int    `json:"bits"`
	Nonce    uint64 `json:"nonce"`
	Digest   string `json:"digest"`
}

func TestVectors(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	tok := newTestIssuer(t, c).Token()
	cases := []struct {
		endpoint, body string
		bits           int
	}{
		{"token", "", 0},
		{"token", "", 8},
		{"room/0123456789abcdef", `{"type":"offer","sdp":"v=0"}`, 12},
		{"dht-put", `{"k":"00"}`, 16},
	}
	var got []vector
	for _, tc := range cases {
		b := Binding(tc.endpoint, []byte(tc.body))
		n, err := Solve(context.Background(), tok, b, tc.bits)
		if err != nil {
			t.Fatal(err)
		}
		d := Digest(mustDecode(t, tok), b, n)
		got = append(got, vector{tok, tc.endpoint, tc.body, hex.EncodeToString(b[:]), tc.bits, n, hex.EncodeToString(d[:])})
	}
	const path = "testdata/vectors.json"
	if *update {
		out, _ := json.MarshalIndent(got, "", "  ")
		if err := os.WriteFile(path, append(out, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run TestVectors -update ./node/pow/)", err)
	}
	var want []vector
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	if len(want) != len(got) {
		t.Fatalf("%d vectors on disk, %d computed", len(want), len(got))
	}
	for k := range want {
		if want[k] != got[k] {
			t.Errorf("vector %d: disk %+v, computed %+v", k, want[k], got[k])
		}
	}
}

func mustDecode(t testing.TB, tok string) []byte {
	raw, err := decodeToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func FuzzParseHeader(f *testing.F) {
	tok := newTestIssuer(f, &clock{t: time.Unix(1_800_000_000, 0)}).Token()
	f.Add(tok + ".1")
	f.Add("x.y")
	f.Add(tok + ".9007199254740991")
	f.Fuzz(func(t *testing.T, s string) {
		tok, n, err := ParseHeader(s)
		if err != nil {
			return
		}
		// Whatever parses re-serialises to the same meaning.
		tok2, n2, err := ParseHeader(Header(tok, n))
		if err != nil || tok2 != tok || n2 != n || n > MaxNonce {
			t.Fatalf("%q parsed to %q,%d but its re-encoding gives %q,%d,%v", s, tok, n, tok2, n2, err)
		}
	})
}
