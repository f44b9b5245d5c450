package stunturn

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pion/turn/v5"
)

// ErrNoSecret is returned by Credentials on a server without
// Options.Secret: it could mint credentials nobody would accept.
var ErrNoSecret = errors.New("stunturn: no secret for TURN credentials")

// maxUsername keeps a minted user name inside STUN's USERNAME limit
// (RFC 8489 section 14.3: fewer than 509 bytes).
const maxUsername = 508

// Credentials mints a TURN REST credential that this server, and any
// other sharing its Secret, accepts until ttl has passed (by
// Options.Now): username "<expiry unix>:<label>", password
// base64(HMAC-SHA1(secret, username)). The label is free text for the
// logs (a random string, or the key the proof of work was for); quotas
// count by the whole user name, so each credential gets its own
// MaxAllocationsPerUser.
//
// An allocation made with it lives past the expiry until its own
// lifetime runs out (10 minutes by default): refreshing it needs a
// valid credential.
func (s *Server) Credentials(label string, ttl time.Duration) (username, password string, err error) {
	if s.o.Secret == nil {
		return "", "", ErrNoSecret
	}
	if ttl <= 0 {
		return "", "", fmt.Errorf("stunturn: credential lifetime %v is not positive", ttl)
	}
	if !utf8.ValidString(label) {
		return "", "", errors.New("stunturn: credential label is not UTF-8")
	}
	username = strconv.FormatInt(s.o.Now().Add(ttl).Unix(), 10) + ":" + label
	if len(username) > maxUsername {
		return "", "", fmt.Errorf("stunturn: credential label of %d bytes is too long", len(label))
	}
	return username, restPassword(s.o.Secret, username), nil
}

func restPassword(secret []byte, username string) string {
	m := hmac.New(sha1.New, secret)
	m.Write([]byte(username))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// authenticate is pion's AuthHandler: it returns the long-term key the
// request's MESSAGE-INTEGRITY must match, and pion checks the match (a
// wrong password shows up in onAuth). The user ID it returns, which
// quotas count by, is the whole user name.
func (s *Server) authenticate(ra *turn.RequestAttributes) (userID string, key []byte, ok bool) {
	if k, ok := s.keys[ra.Username]; ok {
		return ra.Username, k, true
	}
	refuse := func(why string) (string, []byte, bool) {
		s.stats.refused.Add(1)
		s.log.Debug("stunturn: refused credential", "why", why, "user", ra.Username, "from", ra.SrcAddr, "method", ra.Method.String())
		return "", nil, false
	}
	if s.o.Secret == nil {
		return refuse("unknown user")
	}
	exp, _, found := strings.Cut(ra.Username, ":")
	if !found {
		return refuse("unknown user")
	}
	t, err := strconv.ParseInt(exp, 10, 64)
	if err != nil {
		return refuse("malformed expiry")
	}
	if s.o.Now().Unix() > t {
		return refuse("expired")
	}
	return ra.Username, turn.GenerateAuthKey(ra.Username, s.o.Realm, restPassword(s.o.Secret, ra.Username)), true
}

// onAuth sees pion's verdict on MESSAGE-INTEGRITY for user names
// authenticate accepted: false is a wrong password, a forged REST
// credential or a different realm.
func (s *Server) onAuth(src, _ net.Addr, _, username, _, method string, verdict bool) {
	if verdict {
		return
	}
	s.stats.refused.Add(1)
	s.log.Debug("stunturn: refused credential", "why", "wrong password", "user", username, "from", src, "method", method)
}
