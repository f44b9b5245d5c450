package record

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/keyhole-p2p/keyhole/identity"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type recordVectors struct {
	Vectors []struct {
		Name           string `json:"name"`
		SigningSeedHex string `json:"signing_seed_hex"`
		PublicKeyHex   string `json:"public_key_hex"`
		Record         struct {
			Version   uint8  `json:"version"`
			TS        uint64 `json:"ts"`
			DTLSFPHex string `json:"dtls_fp_hex"`
			Roles     string `json:"roles"`
			SaltHex   string `json:"salt_hex"`
			Disc      string `json:"disc"`
		} `json:"record"`
		CanonicalLen int    `json:"canonical_len"`
		CanonicalHex string `json:"canonical_hex"`
		SignatureHex string `json:"signature_hex"`
	} `json:"vectors"`
	Negative []struct {
		Name   string `json:"name"`
		Expect string `json:"expect"`
	} `json:"negative_validation"`
}

func loadRecordVectors(t testing.TB) (recordVectors, *identity.PrivateKey, *OpenhostRecord) {
	t.Helper()
	var v recordVectors
	raw, err := os.ReadFile("testdata/pkarr_record.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Vectors) != 1 || len(v.Negative) != 5 {
		t.Fatalf("vector file changed shape")
	}
	vec := v.Vectors[0]
	key, err := identity.NewPrivateKey(mustHex(t, vec.SigningSeedHex))
	if err != nil {
		t.Fatal(err)
	}
	r := &OpenhostRecord{Version: vec.Record.Version, Timestamp: vec.Record.TS, Roles: vec.Record.Roles, Disc: vec.Record.Disc}
	copy(r.DTLSFingerprint[:], mustHex(t, vec.Record.DTLSFPHex))
	copy(r.Salt[:], mustHex(t, vec.Record.SaltHex))
	return v, key, r
}

func TestOpenhostRecordVectors(t *testing.T) {
	v, key, r := loadRecordVectors(t)
	vec := v.Vectors[0]
	if key.Public().Hex() != vec.PublicKeyHex {
		t.Fatalf("public key %s", key.Public().Hex())
	}
	c, err := r.CanonicalBytes()
	if err != nil {
		t.Fatal(err)
	}
	if len(c) != vec.CanonicalLen || hex.EncodeToString(c) != vec.CanonicalHex {
		t.Fatalf("canonical bytes\n got %x\nwant %s", c, vec.CanonicalHex)
	}
	if sig := hex.EncodeToString(key.Sign(c)); sig != vec.SignatureHex {
		t.Fatalf("signature %s", sig)
	}
	back, err := ParseOpenhostCanonical(c)
	if err != nil || *back != *r {
		t.Fatalf("parse canonical: %+v %v", back, err)
	}
	txt, err := SignOpenhost(key, r)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(int64(r.Timestamp), 0)
	if _, err := VerifyOpenhost(key.Public(), txt, now); err != nil {
		t.Fatalf("verify: %v", err)
	}

	errFor := map[string]error{"InvalidRecord": ErrInvalid, "StaleRecord": ErrStale, "BadSignature": ErrBadSignature}
	for _, n := range v.Negative {
		t.Run(n.Name, func(t *testing.T) {
			want := errFor[n.Expect]
			if want == nil {
				t.Fatalf("unknown expectation %q", n.Expect)
			}
			rr := *r
			var err error
			switch n.Name {
			case "unsupported_version":
				rr.Version = 99
				_, err = SignOpenhost(key, &rr)
			case "empty_roles":
				rr.Roles = ""
				_, err = SignOpenhost(key, &rr)
			case "stale_record":
				_, err = VerifyOpenhost(key.Public(), txt, now.Add(OpenhostMaxAge+time.Second))
			case "future_record":
				_, err = VerifyOpenhost(key.Public(), txt, now.Add(-OpenhostMaxAge-time.Second))
			case "tampered_dtls_fp":
				blob := decodeB64u(t, txt)
				blob[64+19] ^= 0x01 // dtls_fp starts 19 bytes into the canonical form
				_, err = VerifyOpenhost(key.Public(), encodeB64u(blob), now)
			default:
				t.Fatalf("no test for negative vector %q", n.Name)
			}
			if !errors.Is(err, want) {
				t.Fatalf("got %v, want %v", err, want)
			}
		})
	}
	// The edges of the window are inside it.
	for _, d := range []time.Duration{OpenhostMaxAge, -OpenhostMaxAge} {
		if _, err := VerifyOpenhost(key.Public(), txt, now.Add(d)); err != nil {
			t.Errorf("at %v: %v", d, err)
		}
	}
}

