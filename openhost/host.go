package openhost

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/keyhole-p2p/keyhole/identity"
)

// Defaults for the zero values of HostConfig.
const (
	// DefaultBindingTimeout is how long a client has to send
	// AUTH_CLIENT after AUTH_NONCE: openhost's BINDING_TIMEOUT_SECS.
	DefaultBindingTimeout = 10 * time.Second
	// DefaultMaxBody caps one request body, as openhost's
	// forward.max_body_bytes does by default (16 MiB).
	DefaultMaxBody = 16 << 20
	// MaxRequestHeadLen bounds a REQUEST_HEAD payload; a longer one is
	// refused before it is read. openhost sets no bound below
	// MaxPayloadLen; real heads are a few KiB.
	MaxRequestHeadLen = 256 << 10
	// MaxOpenRequests bounds the transactions open at once on one
	// channel; a client that opens more is torn down.
	MaxOpenRequests = 256
)

// Errors Serve returns; the channel is closed whichever it is.
var (
	// ErrAuthFailed means AUTH_CLIENT did not verify or named a client
	// that is not paired. The client is sent nothing, so it cannot
	// tell the two apart or learn whether any key is paired.
	ErrAuthFailed = errors.New("openhost: client authentication failed")
	// ErrBindingTimeout means no AUTH_CLIENT came within the binding
	// timeout; the client was sent ERROR "channel binding timeout".
	ErrBindingTimeout = errors.New("openhost: channel binding timeout")
	// ErrProtocol means the client broke the framing rules; it was
	// sent an ERROR frame naming the rule.
	ErrProtocol = errors.New("openhost: protocol violation")
	// ErrUpstreamTruncated means an upstream response failed after its
	// head was sent, so the only honest signal left was an ERROR frame.
	ErrUpstreamTruncated = errors.New("openhost: upstream response truncated")
)

// HostConfig configures Serve. Identity, Upstream, Authorize and Binding
// are required.
type HostConfig struct {
	// Identity is the host's key; it signs AUTH_HOST.
	Identity *identity.PrivateKey
	// Upstream is the HTTP service requests go to, such as
	// http://127.0.0.1:8096. Only its scheme and host are used: the
	// path comes from each request, and Host is set to Upstream.Host.
	Upstream *url.URL
	// Authorize reports whether a client key is paired. It is asked
	// only after the client's signature has been checked, and is asked
	// even when the signature failed, so both failures take the same path.
	Authorize func(client identity.PublicKey) bool
	// Binding returns the 32-byte channel-binding secret of the DTLS
	// session (the RFC 5705 exporter output with ExporterLabel, or the
	// host certificate's SHA-256 in CertFp mode). It is called once,
	// when AUTH_CLIENT arrives.
	Binding func() ([32]byte, error)
	// Transport sends requests upstream. If nil, a clone of
	// http.DefaultTransport without proxies or transparent
	// compression is used, so the client sees the upstream's bytes.
	Transport http.RoundTripper
	// MaxBody caps each request body in bytes; a client that sends more
	// is sent ERROR "request body too large" and torn down. If zero,
	// DefaultMaxBody; if negative, no cap. Response bodies are streamed
	// and not capped.
	MaxBody int64
	// BindingTimeout is how long the client has to authenticate. If
	// zero, DefaultBindingTimeout.
	BindingTimeout time.Duration
	// Logger receives diagnostics. If nil, nothing is logged.
	Logger *slog.Logger
}

