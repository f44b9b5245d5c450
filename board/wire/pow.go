package wire

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"math/bits"
)

// Proof of work, for boards that ask for it (hello.pow_bits > 0): the
// client finds a pow string such that
//
//	SHA-256("keyhole-orp-pow-v1" | record signature (64 bytes) | pow)
//
// starts with at least pow_bits zero bits. Tying the work to the
// signature means it cannot be reused for another record, and the board
// checks it with one hash.

const powLabel = "keyhole-orp-pow-v1"

// ErrPoW is returned when the work is missing or too little.
var ErrPoW = errors.New("proof of work missing or too weak")

func powZeros(sig []byte, pow string) int {
	h := sha256.New()
	h.Write([]byte(powLabel))
	h.Write(sig)
	h.Write([]byte(pow))
	sum := h.Sum(nil)
	n := 0
	for i := 0; i < len(sum); i += 8 {
		z := bits.LeadingZeros64(binary.BigEndian.Uint64(sum[i:]))
		n += z
		if z < 64 {
			break
		}
	}
	return n
}

// CheckPoW verifies the work for a record's signature (encoded).
func CheckPoW(signature, pow string, bits int) error {
	if bits <= 0 {
		return nil
	}
	sig, err := B64.DecodeString(signature)
	if err != nil || pow == "" {
		return ErrPoW
	}
	if powZeros(sig, pow) < bits {
		return ErrPoW
	}
	return nil
}

// SolvePoW finds work for a record's signature. Expected cost is 2^bits
// hashes; the schema caps bits at 32.
func SolvePoW(signature string, bits int) (string, error) {
	if bits <= 0 {
		return "", nil
	}
	sig, err := B64.DecodeString(signature)
	if err != nil {
		return "", ErrMalformed
	}
	var buf [8]byte
	for i := uint64(0); ; i++ {
		binary.BigEndian.PutUint64(buf[:], i)
		pow := B64.EncodeToString(buf[:])
		if powZeros(sig, pow) >= bits {
			return pow, nil
		}
	}
}
