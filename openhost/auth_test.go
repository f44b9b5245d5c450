package openhost

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"

	"github.com/keyhole-p2p/keyhole/identity"
)

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCryptoVectors(t *testing.T) {
	var v struct {
		Allowlist []map[string]string `json:"allowlist_hmac"`
		Binding   []map[string]string `json:"channel_binding"`
		X25519    []map[string]string `json:"x25519_from_ed25519"`
		Constants map[string]any      `json:"constants"`
	}
	raw, _ := os.ReadFile("testdata/crypto.json")
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Allowlist) != 2 || len(v.Binding) != 1 || len(v.X25519) != 1 {
		t.Fatal("vector file changed shape")
	}
	for _, c := range v.Allowlist {
		t.Run(c["name"], func(t *testing.T) {
			salt := []byte(c["salt_ascii"])
			if c["salt_hex"] != "" || c["salt_ascii"] == "" {
				salt = mustHex(t, c["salt_hex"])
			}
			var pk identity.PublicKey
			copy(pk[:], mustHex(t, c["pubkey_hex"]))
			got := AllowlistHash(salt, pk)
			if hex.EncodeToString(got[:]) != c["hash_hex"] {
				t.Errorf("got %x, want %s", got, c["hash_hex"])
			}
		})
	}
	for _, c := range v.Binding {
		t.Run(c["name"], func(t *testing.T) {
			if c["hkdf_salt_ascii"] != authLabel || c["hkdf_info_ascii"] != authLabel {
				t.Fatal("labels changed")
			}
			var s [32]byte
			copy(s[:], mustHex(t, c["tls_exporter_secret_hex"]))
			got := AuthBytes(s)
			if hex.EncodeToString(got[:]) != c["auth_bytes_hex"] {
				t.Errorf("got %x, want %s", got, c["auth_bytes_hex"])
			}
		})
	}
	if v.Constants["AUTH_EXPORTER_LABEL_ASCII"] != ExporterLabel || v.Constants["ALLOWLIST_HASH_LEN"] != float64(AllowlistHashLen) {
		t.Errorf("constants differ: %v", v.Constants)
	}
	// x25519_from_ed25519 is behavioural; identity's TestX25519Conversion runs it.
}

// Values derived independently in reference/openhost/IMPLEMENTATION-NOTES.md
// (not repository vectors, but a second implementation's output).
func TestDerivedValues(t *testing.T) {
	host, _ := identity.NewPrivateKey(mustHex(t, "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"))
	salt := AllowSalt(host)
	if got := hex.EncodeToString(salt[:]); got != "05c6ba4c4686071db0a764d7e8cc6c094d9e68e19c7b3418f712a0e60f7fc8b1" {
		t.Errorf("allow salt = %s", got)
	}
	var client identity.PublicKey
	copy(client[:], mustHex(t, "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c"))
	var secret, nonce [32]byte
	for i := range secret {
		secret[i] = 7
	}
	copy(nonce[:], mustHex(t, "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"))
	got := AuthBytesBound(secret, host.Public(), client, nonce)
	if hex.EncodeToString(got[:]) != "72b9ab910fac0969c6f5ef955c4e72d4ef8c637cc38fe256f2eff95393125390" {
		t.Errorf("bound auth bytes = %x", got)
	}
}