func TestOpenhostV3TURNTrailer(t *testing.T) {
	_, _, r := loadRecordVectors(t)
	r.Version = 3
	if _, err := r.CanonicalBytes(); !errors.Is(err, ErrInvalid) {
		t.Errorf("v3 without TURN: %v", err)
	}
	r.TURN = mustAddrPort("203.0.113.7:3478")
	c, err := r.CanonicalBytes()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(c, []byte{203, 0, 113, 7, 0x0d, 0x96}) || c[10] != 3 {
		t.Errorf("v3 trailer: %x", c[len(c)-8:])
	}
	back, err := ParseOpenhostCanonical(c)
	if err != nil || *back != *r {
		t.Fatalf("v3 round trip: %+v %v", back, err)
	}
	for _, bad := range []string{"127.0.0.1:3478", "0.0.0.0:3478", "203.0.113.7:0", "[2001:db8::1]:3478"} {
		rr := *r
		rr.TURN = mustAddrPort(bad)
		if _, err := rr.CanonicalBytes(); !errors.Is(err, ErrInvalid) {
			t.Errorf("TURN %s accepted", bad)
		}
	}
	// A v2 record with a trailer, or a v3 one without, does not parse.
	v2 := append([]byte(nil), c...)
	v2[10] = 2
	if _, err := ParseOpenhostCanonical(v2); !errors.Is(err, ErrInvalid) {
		t.Errorf("v2 with trailer: %v", err)
	}
	if _, err := ParseOpenhostCanonical(c[:len(c)-1]); !errors.Is(err, ErrInvalid) {
		t.Errorf("short trailer: %v", err)
	}
	v1 := append([]byte(nil), c...)
	v1[10] = 1
	if _, err := ParseOpenhostCanonical(v1); !errors.Is(err, ErrInvalid) {
		t.Errorf("v1 accepted: %v", err)
	}
}

type packetVectors struct {
	Vectors []struct {
		SigningSeedHex  string `json:"signing_seed_hex"`
		RecordTS        int64  `json:"record_ts"`
		TimestampMicros uint64 `json:"pkarr_timestamp_micros"`
		TXTName         string `json:"openhost_txt_name"`
		TXTTTL          uint32 `json:"openhost_txt_ttl"`
		BlobLen         int    `json:"openhost_blob_len"`
		OuterSigHex     string `json:"bep44_outer_signature_hex"`
		PacketBytesLen  int    `json:"packet_bytes_len"`
		PacketBytesHex  string `json:"packet_bytes_hex"`
	} `json:"vectors"`
	Negative []struct {
		Name string `json:"name"`
	} `json:"negative"`
}

