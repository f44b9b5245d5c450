package client

// The leak scanner behind the blindness and wire tests, and the
// positive controls that keep it honest: a scanner that found nothing
// because it looked for the wrong bytes would make every blindness test
// pass vacuously, so each encoding it claims to cover is proven here by
// planting a secret in that encoding, inside realistic surrounding
// bytes, and requiring a finding.

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"unicode/utf8"
)

// secret is something a capture must not contain. text secrets are also
// looked for in their JSON-escaped spellings.
type secret struct {
	name string
	raw  []byte
	text bool
}

func textSecret(name, s string) secret { return secret{name: name, raw: []byte(s), text: true} }
func binSecret(name string, b []byte) secret {
	return secret{name: name, raw: append([]byte(nil), b...)}
}

// needle is one spelling of a secret.
type needle struct {
	secret, enc string
	b           []byte
}

// finding is a needle that matched.
type finding struct{ secret, enc string }

func (f finding) String() string { return f.secret + " as " + f.enc }

// b64Variants are the base64 alphabets and paddings a leak may use.
var b64Variants = []struct {
	name string
	enc  *base64.Encoding
}{
	{"b64std", base64.StdEncoding},
	{"b64std-raw", base64.RawStdEncoding},
	{"b64url", base64.URLEncoding},
	{"b64url-raw", base64.RawURLEncoding},
}

// b64Stable is the part of the base64 encoding of b that does not
// depend on its neighbours when b starts `align` bytes into the encoded
// data: only characters whose six bits all come from b. A secret buried
// anywhere inside a larger base64 blob contains exactly one of the three
// alignments' stable parts, whatever the padding.
func b64Stable(enc *base64.Encoding, b []byte, align int) string {
	buf := append(bytes.Repeat([]byte{0xA5}, align), b...)
	s := enc.EncodeToString(buf)
	start := (8*align + 5) / 6
	end := 8 * (align + len(b)) / 6
	return s[start:end]
}

// latin1 spells each byte as the UTF-8 of the rune with that value: what
// a byte string becomes when something treats it as ISO-8859-1 text.
func latin1(b []byte) []byte {
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = utf8.AppendRune(out, rune(c))
	}
	return out
}

// jsonBody is the inside of the JSON string literal for s.
func jsonBody(s string, html bool) string {
	var buf bytes.Buffer
	e := json.NewEncoder(&buf)
	e.SetEscapeHTML(html)
	e.Encode(s)
	out := strings.TrimSuffix(buf.String(), "\n")
	return out[1 : len(out)-1]
}

