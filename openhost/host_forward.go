package openhost

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// errSessionClosed aborts request-body pipes when the session ends.
var errSessionClosed = errors.New("openhost: session closed")

// errResponseDone closes a request-body pipe whose response has ended,
// so body frames still arriving are dropped rather than block.
var errResponseDone = errors.New("openhost: response already sent")

// transaction is one HTTP exchange, keyed by request id. openhost's
// daemon runs one at a time and answers with id 0; this host runs them
// concurrently and answers with the request's id, which a v1 or
// one-at-a-time client sees as the same thing.
//
// It is sent upstream when its first REQUEST_BODY or REQUEST_END comes,
// so a head followed directly by END goes out with no body at all
// rather than an empty chunked one.
type transaction struct {
	id  uint32
	req *http.Request // prepared at REQUEST_HEAD; nil when refused
	// refuse is the status sent instead of forwarding (400, 502).
	refuse int

	started bool           // the response goroutine is running
	body    *io.PipeWriter // request body to upstream; nil if none
	bodyR   *io.PipeReader
	bodyLen int64
	cancel  context.CancelFunc

	// Guarded by session.mu: the transaction leaves txs when both are set.
	reqDone  bool // REQUEST_END received
	respDone bool // RESPONSE_END sent (or the response abandoned)
}

// handle acts on one frame after authentication.
func (s *session) handle(h FrameHeader) error {
	switch h.Type {
	case TypeRequestHead:
		return s.onHead(h)
	case TypeRequestBody:
		return s.onBody(h)
	case TypeRequestEnd:
		return s.onEnd(h)
	case TypePing:
		return s.w.WriteFrame(Frame{Type: TypePong})
	case TypePong:
		return nil
	case TypeError:
		// Only the first bytes survive ParseErrorPayload anyway.
		p, err := io.ReadAll(io.LimitReader(s.r, 4*MaxDiagnosticLen))
		if err != nil {
			return err
		}
		return ParseErrorPayload(p)
	case TypeAuthNonce, TypeAuthClient, TypeAuthHost:
		return s.violation("unexpected "+h.Type.String()+" after authentication", nil)
	}
	// RESPONSE_*, WS_UPGRADE (reserved), and WS_FRAME (no tunnel here).
	return s.violation("unexpected frame type from client", fmt.Errorf("%s", h.Type))
}

func (s *session) onHead(h FrameHeader) error {
	p, err := s.r.ReadPayload(MaxRequestHeadLen)
	if err != nil {
		if errors.Is(err, ErrFrameTooLarge) {
			return s.violation("request head too large", err)
		}
		return err
	}
	head, err := ParseRequestHead(p)
	if err != nil {
		return s.violation("malformed request head", err)
	}
	s.mu.Lock()
	_, busy := s.txs[h.RequestID]
	n := len(s.txs)
	s.mu.Unlock()
	if busy {
		return s.violation(fmt.Sprintf("request id %d is still in use", h.RequestID), nil)
	}
	if n >= MaxOpenRequests {
		return s.violation("too many open requests", nil)
	}
	tx := &transaction{id: h.RequestID}
	tx.req, tx.refuse = s.prepare(head)
	s.mu.Lock()
	s.txs[tx.id] = tx
	s.mu.Unlock()
	if tx.refuse != 0 {
		s.start(tx, false)
	}
	return nil
}

func (s *session) lookup(id uint32) *transaction {
	s.mu.Lock()
	defer s.mu.Unlock()
	if tx := s.txs[id]; tx != nil && !tx.reqDone {
		return tx
	}
	return nil
}

func (s *session) onBody(h FrameHeader) error {
	tx := s.lookup(h.RequestID)
	if tx == nil {
		return s.violation("REQUEST_BODY without an open REQUEST_HEAD", nil)
	}
	tx.bodyLen += int64(h.Length)
	if s.cfg.MaxBody > 0 && tx.bodyLen > s.cfg.MaxBody {
		return s.violation("request body too large", nil)
	}
	if !tx.started {
		s.start(tx, true)
	}
	if tx.body == nil {
		return nil // refused: Next skips the payload
	}
	if s.copyBuf == nil {
		s.copyBuf = make([]byte, 32<<10)
	}
	for s.r.Remaining() > 0 {
		n, err := s.r.Read(s.copyBuf)
		if err != nil {
			return err
		}
		if _, err := tx.body.Write(s.copyBuf[:n]); err != nil {
			// The upstream stopped reading (it answered already, or
			// the request failed): drop the rest of this body.
			return nil
		}
	}
	return nil
}