func TestPkarrPacketVectors(t *testing.T) {
	var v packetVectors
	raw, _ := os.ReadFile("testdata/pkarr_packet.json")
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Vectors) != 1 || len(v.Negative) != 5 {
		t.Fatal("vector file changed shape")
	}
	vec := v.Vectors[0]
	_, key, rec := loadRecordVectors(t)
	wire := mustHex(t, vec.PacketBytesHex)
	if len(wire) != vec.PacketBytesLen {
		t.Fatalf("fixture is %d bytes", len(wire))
	}
	now := time.Unix(vec.RecordTS, 0)

	p, err := ParsePacket(wire)
	if err != nil {
		t.Fatal(err)
	}
	if p.PublicKey != key.Public() || p.Timestamp != vec.TimestampMicros || hex.EncodeToString(p.Signature[:]) != vec.OuterSigHex {
		t.Fatalf("fields: key %s ts %d sig %x", p.PublicKey, p.Timestamp, p.Signature)
	}
	rrs, err := p.Verify(VerifyOptions{Key: key.Public(), Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if len(rrs) != 1 || rrs[0].Name != vec.TXTName || rrs[0].TTL != vec.TXTTTL || rrs[0].Type != TypeTXT {
		t.Fatalf("records: %+v", rrs)
	}
	if blob := decodeB64u(t, rrs[0].Text); len(blob) != vec.BlobLen {
		t.Errorf("blob is %d bytes", len(blob))
	}
	got, err := OpenhostFromPacket(p, rrs, now)
	if err != nil || *got != *rec {
		t.Fatalf("openhost record: %+v %v", got, err)
	}
	content, err := ParseContent(p, rrs, now)
	if err != nil || content.Openhost == nil || len(content.Direct) != 0 {
		t.Fatalf("content: %+v %v", content, err)
	}

	// Byte-identical re-encoding from the record and the seed.
	txt, _ := SignOpenhost(key, rec)
	dns, err := EncodeZone(key.Public(), []RR{TXT(OpenhostName, OpenhostTTL, txt)})
	if err != nil {
		t.Fatal(err)
	}
	re, err := Sign(key, dns, uint64(vec.RecordTS)*1_000_000)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(re.Bytes(), wire) {
		t.Fatalf("re-encoded packet differs\n got %x\nwant %x", re.Bytes(), wire)
	}
	if !bytes.Equal(re.RelayPayload(), wire[32:]) {
		t.Error("relay payload is not the packet without its key")
	}
	if rp, err := ParseRelayPayload(key.Public(), wire[32:]); err != nil || !bytes.Equal(rp.Bytes(), wire) {
		t.Errorf("relay payload parse: %v", err)
	}

	for _, n := range v.Negative {
		t.Run(n.Name, func(t *testing.T) {
			switch n.Name {
			case "packet_too_large":
				rrs := []RR{TXT(OpenhostName, OpenhostTTL, txt)}
				for i := 0; i < 8; i++ {
					rrs = append(rrs, TXT(fmt.Sprintf("_answer-%s-%d", "yyyyyyyyyyyyyyyyyyyyyyyyyy", i), 30, bytes.Repeat([]byte("A"), 120)))
				}
				if _, err := EncodeZone(key.Public(), rrs); !errors.Is(err, ErrTooLarge) {
					t.Fatalf("got %v", err)
				}
				if _, err := Sign(key, make([]byte, MaxDNSSize+1), 1); !errors.Is(err, ErrTooLarge) {
					t.Fatalf("Sign: %v", err)
				}
			case "openhost_sig_invalid":
				blob := decodeB64u(t, txt)
				blob[len(blob)-1] ^= 0x01 // inside the canonical bytes
				dns, _ := EncodeZone(key.Public(), []RR{TXT(OpenhostName, OpenhostTTL, encodeB64u(blob))})
				p, _ := Sign(key, dns, vec.TimestampMicros)
				rrs, err := p.Verify(VerifyOptions{Now: now})
				if err != nil {
					t.Fatalf("outer signature should still verify: %v", err)
				}
				if _, err := OpenhostFromPacket(p, rrs, now); !errors.Is(err, ErrBadSignature) {
					t.Fatalf("got %v", err)
				}
			case "bep44_sig_invalid":
				bad := append([]byte(nil), wire...)
				bad[40] ^= 0x04
				p, _ := ParsePacket(bad)
				if _, err := p.Verify(VerifyOptions{Now: now}); !errors.Is(err, ErrBadSignature) {
					t.Fatalf("got %v", err)
				}
			case "timestamp_drift":
				p, _ := Sign(key, dns, uint64(vec.RecordTS+5)*1_000_000)
				rrs, err := p.Verify(VerifyOptions{Now: now})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := OpenhostFromPacket(p, rrs, now); !errors.Is(err, ErrStale) {
					t.Fatalf("got %v", err)
				}
			case "seq_regression":
				if err := p.CheckSeq(uint64(vec.RecordTS+1) * 1_000_000); !errors.Is(err, ErrSeqRegression) {
					t.Fatalf("got %v", err)
				}
				if err := p.CheckSeq(p.Timestamp); err != nil {
					t.Fatalf("same seq refused: %v", err)
				}
			default:
				t.Fatalf("no test for negative vector %q", n.Name)
			}
		})
	}
}
