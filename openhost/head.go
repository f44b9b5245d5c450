package openhost

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The payload of a REQUEST_HEAD or RESPONSE_HEAD frame (spec 01 section
// 4) is UTF-8 text: an HTTP/1.1 start line and header fields, each line
// ended by CRLF, then an empty line. openhost's daemon parses it by hand
// (crates/openhost-daemon/src/forward.rs) and accepts only HTTP/1.1; the
// rules below are the daemon's, made stricter where RFC 9112 asks a
// recipient to refuse what could smuggle a request (whitespace before a
// colon, line folding, bare CR or LF, bytes after the empty line).
// openhost's own senders never produce any of those.

// MaxHeadFields caps the header fields in one head. A field costs a
// decoder more memory than its bytes on the wire, so without a cap a
// 16 MiB head of "a:" lines would cost far more than 16 MiB. openhost
// sets no cap; real heads carry a few dozen fields.
const MaxHeadFields = 1024

// ErrMalformedHead is wrapped by every error about a head's text, from
// the parsers and from the encoders, which refuse anything the parsers
// would (so no field can carry a CR or LF into the head it is written to).
var ErrMalformedHead = errors.New("openhost: malformed HTTP head")

// HeaderField is one header line. Names keep their case and fields their
// order so that a head decodes and re-encodes to the same bytes.
type HeaderField struct {
	// Name is an RFC 9110 token, compared without regard to case.
	Name string
	// Value is UTF-8 without control characters (tab aside) and
	// without leading or trailing whitespace.
	Value string
}

// Header is a head's fields in wire order, repeats included. It is a
// slice rather than an http.Header because the latter forgets order and
// spelling, which a faithful proxy and a byte-exact test both need.
type Header []HeaderField

// Get returns the first value of the field named name, matched without
// regard to case as HTTP requires, or "" if there is none.
func (h Header) Get(name string) string {
	for _, f := range h {
		if strings.EqualFold(f.Name, name) {
			return f.Value
		}
	}
	return ""
}

// Values returns every value of the field named name, in order.
func (h Header) Values(name string) []string {
	var vs []string
	for _, f := range h {
		if strings.EqualFold(f.Name, name) {
			vs = append(vs, f.Value)
		}
	}
	return vs
}

// HTTP converts h for net/http, which canonicalises the names.
func (h Header) HTTP() http.Header {
	hh := make(http.Header, len(h))
	for _, f := range h {
		hh.Add(f.Name, f.Value)
	}
	return hh
}

// HeaderFromHTTP converts a net/http header, sorting the names so the
// encoded head does not depend on map order.
func HeaderFromHTTP(hh http.Header) Header {
	names := make([]string, 0, len(hh))
	for name := range hh {
		names = append(names, name)
	}
	slices.Sort(names)
	var h Header
	for _, name := range names {
		for _, v := range hh[name] {
			h = append(h, HeaderField{Name: name, Value: v})
		}
	}
	return h
}

// RequestHead is the payload of a REQUEST_HEAD frame.
type RequestHead struct {
	// Method is an RFC 9110 token such as "GET".
	Method string
	// Target is the request-target as sent, usually origin-form
	// ("/path?query"). openhost's daemon also accepts absolute-form
	// "http://host/path" and keeps only the path; which forms to serve
	// is the host's decision, not this codec's.
	Target string
	// Header is forwarded as received: stripping hop-by-hop and
	// provenance fields and pinning Host (spec 01 section 4.1) is the
	// host's job.
	Header Header
}

// ResponseHead is the payload of a RESPONSE_HEAD frame. The version is
// always HTTP/1.1.
type ResponseHead struct {
	// StatusCode has three digits, 100 to 999.
	StatusCode int
	// Reason is the reason phrase, possibly empty; clients should not
	// rely on it (RFC 9112 section 4).
	Reason string
	// Header is the fields as sent. On the channel the body ends at
	// RESPONSE_END whatever they say; openhost's daemon strips
	// hop-by-hop fields and sets Content-Length to the body it buffered.
	Header Header
}

// BadGatewayResponse is the head openhost's daemon sends, followed by
// RESPONSE_END, when it cannot reach its upstream or has none
// (IMPLEMENTATION-NOTES section 1, "Errors"): an upstream failure is an
// HTTP 502, not an ERROR frame, and keeps the channel open. It encodes
// to exactly the daemon's bytes.
func BadGatewayResponse() ResponseHead {
	return ResponseHead{StatusCode: http.StatusBadGateway, Reason: "Bad Gateway", Header: Header{{Name: "Content-Length", Value: "0"}}}
}

// ParseRequestHead decodes a REQUEST_HEAD payload. The strings it returns
// share one copy of p, so p may be reused afterwards.
func ParseRequestHead(p []byte) (RequestHead, error) {
	start, fields, err := parseHead(p, "request head")
	if err != nil {
		return RequestHead{}, err
	}
	method, rest, ok1 := strings.Cut(start, " ")
	target, version, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 {
		return RequestHead{}, headErr("request line %q is not METHOD SP TARGET SP HTTP/1.1", clip(start))
	}
	if err := checkToken("method", method); err != nil {
		return RequestHead{}, err
	}
	if err := checkTarget(target); err != nil {
		return RequestHead{}, err
	}
	if version != "HTTP/1.1" {
		return RequestHead{}, headErr("request line version %q is not HTTP/1.1, the only version openhost accepts", clip(version))
	}
	return RequestHead{Method: method, Target: target, Header: fields}, nil
}

// AppendRequestHead appends h's wire text, refusing anything
// ParseRequestHead would refuse, so ParseRequestHead gives h back.
func AppendRequestHead(dst []byte, h RequestHead) ([]byte, error) {
	if err := checkToken("method", h.Method); err != nil {
		return dst, err
	}
	if err := checkTarget(h.Target); err != nil {
		return dst, err
	}
	if err := checkFields(h.Header); err != nil {
		return dst, err
	}
	dst = append(dst, h.Method...)
	dst = append(dst, ' ')
	dst = append(dst, h.Target...)
	dst = append(dst, " HTTP/1.1\r\n"...)
	return appendFields(dst, h.Header), nil
}

// ParseResponseHead decodes a RESPONSE_HEAD payload: "HTTP/1.1", a
// three-digit status code from 100 to 999, a space, and a reason phrase
// that may be empty.
func ParseResponseHead(p []byte) (ResponseHead, error) {
	start, fields, err := parseHead(p, "response head")
	if err != nil {
		return ResponseHead{}, err
	}
	rest, ok := strings.CutPrefix(start, "HTTP/1.1 ")
	if !ok {
		return ResponseHead{}, headErr("status line %q does not start with \"HTTP/1.1 \"", clip(start))
	}
	if len(rest) < 3 || !isStatus(rest[:3]) {
		return ResponseHead{}, headErr("status line %q lacks a three-digit status code from 100 to 999", clip(start))
	}
	code, _ := strconv.Atoi(rest[:3])
	reason, ok := strings.CutPrefix(rest[3:], " ")
	if !ok {
		return ResponseHead{}, headErr("status line %q lacks the space after its status code (RFC 9112 section 4)", clip(start))
	}
	if err := checkText("reason phrase", reason); err != nil {
		return ResponseHead{}, err
	}
	return ResponseHead{StatusCode: code, Reason: reason, Header: fields}, nil
}

// AppendResponseHead appends h's wire text, refusing anything
// ParseResponseHead would refuse.
func AppendResponseHead(dst []byte, h ResponseHead) ([]byte, error) {
	if h.StatusCode < 100 || h.StatusCode > 999 {
		return dst, headErr("status code %d is not three digits from 100 to 999", h.StatusCode)
	}
	if err := checkText("reason phrase", h.Reason); err != nil {
		return dst, err
	}
	if err := checkFields(h.Header); err != nil {
		return dst, err
	}
	dst = append(dst, "HTTP/1.1 "...)
	dst = strconv.AppendInt(dst, int64(h.StatusCode), 10)
	dst = append(dst, ' ')
	dst = append(dst, h.Reason...)
	dst = append(dst, "\r\n"...)
	return appendFields(dst, h.Header), nil
}

// parseHead checks what both heads share and splits off the start line.
func parseHead(p []byte, what string) (string, Header, error) {
	if !utf8.Valid(p) {
		return "", nil, headErr("%s is not valid UTF-8 (first bad byte at offset %d), which spec 01 section 4 requires", what, badUTF8At(p))
	}
	s := string(p)
	end := strings.Index(s, "\r\n\r\n")
	if end < 0 {
		return "", nil, headErr("%s does not end with an empty line (CRLF CRLF)", what)
	}
	if extra := len(s) - end - 4; extra > 0 {
		return "", nil, headErr("%s has %d bytes after the empty line that ends it", what, extra)
	}
	start, rest, more := strings.Cut(s[:end], "\r\n")
	if i := strings.IndexAny(start, "\r\n"); i >= 0 {
		return "", nil, headErr("%s start line has a bare %s at byte %d; lines end only with CRLF", what, ctlName(start[i]), i)
	}
	var fields Header
	for line := 2; more; line++ {
		var text string
		text, rest, more = strings.Cut(rest, "\r\n")
		if len(fields) == MaxHeadFields {
			return "", nil, headErr("%s has more than %d header fields", what, MaxHeadFields)
		}
		f, err := parseField(text, line)
		if err != nil {
			return "", nil, err
		}
		fields = append(fields, f)
	}
	return start, fields, nil
}

// parseField splits one header line. Whitespace around the value is not
// part of it (RFC 9110 section 5.5), so any amount is accepted here and
// the encoder writes exactly one space: a head whose lines differ only
// there re-encodes to the canonical spelling rather than its own bytes.
func parseField(line string, n int) (HeaderField, error) {
	if line == "" {
		return HeaderField{}, headErr("line %d is empty inside the head", n)
	}
	if line[0] == ' ' || line[0] == '\t' {
		return HeaderField{}, headErr("line %d starts with whitespace: obsolete line folding is refused (RFC 9112 section 5.2)", n)
	}
	if i := strings.IndexAny(line, "\r\n"); i >= 0 {
		return HeaderField{}, headErr("line %d has a bare %s at byte %d; lines end only with CRLF", n, ctlName(line[i]), i)
	}
	name, value, ok := strings.Cut(line, ":")
	if !ok {
		return HeaderField{}, headErr("line %d (%q) has no colon", n, clip(line))
	}
	if strings.TrimRight(name, " \t") != name {
		return HeaderField{}, headErr("line %d has whitespace between the field name and the colon (RFC 9112 section 5.1)", n)
	}
	f := HeaderField{Name: name, Value: strings.Trim(value, " \t")}
	return f, checkField(f)
}

func checkFields(h Header) error {
	if len(h) > MaxHeadFields {
		return headErr("%d header fields exceed the limit of %d", len(h), MaxHeadFields)
	}
	for _, f := range h {
		if err := checkField(f); err != nil {
			return err
		}
		if strings.Trim(f.Value, " \t") != f.Value {
			return headErr("value of field %q has leading or trailing whitespace, which would not survive decoding", clip(f.Name))
		}
	}
	return nil
}

func checkField(f HeaderField) error {
	if err := checkToken("field name", f.Name); err != nil {
		return err
	}
	return checkText("value of field "+strconv.Quote(clip(f.Name)), f.Value)
}

func appendFields(dst []byte, h Header) []byte {
	for _, f := range h {
		dst = append(dst, f.Name...)
		dst = append(dst, ": "...)
		dst = append(dst, f.Value...)
		dst = append(dst, "\r\n"...)
	}
	return append(dst, "\r\n"...)
}

// checkToken requires an RFC 9110 token: one or more of
// !#$%&'*+-.^_`|~, digits and letters.
func checkToken(what, s string) error {
	if s == "" {
		return headErr("%s is empty", what)
	}
	for i := 0; i < len(s); i++ {
		if !isTchar(s[i]) {
			return headErr("%s %q has %s at byte %d, which a token cannot hold", what, clip(s), ctlName(s[i]), i)
		}
	}
	return nil
}

// checkTarget requires a non-empty request-target of visible ASCII:
// URIs carry anything else percent-encoded, and a space would end it.
func checkTarget(s string) error {
	if s == "" {
		return headErr("request target is empty")
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return headErr("request target %q has %s at byte %d; only visible ASCII is allowed", clip(s), ctlName(s[i]), i)
		}
	}
	return nil
}

