package identity

import (
	"errors"
	"fmt"
	"strings"
)

// URL schemes that carry a key as their host part.
const (
	SchemeKeyhole  = "keyhole"
	SchemeOpenhost = "oh"
)

// ErrAddress is wrapped by every address parsing error.
var ErrAddress = errors.New("invalid address")

// ParseKey decodes a 52-character z-base-32 address into a public key.
func ParseKey(s string) (PublicKey, error) {
	var k PublicKey
	if len(s) != 52 {
		return k, fmt.Errorf("%w: public key z-base-32 must be exactly 52 characters, got %d", ErrAddress, len(s))
	}
	b, err := DecodeZBase32(s, PublicKeySize)
	if err != nil {
		return k, fmt.Errorf("%w: z-base-32 public key contains invalid characters: %v", ErrAddress, err)
	}
	copy(k[:], b)
	return k, nil
}

// URL is a parsed keyhole:// or oh:// URL: a key and an absolute path.
type URL struct {
	Scheme string // "keyhole" or "oh"
	Key    PublicKey
	Path   string // always starts with "/"
}

// String gives the normalized form, e.g. "oh://<z32>/".
func (u URL) String() string { return u.Scheme + "://" + u.Key.String() + u.Path }

// ParseURL parses keyhole://<z32>[/path] or oh://<z32>[/path]. Like
// openhost it refuses query and fragment parts (they have no meaning to
// the host and would be silently lost) and normalizes an empty path to "/".
func ParseURL(s string) (URL, error) {
	var u URL
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok || (scheme != SchemeKeyhole && scheme != SchemeOpenhost) {
		return u, fmt.Errorf("%w: missing oh:// scheme (or keyhole://) in %q", ErrAddress, s)
	}
	if strings.ContainsAny(rest, "?#") {
		return u, fmt.Errorf("%w: openhost URLs must not carry query or fragment components", ErrAddress)
	}
	host, path, _ := strings.Cut(rest, "/")
	k, err := ParseKey(host)
	if err != nil {
		return u, err
	}
	return URL{Scheme: scheme, Key: k, Path: "/" + path}, nil
}

// ParseAddress accepts any way a person may hand over a key: a bare
// z-base-32 address, "pk:<z32>" (Pkarr's form), or a keyhole:// or oh://
// URL (whose path is ignored).
func ParseAddress(s string) (PublicKey, error) {
	s = strings.TrimSpace(s)
	switch {
	case strings.Contains(s, "://"):
		u, err := ParseURL(s)
		return u.Key, err
	case strings.HasPrefix(s, "pk:"):
		return ParseKey(s[3:])
	default:
		return ParseKey(s)
	}
}