func (c *HostConfig) populate() error {
	switch {
	case c.Identity == nil:
		return errors.New("openhost: HostConfig.Identity is nil")
	case c.Upstream == nil || c.Upstream.Host == "" || (c.Upstream.Scheme != "http" && c.Upstream.Scheme != "https"):
		return fmt.Errorf("openhost: HostConfig.Upstream %v is not an http or https URL with a host", c.Upstream)
	case c.Authorize == nil:
		return errors.New("openhost: HostConfig.Authorize is nil")
	case c.Binding == nil:
		return errors.New("openhost: HostConfig.Binding is nil")
	}
	if c.Transport == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.Proxy = nil
		t.DisableCompression = true
		c.Transport = t
	}
	if c.MaxBody == 0 {
		c.MaxBody = DefaultMaxBody
	}
	if c.BindingTimeout <= 0 {
		c.BindingTimeout = DefaultBindingTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Serve runs the host side of one openhost session over ch, the data
// channel's bytes in order, until the client leaves, breaks the
// protocol or fails to authenticate, or ctx ends. It owns ch and closes
// it before returning. It returns nil when the client closed the
// channel after authenticating, and otherwise the reason the session
// ended (ErrAuthFailed, ErrBindingTimeout, ErrProtocol, a *RemoteError
// for an ERROR from the client, or the context's cause).
//
// ch must deliver a byte stream: a message-oriented data channel needs
// an adapter that hands out each message's bytes in turn. Every frame
// Serve sends goes out in a single Write, so each is one message.
func Serve(ctx context.Context, ch io.ReadWriteCloser, cfg HostConfig) error {
	if err := cfg.populate(); err != nil {
		ch.Close()
		return err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	s := &session{
		cfg:    cfg,
		log:    cfg.Logger,
		r:      NewReader(ch),
		w:      NewWriter(ch),
		ctx:    ctx,
		cancel: cancel,
		txs:    make(map[uint32]*transaction),
	}
	// Ending the context is what unblocks everything: the read loop
	// (closed channel), body pipes (aborted) and upstream requests.
	stop := context.AfterFunc(ctx, func() {
		ch.Close()
		s.abortAll()
	})
	defer stop()
	err := s.run()
	cancel(err)
	ch.Close()
	s.abortAll()
	s.wg.Wait()
	if cause := context.Cause(ctx); cause != nil && err != nil && !errors.Is(err, cause) {
		// The channel broke because the session was ended elsewhere
		// (timer, failed response, caller): that is the reason.
		err = cause
	}
	return err
}

// session is one channel's state. The read loop (run) owns r; writes go
// through w, which is safe for concurrent use; txs is shared with the
// response goroutines under mu.
type session struct {
	cfg    HostConfig
	log    *slog.Logger
	r      *Reader
	w      *Writer
	ctx    context.Context
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup // response goroutines

	mu  sync.Mutex
	txs map[uint32]*transaction // open transactions by request id; guarded by mu

	copyBuf []byte // request-body copy buffer, used by the read loop only
}

func (s *session) run() error {
	client, err := s.authenticate()
	if err != nil {
		return err
	}
	s.log = s.log.With("client", client.String())
	s.log.Debug("openhost: client authenticated")
	for {
		h, err := s.r.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			if errors.Is(err, ErrMalformedFrame) || errors.Is(err, ErrFrameTooLarge) {
				return s.violation("malformed frame", err)
			}
			return err
		}
		if err := s.handle(h); err != nil {
			return err
		}
	}
}

// authenticate runs the channel binding of spec 01 section 3 step 9.
// Every way AUTH_CLIENT can fail to prove a paired key ends the same
// way: the channel is closed and the client is sent nothing.
func (s *session) authenticate() (identity.PublicKey, error) {
	var none identity.PublicKey
	var nonce [AuthNonceLen]byte
	rand.Read(nonce[:])
	timer := time.AfterFunc(s.cfg.BindingTimeout, func() {
		s.w.WriteLast(ErrorFrame("channel binding timeout"))
		s.cancel(ErrBindingTimeout)
	})
	defer timer.Stop()
	if err := s.w.WriteFrame(AuthNonceFrame(nonce)); err != nil {
		return none, err
	}
	h, err := s.r.Next()
	if err == nil && h.Type != TypeAuthClient {
		return none, s.violation(fmt.Sprintf("expected AuthClient before any other frame (got 0x%02x)", uint8(h.Type)), nil)
	}
	var p []byte
	if err == nil {
		p, err = s.r.ReadPayload(AuthClientLen)
	}
	if !timer.Stop() {
		return none, ErrBindingTimeout
	}
	if err != nil {
		if errors.Is(err, ErrMalformedFrame) || errors.Is(err, ErrFrameTooLarge) {
			return none, s.violation("malformed frame", err)
		}
		return none, err
	}
	client, sig, err := ParseAuthClient(p)
	if err != nil {
		return none, s.violation("malformed frame", err)
	}
	secret, err := s.cfg.Binding()
	if err != nil {
		return none, fmt.Errorf("openhost: channel binding secret: %w", err)
	}
	ab := AuthBytesBound(secret, s.cfg.Identity.Public(), client, nonce)
	sigErr := identity.VerifyStrict(client, ab[:], sig[:])
	paired := s.cfg.Authorize(client)
	switch {
	case sigErr != nil:
		return none, fmt.Errorf("%w: AUTH_CLIENT for %s: %w", ErrAuthFailed, client, sigErr)
	case !paired:
		return none, fmt.Errorf("%w: client %s is not paired", ErrAuthFailed, client)
	}
	var hostSig [identity.SignatureSize]byte
	copy(hostSig[:], s.cfg.Identity.Sign(ab[:]))
	return client, s.w.WriteFrame(AuthHostFrame(hostSig))
}

// violation sends ERROR with diag, which the client may display, and
// returns the error that ends the session; cause, if any, is logged
// only on this side.
func (s *session) violation(diag string, cause error) error {
	s.w.WriteLast(ErrorFrame(diag))
	if cause != nil {
		return fmt.Errorf("%w: %s: %w", ErrProtocol, diag, cause)
	}
	return fmt.Errorf("%w: %s", ErrProtocol, diag)
}
