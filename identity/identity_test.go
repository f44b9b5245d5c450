package identity

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/nacl/box"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// TestOpenhostIdentityVectors runs every case of openhost's identity.json.
func TestOpenhostIdentityVectors(t *testing.T) {
	// The JSON uses snake_case; map it by hand to keep the struct readable.
	raw, _ := os.ReadFile("testdata/identity.json")
	var generic struct {
		Vectors  []map[string]string `json:"vectors"`
		Negative []map[string]string `json:"negative_vectors"`
	}
	if err := json.Unmarshal(raw, &generic); err != nil {
		t.Fatal(err)
	}
	if len(generic.Vectors) != 4 || len(generic.Negative) != 5 {
		t.Fatalf("vector file changed: %d vectors, %d negative", len(generic.Vectors), len(generic.Negative))
	}
	for _, v := range generic.Vectors {
		t.Run(v["name"], func(t *testing.T) {
			if seed := v["signing_seed_hex"]; seed != "" {
				k, err := NewPrivateKey(mustHex(t, seed))
				if err != nil {
					t.Fatal(err)
				}
				pub := k.Public()
				if got := pub.Hex(); got != v["public_key_hex"] {
					t.Errorf("public key = %s, want %s", got, v["public_key_hex"])
				}
				if got := pub.String(); got != v["public_key_zbase32"] {
					t.Errorf("z32 = %s, want %s", got, v["public_key_zbase32"])
				}
				back, err := ParseKey(v["public_key_zbase32"])
				if err != nil || back != pub {
					t.Errorf("ParseKey round trip: %v %v", back, err)
				}
				msg := mustHex(t, v["message_hex"])
				sig := k.Sign(msg)
				if got := hex.EncodeToString(sig); got != v["signature_hex"] {
					t.Errorf("signature = %s, want %s", got, v["signature_hex"])
				}
				if err := pub.Verify(msg, sig); err != nil {
					t.Errorf("strict verify of the RFC vector: %v", err)
				}
			}
			if in := v["url_input"]; in != "" {
				u, err := ParseURL(in)
				if err != nil {
					t.Fatal(err)
				}
				if u.String() != v["url_normalized"] || u.Path != v["expected_path"] || u.Key.String() != v["public_key_zbase32"] {
					t.Errorf("ParseURL(%q) = %v path %q", in, u, u.Path)
				}
			}
		})
	}
	for _, v := range generic.Negative {
		t.Run(v["name"], func(t *testing.T) {
			var err error
			if z := v["public_key_zbase32"]; z != "" {
				_, err = ParseKey(z)
			} else {
				_, err = ParseURL(v["url_input"])
			}
			if err == nil {
				t.Fatal("accepted")
			}
			want := strings.TrimPrefix(v["expect"], "error: ")
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
		})
	}
}

func TestZBase32(t *testing.T) {
	for _, n := range []int{0, 1, 2, 5, 16, 31, 32, 33} {
		b := bytes.Repeat([]byte{0xa5}, n)
		s := EncodeZBase32(b)
		got, err := DecodeZBase32(s, n)
		if err != nil || !bytes.Equal(got, b) {
			t.Errorf("n=%d round trip: %x %v", n, got, err)
		}
		if up := strings.ToUpper(s); n > 0 {
			if got, err := DecodeZBase32(up, n); err != nil || !bytes.Equal(got, b) {
				t.Errorf("n=%d upper case: %v", n, err)
			}
		}
	}
	// Sixteen zero bytes are openhost's pairing-code example.
	if got := EncodeZBase32(make([]byte, 16)); got != "yyyyyyyyyyyyyyyyyyyyyyyyyy" {
		t.Errorf("zero pairing code = %s", got)
	}
	// The last character of a 32-byte key carries 4 padding bits that must be zero.
	k := strings.Repeat("y", 51) + "n" // 'n' = 2 sets a padding bit
	if _, err := DecodeZBase32(k, 32); err == nil || !strings.Contains(err.Error(), "padding") {
		t.Errorf("non-zero padding accepted: %v", err)
	}
}

func TestParseAddressForms(t *testing.T) {
	k, _ := Generate()
	z := k.Public().String()
	for _, in := range []string{z, " " + z + "\n", "pk:" + z, "keyhole://" + z, "keyhole://" + z + "/x/y", "oh://" + z + "/", strings.ToUpper(z)} {
		got, err := ParseAddress(in)
		if err != nil || got != k.Public() {
			t.Errorf("ParseAddress(%q) = %v, %v", in, got, err)
		}
	}
	for _, in := range []string{"", z[:51], z + "y", "http://" + z, "keyhole://" + z + "?a=b", "oh://" + z[:50] + "!!", "keyhole://" + z + "#f"} {
		if _, err := ParseAddress(in); !errors.Is(err, ErrAddress) {
			t.Errorf("ParseAddress(%q) error = %v, want ErrAddress", in, err)
		}
	}
}

