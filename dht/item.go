package dht

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"

	"github.com/anacrolix/torrent/bencode"

	"github.com/keyhole-p2p/keyhole/identity"
)

// BEP 44 size limits for mutable items.
const (
	MaxSaltSize  = 64
	MaxValueSize = 1000
)

// ErrInvalidItem is wrapped by every reason Item.Verify refuses an item;
// the wrapping text says which check failed.
var ErrInvalidItem = errors.New("dht: invalid BEP 44 item")

// Item is one BEP 44 mutable item as it travels on the wire.
type Item struct {
	Key  [32]byte // ed25519 public key
	Salt []byte   // at most MaxSaltSize bytes
	Seq  int64    // >= 0
	V    []byte   // the bencoded value, at most MaxValueSize bytes
	Sig  [64]byte
}

// Verify checks the sizes, that V is one bencoded value in canonical
// form, and the signature over BEP 44's signed buffer, under strict
// RFC 8032 rules (identity.VerifyStrict).
//
// V must be canonical because nodes decode a put's value and encode it
// again before they check the signature: an item signed over any other
// encoding of the same value is refused by every node, so it is refused
// here first, where the reason can be told.
func (it *Item) Verify() error {
	if len(it.Salt) > MaxSaltSize {
		return fmt.Errorf("%w: salt is %d bytes, at most %d are allowed", ErrInvalidItem, len(it.Salt), MaxSaltSize)
	}
	if it.Seq < 0 {
		return fmt.Errorf("%w: seq %d is negative", ErrInvalidItem, it.Seq)
	}
	if len(it.V) > MaxValueSize {
		return fmt.Errorf("%w: value is %d bytes, at most %d are allowed", ErrInvalidItem, len(it.V), MaxValueSize)
	}
	if err := checkBencode(it.V); err != nil {
		return fmt.Errorf("%w: value %v", ErrInvalidItem, err)
	}
	if err := identity.VerifyStrict(it.Key, it.signedBytes(), it.Sig[:]); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidItem, err)
	}
	return nil
}

// signedBytes is the buffer a BEP 44 mutable item's signature covers:
// "4:salt<len>:<salt>" when there is a salt, then "3:seqi<seq>e1:v" and
// the bencoded value.
func (it *Item) signedBytes() []byte {
	b := make([]byte, 0, 32+len(it.Salt)+len(it.V))
	if len(it.Salt) > 0 {
		b = append(b, "4:salt"...)
		b = strconv.AppendInt(b, int64(len(it.Salt)), 10)
		b = append(b, ':')
		b = append(b, it.Salt...)
	}
	b = append(b, "3:seqi"...)
	b = strconv.AppendInt(b, it.Seq, 10)
	b = append(b, "e1:v"...)
	return append(b, it.V...)
}

// checkBencode requires v to be exactly one bencoded value, encoded the
// one way anacrolix/torrent/bencode (and every BEP 44 node) encodes it.
func checkBencode(v []byte) error {
	if len(v) == 0 {
		return errors.New("is empty, not a bencoded value")
	}
	var x any
	if err := bencode.Unmarshal(v, &x); err != nil {
		return fmt.Errorf("is not one bencoded value: %w", err)
	}
	again, err := bencode.Marshal(x)
	if err != nil {
		return fmt.Errorf("is not one bencoded value: %w", err)
	}
	if !bytes.Equal(again, v) {
		return errors.New("is not in canonical bencode form")
	}
	return nil
}
