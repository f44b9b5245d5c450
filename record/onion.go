package record

import (
	"crypto/sha3"
	"encoding/base32"
	"fmt"
	"strconv"
	"strings"
)

// OnionAddr is a Tor v3 onion service and port: "<56 chars>.onion:<port>".
type OnionAddr struct {
	Host string // 56 lower-case base32 characters and ".onion"
	Port uint16
}

func (o OnionAddr) String() string { return o.Host + ":" + strconv.Itoa(int(o.Port)) }

var onionB32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// ParseOnionAddr checks a v3 onion address fully: length, version byte
// and checksum (rend-spec-v3 section 6), so a typo is caught here and
// not as a Tor timeout.
func ParseOnionAddr(s string) (OnionAddr, error) {
	var o OnionAddr
	host, port, ok := strings.Cut(s, ":")
	p, err := strconv.ParseUint(port, 10, 16)
	if !ok || err != nil || p == 0 {
		return o, fmt.Errorf("%w: onion address %q must be <56 chars>.onion:<port>", ErrInvalid, s)
	}
	label, ok := strings.CutSuffix(host, ".onion")
	if !ok || len(label) != 56 {
		return o, fmt.Errorf("%w: onion host %q must be 56 base32 characters followed by .onion", ErrInvalid, host)
	}
	raw, err := onionB32.DecodeString(label)
	if err != nil || len(raw) != 35 {
		return o, fmt.Errorf("%w: onion host %q is not lower-case base32", ErrInvalid, host)
	}
	pub, sum, ver := raw[:32], raw[32:34], raw[34]
	if ver != 3 {
		return o, fmt.Errorf("%w: onion host %q is version %d, only v3 exists", ErrInvalid, host, ver)
	}
	if want := onionChecksum(pub); sum[0] != want[0] || sum[1] != want[1] {
		return o, fmt.Errorf("%w: onion host %q has a bad checksum (a typo?)", ErrInvalid, host)
	}
	return OnionAddr{Host: host, Port: uint16(p)}, nil
}

// OnionHost spells the onion host name of an Ed25519 onion service key.
func OnionHost(pub [32]byte) string {
	sum := onionChecksum(pub[:])
	return onionB32.EncodeToString(append(append(pub[:], sum[:2]...), 3)) + ".onion"
}

func onionChecksum(pub []byte) [32]byte {
	h := sha3.New256()
	h.Write([]byte(".onion checksum"))
	h.Write(pub)
	h.Write([]byte{3})
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}
