package kps

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/keyhole-p2p/keyhole/identity"
)

// FuzzParseFrame: any data-channel message either parses into a frame
// that re-encodes to the same bytes (codes normalised) or is refused;
// nothing panics.
func FuzzParseFrame(f *testing.F) {
	for _, seed := range [][]byte{{}, {0x00}, {0x00, 'h', 'i'}, {0x01}, {0x02, 0, 0, 0, 3}, {0x03, 0, 0, 0, 1}, {0x02, 1}, {0x04}, {0xff, 0xff}} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		fr, err := parseFrame(msg)
		if err != nil {
			if len(msg) == 0 || msg[0] <= frameStopSending {
				t.Fatalf("refused a known frame type: %x: %v", msg, err)
			}
			return
		}
		if len(msg) == 0 {
			if fr != nil {
				t.Fatal("empty message gave a frame")
			}
			return
		}
		switch fr.typ {
		case frameData:
			if !bytes.Equal(fr.payload, msg[1:]) {
				t.Fatal("data payload changed")
			}
		case frameReset, frameStopSending:
			if int(fr.code) >= len(codeNames) {
				t.Fatalf("code %d not normalised", fr.code)
			}
			if len(msg) >= 5 {
				raw := ErrorCode(binary.BigEndian.Uint32(msg[1:5]))
				if raw.Normalize() != fr.code {
					t.Fatalf("code %d read as %d", raw, fr.code)
				}
				if enc := codeFrame(fr.typ, fr.code); raw == fr.code && !bytes.Equal(enc, msg[:5]) {
					t.Fatalf("re-encoding %x gave %x", msg[:5], enc)
				}
			} else if fr.code != 0 {
				t.Fatal("a short code must read as 0")
			}
		}
	})
}

// FuzzParseAuthMessage: no input verifies unless it is a genuine
// signature for this binding, and nothing panics.
func FuzzParseAuthMessage(f *testing.F) {
	// A fixed key: fuzz workers are separate processes and must agree.
	k, err := identity.NewPrivateKey(bytes.Repeat([]byte{0x42}, identity.SeedSize))
	if err != nil {
		f.Fatal(err)
	}
	var binding [32]byte
	binding[5] = 7
	good := authMessage(roleDialer, bindingExporter, binding, k)
	f.Add(good)
	f.Add(good[:len(good)-1])
	f.Add([]byte(authMagic))
	f.Fuzz(func(t *testing.T, msg []byte) {
		pub, err := parseAuthMessage(msg, roleDialer, bindingExporter, binding)
		if err == nil && (pub != k.Public() || !bytes.Equal(msg, good)) {
			// Ed25519 signatures are deterministic and the strict
			// verifier refuses malleated ones, so only the original passes.
			t.Fatalf("accepted a message that is not the genuine one: %x", msg)
		}
	})
}