func (s *session) onEnd(h FrameHeader) error {
	tx := s.lookup(h.RequestID)
	if tx == nil {
		return s.violation("REQUEST_END without an open REQUEST_HEAD", nil)
	}
	if !tx.started {
		s.start(tx, false)
	}
	if tx.body != nil {
		tx.body.Close()
	}
	s.mu.Lock()
	tx.reqDone = true
	if tx.respDone {
		delete(s.txs, tx.id)
	}
	s.mu.Unlock()
	return nil
}

// start launches tx's response goroutine, with a streamed request body
// if withBody.
func (s *session) start(tx *transaction, withBody bool) {
	tx.started = true
	ctx, cancel := context.WithCancel(s.ctx)
	tx.cancel = cancel
	if tx.refuse == 0 {
		req := tx.req.WithContext(ctx)
		if withBody {
			pr, pw := io.Pipe()
			s.mu.Lock()
			tx.body, tx.bodyR = pw, pr
			s.mu.Unlock()
			req.Body = pr
		} else {
			req.Body, req.ContentLength = http.NoBody, 0
		}
		tx.req = req
	}
	s.wg.Add(1)
	go s.respond(tx)
}

// respond forwards tx upstream and sends the response back as it
// arrives, chunk by chunk.
func (s *session) respond(tx *transaction) {
	defer s.wg.Done()
	defer tx.cancel()
	log := s.log.With("request_id", tx.id)
	if tx.refuse != 0 {
		s.reply(tx, ResponseHead{StatusCode: tx.refuse, Reason: http.StatusText(tx.refuse), Header: Header{{Name: "Content-Length", Value: "0"}}})
		return
	}
	log = log.With("method", tx.req.Method, "path", tx.req.URL.Path)
	resp, err := s.cfg.Transport.RoundTrip(tx.req)
	if err != nil {
		// IMPLEMENTATION-NOTES section 1: an upstream failure is a 502
		// and RESPONSE_END, not an ERROR, and the channel stays open.
		log.Info("openhost: upstream request failed", "err", err)
		s.reply(tx, BadGatewayResponse())
		return
	}
	defer resp.Body.Close()
	if err := s.w.WriteFrame(s.responseHeadFrame(tx.id, resp)); err != nil {
		s.finish(tx)
		return
	}
	bw := s.w.ResponseBody(tx.id)
	cw := &chunkWriter{w: bw}
	if _, err := io.CopyBuffer(cw, resp.Body, make([]byte, BodyChunkLen)); err != nil {
		if cw.err == nil && s.ctx.Err() == nil {
			// The upstream failed after the head went out, so only
			// ERROR can tell the client its body is short (spec 01
			// section 5 has the client turn it into a 502).
			log.Info("openhost: upstream response failed", "err", err)
			s.w.WriteLast(ErrorFrame("upstream response truncated"))
			s.cancel(fmt.Errorf("%w: %w", ErrUpstreamTruncated, err))
		}
		s.finish(tx)
		return
	}
	s.finish(tx)
	bw.Close()
}

// chunkWriter hides the body writer's other methods, so io.CopyBuffer
// uses its buffer (one frame's worth), and remembers a failed write, so
// a broken channel is not mistaken for a failed upstream.
type chunkWriter struct {
	w   io.Writer
	err error
}

func (c *chunkWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	if err != nil {
		c.err = err
	}
	return n, err
}

// reply sends a bodyless response and ends tx.
func (s *session) reply(tx *transaction, head ResponseHead) {
	p, err := AppendResponseHead(nil, head)
	if err != nil {
		panic("openhost: fixed response head does not encode: " + err.Error())
	}
	if s.w.WriteFrame(Frame{Type: TypeResponseHead, RequestID: tx.id, Payload: p}) != nil {
		s.finish(tx)
		return
	}
	s.finish(tx)
	s.w.WriteFrame(Frame{Type: TypeResponseEnd, RequestID: tx.id})
}

// finish marks tx's response done, before its RESPONSE_END goes out, so
// a client may reuse the id as soon as it sees that END. A request body
// still arriving is dropped.
func (s *session) finish(tx *transaction) {
	s.mu.Lock()
	tx.respDone = true
	if tx.reqDone {
		delete(s.txs, tx.id)
	}
	bodyR := tx.bodyR
	s.mu.Unlock()
	if bodyR != nil {
		bodyR.CloseWithError(errResponseDone)
	}
}