// TestStrictVerifyMalleability runs the ed25519-speccheck cases: every
// edge case where Ed25519 verifiers disagree.
func TestStrictVerifyMalleability(t *testing.T) {
	raw, _ := os.ReadFile("testdata/malleability.json")
	var generic struct {
		Cases []map[string]any `json:"cases"`
	}
	if err := json.Unmarshal(raw, &generic); err != nil {
		t.Fatal(err)
	}
	stdlibAcceptedButWeReject := 0
	for _, c := range generic.Cases {
		name := fmt.Sprintf("case%v/%s", c["case"], c["what"])
		t.Run(name, func(t *testing.T) {
			var pub PublicKey
			copy(pub[:], mustHex(t, c["pub_key"].(string)))
			msg := mustHex(t, c["message"].(string))
			sig := mustHex(t, c["signature"].(string))
			err := VerifyStrict(pub, msg, sig)
			if c["accept"].(bool) {
				if err != nil {
					t.Fatalf("rejected a strictly valid signature: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted a signature a strict verifier must reject")
			}
			if !errors.Is(err, ErrSignature) || !strings.Contains(err.Error(), c["reason_contains"].(string)) {
				t.Errorf("error %q does not name %q", err, c["reason_contains"])
			}
			if ed25519.Verify(pub[:], msg, sig) {
				stdlibAcceptedButWeReject++
			}
		})
	}
	// The point of the strict checks: Go's own verifier accepts some of these.
	if stdlibAcceptedButWeReject == 0 {
		t.Error("no case separates strict verification from crypto/ed25519; the test lost its teeth")
	}
}

func TestStrictVerifyOwnCases(t *testing.T) {
	k, _ := Generate()
	pub := k.Public()
	msg := []byte("keyhole")
	sig := k.Sign(msg)
	if err := VerifyStrict(pub, msg, sig); err != nil {
		t.Fatal(err)
	}
	// S + L: same point equation, different bytes. Must be refused.
	mal := append([]byte(nil), sig...)
	addL(mal[32:])
	if err := VerifyStrict(pub, msg, mal); err == nil || !strings.Contains(err.Error(), "S is not canonical") {
		t.Errorf("S+L: %v", err)
	}
	for i := 0; i < len(sig)*8; i += 37 {
		bad := append([]byte(nil), sig...)
		bad[i/8] ^= 1 << (i % 8)
		if VerifyStrict(pub, msg, bad) == nil {
			t.Errorf("bit %d flipped: accepted", i)
		}
	}
	if VerifyStrict(pub, msg[:3], sig) == nil {
		t.Error("wrong message accepted")
	}
	if VerifyStrict(pub, msg, sig[:63]) == nil {
		t.Error("short signature accepted")
	}
	// Non-canonical encodings of the identity point (y = 1 + p) as a key.
	var nonCanon PublicKey
	copy(nonCanon[:], mustHex(t, "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"))
	if _, err := PublicKeyFromBytes(nonCanon[:]); err == nil {
		t.Error("non-canonical key accepted")
	}
	var zero PublicKey
	zero[0] = 1 // the identity point, small order
	if err := VerifyStrict(zero, msg, append(zero[:], make([]byte, 32)...)); err == nil || !strings.Contains(err.Error(), "small-order") {
		t.Errorf("identity key, identity R, S=0: %v", err)
	}
	if !ed25519.Verify(zero[:], msg, append(zero[:], make([]byte, 32)...)) {
		t.Log("note: crypto/ed25519 rejected the all-identity signature too")
	}
}

// addL adds the group order L to a little-endian 32-byte scalar.
func addL(s []byte) {
	l := []byte{0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10}
	carry := 0
	for i := range s {
		v := int(s[i]) + int(l[i]) + carry
		s[i] = byte(v)
		carry = v >> 8
	}
}

func TestX25519Conversion(t *testing.T) {
	k, err := NewPrivateKey(mustHex(t, "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"))
	if err != nil {
		t.Fatal(err)
	}
	xpub, err := k.Public().X25519()
	if err != nil {
		t.Fatal(err)
	}
	derived, err := x25519Public(k.X25519())
	if err != nil {
		t.Fatal(err)
	}
	if derived != xpub {
		t.Fatalf("public-key conversion %x != secret-derived %x", xpub, derived)
	}
	// openhost seals offers with libsodium crypto_box_seal to this key.
	for _, n := range []int{0, 1, 100, 70000} {
		msg := bytes.Repeat([]byte{7}, n)
		sealed, err := box.SealAnonymous(nil, msg, &xpub, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(sealed) != n+48 {
			t.Errorf("seal overhead = %d, want 48", len(sealed)-n)
		}
		sk := k.X25519()
		opened, ok := box.OpenAnonymous(nil, sealed, &xpub, &sk)
		if !ok || !bytes.Equal(opened, msg) {
			t.Fatalf("sealed box round trip failed for %d bytes", n)
		}
	}
}

func TestBinding(t *testing.T) {
	id, _ := Generate()
	tk, _ := NewTransportKey()
	now := time.Date(2026, 11, 23, 9, 0, 0, 123e6, time.UTC)
	b, err := NewBinding(id, tk.Public(), now)
	if err != nil {
		t.Fatal(err)
	}
	if b.CreatedUTC != "2026-11-23T09:00:00.123Z" {
		t.Errorf("created_utc = %s", b.CreatedUTC)
	}
	gotID, gotTK, err := b.Verify(id.Public(), now)
	if err != nil || gotID != id.Public() || gotTK != tk.Public() {
		t.Fatalf("verify: %v", err)
	}
	other, _ := Generate()
	otherTK, _ := NewTransportKey()
	forged, _ := NewBinding(other, tk.Public(), now)
	tests := []struct {
		name   string
		mutate func(b Binding) Binding
		want   PublicKey
		now    time.Time
		reason string
	}{
		{"substituted transport key", func(b Binding) Binding {
			p := otherTK.Public()
			b.TransportKey = b64u.EncodeToString(p[:])
			return b
		}, id.Public(), now, "does not match"},
		{"signed by another identity", func(Binding) Binding { return forged }, id.Public(), now, "expected"},
		{"identity swapped under foreign signature", func(b Binding) Binding {
			b.BindingSig = forged.BindingSig
			return b
		}, id.Public(), now, "does not match"},
		{"date changed", func(b Binding) Binding { b.CreatedUTC = "2026-11-23T09:00:01.123Z"; return b }, id.Public(), now, "does not match"},
		{"from the future", func(b Binding) Binding { return b }, id.Public(), now.Add(-time.Hour), "future"},
		{"low-order transport key", func(b Binding) Binding {
			b.TransportKey = b64u.EncodeToString(make([]byte, 32))
			return b
		}, id.Public(), now, "low-order"},
		{"padded base64", func(b Binding) Binding { b.IdentityKey += "="; return b }, id.Public(), now, "identity_key"},
		{"bad date", func(b Binding) Binding { b.CreatedUTC = "yesterday"; return b }, id.Public(), now, "ISO-8601"},
		{"truncated signature", func(b Binding) Binding { b.BindingSig = b.BindingSig[:20]; return b }, id.Public(), now, "invalid signature"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := tc.mutate(b).Verify(tc.want, tc.now)
			if !errors.Is(err, ErrBinding) || !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("got %v, want ErrBinding mentioning %q", err, tc.reason)
			}
		})
	}
	// The wire form is plain JSON with exactly the four ORP fields.
	j, _ := json.Marshal(b)
	var m map[string]any
	_ = json.Unmarshal(j, &m)
	if len(m) != 4 {
		t.Errorf("binding JSON has %d fields: %s", len(m), j)
	}
}

