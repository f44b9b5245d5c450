package record

import (
	"encoding/base64"
	"net/netip"
	"testing"
)

func decodeB64u(t testing.TB, b []byte) []byte {
	t.Helper()
	out, err := base64.RawURLEncoding.DecodeString(string(b))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func encodeB64u(b []byte) []byte { return []byte(base64.RawURLEncoding.EncodeToString(b)) }

func mustAddrPort(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