// abortAll unblocks every request-body pipe; upstream requests end with
// the session's context.
func (s *session) abortAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, tx := range s.txs {
		if tx.bodyR != nil {
			tx.bodyR.CloseWithError(errSessionClosed)
		}
	}
}

// Header rules of spec 01 section 4.1 and openhost's forward.rs.
var (
	// hopByHop are RFC 9110 section 7.6.1's connection-specific fields,
	// plus Proxy-Connection, which some clients still send.
	hopByHop = []string{"Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
		"Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}
	// provenance are the fields a client could use to lie about where
	// a request came from; the host never passes them on.
	provenance = []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "Forwarded", "X-Real-Ip"}
)

// stripHopByHop deletes the hop-by-hop fields and those the Connection
// field names.
func stripHopByHop(h http.Header) {
	for _, v := range h.Values("Connection") {
		for name := range strings.SplitSeq(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range hopByHop {
		h.Del(name)
	}
}

// prepare turns a head into the upstream request, or into the status
// to refuse it with.
func (s *session) prepare(head RequestHead) (*http.Request, int) {
	hh := head.Header.HTTP()
	if isWebSocketUpgrade(hh) {
		// Spec 01 section 4.2: without a WebSocket policy every
		// upgrade is refused with a 502 through the normal response path.
		return nil, http.StatusBadGateway
	}
	u, err := upstreamURL(s.cfg.Upstream, head.Target)
	if err != nil {
		s.log.Debug("openhost: refusing request target", "target", head.Target, "err", err)
		return nil, http.StatusBadRequest
	}
	stripHopByHop(hh)
	for _, name := range provenance {
		hh.Del(name)
	}
	hh.Del("Host")
	var length int64 = -1
	if cl := hh.Get("Content-Length"); cl != "" {
		n, err := strconv.ParseInt(cl, 10, 64)
		if err != nil || n < 0 || len(hh.Values("Content-Length")) > 1 {
			return nil, http.StatusBadRequest
		}
		length = n
	}
	hh.Del("Content-Length") // net/http writes it from ContentLength
	if _, ok := hh["User-Agent"]; !ok {
		hh["User-Agent"] = []string{""} // none, rather than Go's
	}
	req := &http.Request{
		Method:        head.Method,
		URL:           u,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        hh,
		Host:          s.cfg.Upstream.Host,
		ContentLength: length,
	}
	return req, 0
}

func isWebSocketUpgrade(h http.Header) bool {
	for _, v := range h.Values("Upgrade") {
		for p := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(p), "websocket") {
				return true
			}
		}
	}
	return false
}

// upstreamURL joins a request target to the upstream. Origin-form
// targets are taken as they are; absolute-form ones keep only their
// path and query, as openhost's daemon does, so a client can never pick
// another host.
func upstreamURL(up *url.URL, target string) (*url.URL, error) {
	if !strings.HasPrefix(target, "/") {
		abs, err := url.Parse(target)
		if err != nil || (abs.Scheme != "http" && abs.Scheme != "https") || abs.Host == "" {
			return nil, fmt.Errorf("target %q is neither origin-form nor an absolute http URL", clip(target))
		}
		target = abs.RequestURI()
	}
	t, err := url.ParseRequestURI(target)
	if err != nil {
		return nil, err
	}
	return &url.URL{Scheme: up.Scheme, Host: up.Host, Path: t.Path, RawPath: t.RawPath, RawQuery: t.RawQuery}, nil
}

// responseHeadFrame encodes resp's status and fields with hop-by-hop
// fields removed. A field the head cannot carry (not UTF-8, say) is
// dropped and logged rather than failing the response.
func (s *session) responseHeadFrame(id uint32, resp *http.Response) Frame {
	hh := resp.Header.Clone()
	stripHopByHop(hh)
	var fields Header
	for _, f := range HeaderFromHTTP(hh) {
		if err := checkField(f); err != nil {
			s.log.Info("openhost: dropping upstream response field", "err", err)
			continue
		}
		fields = append(fields, f)
	}
	reason := strings.TrimPrefix(resp.Status, strconv.Itoa(resp.StatusCode)+" ")
	if reason == resp.Status || checkText("reason", reason) != nil {
		reason = http.StatusText(resp.StatusCode)
	}
	p, err := AppendResponseHead(nil, ResponseHead{StatusCode: resp.StatusCode, Reason: reason, Header: fields})
	if err != nil {
		p, _ = AppendResponseHead(nil, BadGatewayResponse())
	}
	return Frame{Type: TypeResponseHead, RequestID: id, Payload: p}
}