func TestBackupWords(t *testing.T) {
	k, _ := Generate()
	words := k.BackupWords()
	if n := len(strings.Fields(words)); n != 24 {
		t.Fatalf("%d words", n)
	}
	back, err := FromBackupWords("  " + strings.ToUpper(strings.ReplaceAll(words, " ", "\n\t ")) + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back.Seed(), k.Seed()) || back.Public() != k.Public() {
		t.Fatal("restored key differs")
	}
	f := strings.Fields(words)
	swapped := append([]string(nil), f...)
	swapped[0], swapped[1] = swapped[1], swapped[0]
	for name, tc := range map[string]struct{ in, reason string }{
		"23 words":     {strings.Join(f[:23], " "), "expected 24 words, got 23"},
		"unknown word": {strings.Join(append([]string{"keyhole"}, f[1:]...), " "), `word 1 ("keyhole")`},
		"swapped":      {strings.Join(swapped, " "), "checksum"},
	} {
		if f[0] == f[1] && name == "swapped" {
			continue
		}
		_, err := FromBackupWords(tc.in)
		if !errors.Is(err, ErrBackupWords) || !strings.Contains(err.Error(), tc.reason) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestPrivateKeyNeverPrinted(t *testing.T) {
	k, _ := Generate()
	seedHex := hex.EncodeToString(k.Seed())
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("key", "k", k)
	tk, _ := NewTransportKey()
	s := tk.Secret()
	for _, out := range []string{fmt.Sprint(k), fmt.Sprintf("%v %+v %#v %s", k, k, k, k), logs.String(), fmt.Sprintf("%v %+v", tk, tk)} {
		if strings.Contains(out, seedHex) || strings.Contains(out, hex.EncodeToString(s[:])) || strings.Contains(out, fmt.Sprint(k.Seed())) {
			t.Fatalf("secret leaked: %s", out)
		}
	}
}