// jsonUEscape escapes every control character, quote and backslash as
// \u00XX, as some encoders do instead of \r \n.
func jsonUEscape(s string, upper bool) string {
	var b strings.Builder
	for _, r := range s {
		if r < 0x20 || r == '"' || r == '\\' {
			f := "\\u%04x"
			if upper {
				f = "\\u%04X"
			}
			fmt.Fprintf(&b, f, r)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// jsonForms are the escaped spellings of a text secret, as it would
// appear inside a JSON string (or inside a JSON string inside a JSON
// string, as when a logged message quotes a frame).
func jsonForms(s string) []needle {
	return []needle{
		{enc: "json", b: []byte(jsonBody(s, true))},
		{enc: "json-nohtml", b: []byte(jsonBody(s, false))},
		{enc: "json-u", b: []byte(jsonUEscape(s, false))},
		{enc: "json-U", b: []byte(jsonUEscape(s, true))},
		{enc: "json-slash", b: []byte(strings.ReplaceAll(jsonBody(s, false), "/", `\/`))},
		{enc: "json2", b: []byte(jsonBody(jsonBody(s, true), true))},
	}
}

// byteEncodings are the spellings of a byte string.
func byteEncodings(b []byte) []needle {
	out := []needle{
		{enc: "raw", b: b},
		{enc: "latin1", b: latin1(b)},
		{enc: "hex", b: []byte(hex.EncodeToString(b))},
		{enc: "HEX", b: []byte(strings.ToUpper(hex.EncodeToString(b)))},
	}
	for _, v := range b64Variants {
		out = append(out, needle{enc: v.name, b: []byte(v.enc.EncodeToString(b))})
		for align := range 3 {
			out = append(out, needle{enc: fmt.Sprintf("%s@%d", v.name, align), b: []byte(b64Stable(v.enc, b, align))})
		}
	}
	return out
}

// needles lists every spelling of s the scanner looks for.
func needles(s secret) []needle {
	if len(s.raw) < 6 {
		panic("scanner: secret " + s.name + " is too short to search for without false positives")
	}
	forms := []needle{{enc: "", b: s.raw}}
	if s.text {
		for _, j := range jsonForms(string(s.raw)) {
			if !bytes.Equal(j.b, s.raw) {
				forms = append(forms, j)
			}
		}
	}
	seen := map[string]bool{}
	var out []needle
	for _, f := range forms {
		for _, e := range byteEncodings(f.b) {
			if seen[string(e.b)] {
				continue
			}
			seen[string(e.b)] = true
			enc := e.enc
			if f.enc != "" {
				enc = f.enc + "+" + e.enc
			}
			out = append(out, needle{secret: s.name, enc: enc, b: e.b})
		}
	}
	return out
}

// scanner holds the needles of a set of secrets.
type scanner struct {
	needles []needle
	secrets []secret
}

func newScanner(secrets ...secret) *scanner {
	sc := &scanner{secrets: secrets}
	for _, s := range secrets {
		sc.needles = append(sc.needles, needles(s)...)
	}
	return sc
}

// scan returns what the capture gives away, one finding per secret and
// encoding.
func (sc *scanner) scan(capture []byte) []finding {
	var out []finding
	for _, n := range sc.needles {
		if bytes.Contains(capture, n.b) {
			out = append(out, finding{n.secret, n.enc})
		}
	}
	return out
}

// leaked reports which secrets the capture gives away in any encoding.
func (sc *scanner) leaked(capture []byte) map[string][]string {
	m := map[string][]string{}
	for _, f := range sc.scan(capture) {
		m[f.secret] = append(m[f.secret], f.enc)
	}
	return m
}

// joinCapture flattens messages into one buffer; the separator cannot
// occur in text and keeps needles from matching across messages by
// accident.
func joinCapture(msgs [][]byte) []byte {
	var b bytes.Buffer
	for _, m := range msgs {
		b.Write(m)
		b.WriteString("\x00\x00\n")
	}
	return b.Bytes()
}

// leakForm plants a secret the way a careless implementation would leak
// it: inside surrounding data, then encoded as a whole. The forms are
// written independently of needles(), so a mistake in one does not hide
// a mistake in the other.
type leakForm struct {
	name     string
	textOnly bool
	leak     func(secret []byte) []byte
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// around puts a secret between `pre` and 7 random bytes.
func around(pre int, s []byte) []byte {
	out := append(randBytes(pre), s...)
	return append(out, randBytes(7)...)
}

var leakForms = func() []leakForm {
	fs := []leakForm{
		{name: "raw", leak: func(s []byte) []byte { return s }},
		{name: "latin1", leak: func(s []byte) []byte { return []byte(string(bytesToRunes(s))) }},
		{name: "hex", leak: func(s []byte) []byte { return []byte("0x" + hex.EncodeToString(around(3, s))) }},
		{name: "HEX", leak: func(s []byte) []byte { return []byte(fmt.Sprintf("%X", around(2, s))) }},
		{name: "json-field", textOnly: true, leak: func(s []byte) []byte {
			b, _ := json.Marshal(map[string]string{"leak": "x" + string(s) + "y"})
			return b
		}},
		{name: "json-in-json", textOnly: true, leak: func(s []byte) []byte {
			inner, _ := json.Marshal(map[string]string{"sdp": string(s)})
			outer, _ := json.Marshal(map[string]string{"msg": string(inner)})
			return outer
		}},
		{name: "json-u-escapes", textOnly: true, leak: func(s []byte) []byte {
			return []byte(`{"sdp":"` + jsonUEscape(string(s), false) + `"}`)
		}},
		{name: "slog-text", textOnly: true, leak: func(s []byte) []byte {
			return []byte(fmt.Sprintf("level=INFO msg=relay sdp=%q", string(s)))
		}},
	}
	for _, v := range b64Variants {
		for pre := range 3 {
			v, pre := v, pre
			fs = append(fs, leakForm{name: fmt.Sprintf("%s-after-%d", v.name, pre), leak: func(s []byte) []byte {
				return []byte(v.enc.EncodeToString(around(pre, s)))
			}})
		}
		v := v
		fs = append(fs, leakForm{name: v.name + "-exact", leak: func(s []byte) []byte {
			return []byte(v.enc.EncodeToString(s))
		}})
	}
	// A sealed field carrying the payload unsealed: base64url of JSON
	// with the secret escaped inside it.
	for pre := range 3 {
		pre := pre
		fs = append(fs, leakForm{name: fmt.Sprintf("b64url-of-json-%d", pre), textOnly: true, leak: func(s []byte) []byte {
			j, _ := json.Marshal(map[string]string{"a": strings.Repeat("z", pre), "sdp": string(s)})
			return []byte(base64.RawURLEncoding.EncodeToString(j))
		}})
	}
	return fs
}()

func bytesToRunes(b []byte) []rune {
	r := make([]rune, len(b))
	for i, c := range b {
		r[i] = rune(c)
	}
	return r
}

// plant returns a copy of capture with leaked inserted in the middle of
// one of its messages' text, as a field of a JSON message would be.
func plant(capture, leaked []byte) []byte { return plantAll(capture, [][]byte{leaked}) }

// plantAll inserts several leaks at the same point, one after the other,
// so that no leak splits another.
func plantAll(capture []byte, leaks [][]byte) []byte {
	mid := len(capture) / 2
	out := append([]byte(nil), capture[:mid]...)
	for _, l := range leaks {
		out = append(out, l...)
		out = append(out, "\x00\x00\n"...)
	}
	return append(out, capture[mid:]...)
}

// syntheticCapture looks like board traffic: JSON envelopes with
// base64url blobs, signatures and keys.
func syntheticCapture() []byte {
	var msgs [][]byte
	for i := range 8 {
		msgs = append(msgs, []byte(fmt.Sprintf(`{"kind":"relay","match_id":"%s","frame_kind":"offer","blob":{"sealed":"%s","signature":"%s","n":%d}}`,
			base64.RawURLEncoding.EncodeToString(randBytes(16)),
			base64.RawURLEncoding.EncodeToString(randBytes(900)),
			base64.RawURLEncoding.EncodeToString(randBytes(64)), i)))
	}
	return joinCapture(msgs)
}

// sampleSecrets are a binary secret with bytes above 0x7f and a text one
// with everything JSON escapes (CRLF, quotes, <>&, slashes).
func sampleSecrets() []secret {
	bin := randBytes(32)
	bin[0], bin[5], bin[17] = 0xff, 0x80, 0x00
	return []secret{
		binSecret("binary-key", bin),
		textSecret("sdp-text", "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\na=fingerprint:sha-256 AB:CD\r\nm=application 9 UDP/DTLS/SCTP <x&y> \"q\" \\ webrtc-datachannel\r\n"),
	}
}

// TestScannerFindsEveryLeakForm: each secret, planted in each form into
// a copy of a capture, is found (and named).
func TestScannerFindsEveryLeakForm(t *testing.T) {
	base := syntheticCapture()
	for _, s := range sampleSecrets() {
		sc := newScanner(s)
		if got := sc.scan(base); len(got) != 0 {
			t.Fatalf("the clean capture already matches %v", got)
		}
		for _, lf := range leakForms {
			if lf.textOnly && !s.text {
				continue
			}
			t.Run(s.name+"/"+lf.name, func(t *testing.T) {
				got := sc.leaked(plant(base, lf.leak(s.raw)))
				if len(got[s.name]) == 0 {
					t.Fatalf("the scanner missed %s leaked as %s", s.name, lf.name)
				}
			})
		}
	}
}

// TestScannerNoFalsePositives: a secret that differs in one byte from
// what was leaked is not reported, in any leak form; the controls above
// would mean nothing if the scanner reported everything.
func TestScannerNoFalsePositives(t *testing.T) {
	base := syntheticCapture()
	for _, s := range sampleSecrets() {
		near := append([]byte(nil), s.raw...)
		near[len(near)/2] ^= 0x01
		sc := newScanner(secret{name: s.name, raw: near, text: s.text})
		for _, lf := range leakForms {
			if lf.textOnly && !s.text {
				continue
			}
			if got := sc.scan(plant(base, lf.leak(s.raw))); len(got) != 0 {
				t.Errorf("%s/%s: a near miss was reported: %v", s.name, lf.name, got)
			}
		}
	}
}

// TestScannerNeedles pins the arithmetic of the stable base64 parts:
// each alignment's stable part occurs in the encoding of the secret
// embedded at that alignment, for every length modulo 3.
func TestScannerNeedles(t *testing.T) {
	for n := 6; n < 12; n++ {
		s := randBytes(n)
		for _, v := range b64Variants {
			for pre := range 6 {
				whole := v.enc.EncodeToString(around(pre, s))
				stable := b64Stable(v.enc, s, pre%3)
				if !strings.Contains(whole, stable) {
					t.Fatalf("n=%d %s pre=%d: %q not in %q", n, v.name, pre, stable, whole)
				}
				if len(stable) < (8*n)/6-2 {
					t.Fatalf("stable part too short: %d of %d bytes", len(stable), n)
				}
			}
		}
	}
	// The spellings that differ from the raw bytes are all there: latin1
	// for bytes above 0x7f, each JSON escaping for text.
	for i, want := range [][]string{
		{"raw", "latin1", "hex", "HEX", "b64std@0", "b64std@1", "b64std@2"},
		{"raw", "json+raw", "json-nohtml+raw", "json-u+raw", "json-U+raw", "json2+raw", "json+b64std@1"},
	} {
		encs := map[string]bool{}
		for _, n := range needles(sampleSecrets()[i]) {
			encs[n.enc] = true
		}
		for _, w := range want {
			if !encs[w] {
				keys := make([]string, 0, len(encs))
				for k := range encs {
					keys = append(keys, k)
				}
				sort.Strings(keys)
				t.Errorf("no %q needle; have %v", w, keys)
			}
		}
	}
}
