package identity

import (
	"errors"
	"fmt"
	"strings"
)

// zbase32Alphabet is the z-base-32 alphabet (Zooko's human-oriented
// base-32), the encoding Pkarr and openhost use for keys.
const zbase32Alphabet = "ybndrfg8ejkmcpqxot1uwisza345h769"

var zbase32Index = func() (t [256]int8) {
	for i := range t {
		t[i] = -1
	}
	for i := 0; i < len(zbase32Alphabet); i++ {
		c := zbase32Alphabet[i]
		t[c] = int8(i)
		if c >= 'a' && c <= 'z' {
			t[c-'a'+'A'] = int8(i) // DNS names are case-insensitive
		}
	}
	return t
}()

// ErrZBase32 is wrapped by every z-base-32 decoding error.
var ErrZBase32 = errors.New("invalid z-base-32")

// EncodeZBase32 encodes b MSB-first with no padding, as Pkarr does.
func EncodeZBase32(b []byte) string {
	var sb strings.Builder
	sb.Grow((len(b)*8 + 4) / 5)
	var acc uint32
	bits := 0
	for _, c := range b {
		acc = acc<<8 | uint32(c)
		bits += 8
		for bits >= 5 {
			bits -= 5
			sb.WriteByte(zbase32Alphabet[(acc>>uint(bits))&31])
		}
	}
	if bits > 0 {
		sb.WriteByte(zbase32Alphabet[(acc<<uint(5-bits))&31])
	}
	return sb.String()
}

// DecodeZBase32 decodes s (either case) into exactly n bytes. It rejects
// a wrong length, characters outside the alphabet and non-zero padding
// bits, so every byte string has exactly one accepted spelling.
func DecodeZBase32(s string, n int) ([]byte, error) {
	want := (n*8 + 4) / 5
	if len(s) != want {
		return nil, fmt.Errorf("%w: must be exactly %d characters, got %d", ErrZBase32, want, len(s))
	}
	out := make([]byte, 0, n)
	var acc uint32
	bits := 0
	for i := 0; i < len(s); i++ {
		v := zbase32Index[s[i]]
		if v < 0 {
			return nil, fmt.Errorf("%w: contains invalid characters (position %d)", ErrZBase32, i+1)
		}
		acc = acc<<5 | uint32(v)
		bits += 5
		if bits >= 8 {
			bits -= 8
			out = append(out, byte(acc>>uint(bits)))
		}
	}
	if acc&(1<<uint(bits)-1) != 0 {
		return nil, fmt.Errorf("%w: non-zero padding bits in the last character", ErrZBase32)
	}
	return out, nil
}