// checkText allows what a field value or reason phrase may hold in a
// UTF-8 head: any valid UTF-8 but control characters, tab excepted.
// Refusing CR, LF and NUL here is what keeps a value from injecting
// header lines.
func checkText(what, s string) error {
	if !utf8.ValidString(s) {
		return headErr("%s is not valid UTF-8 (first bad byte at offset %d)", what, badUTF8At([]byte(s)))
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return headErr("%s has %s at byte %d", what, ctlName(c), i)
		}
	}
	return nil
}

func isTchar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func isStatus(s string) bool {
	return '1' <= s[0] && s[0] <= '9' && '0' <= s[1] && s[1] <= '9' && '0' <= s[2] && s[2] <= '9'
}

// ctlName names a byte for an error message without echoing a control
// character into a log line.
func ctlName(c byte) string {
	switch c {
	case '\r':
		return "CR"
	case '\n':
		return "LF"
	case ' ':
		return "a space"
	case '\t':
		return "a tab"
	}
	return fmt.Sprintf("byte 0x%02x", c)
}

// clip shortens a string quoted into an error, so a hostile 16 MiB head
// does not become a 16 MiB log line.
func clip(s string) string {
	const n = 64
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func badUTF8At(p []byte) int {
	for i := 0; i < len(p); {
		r, size := utf8.DecodeRune(p[i:])
		if r == utf8.RuneError && size <= 1 {
			return i
		}
		i += size
	}
	return -1
}

func headErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformedHead, fmt.Sprintf(format, args...))
}
