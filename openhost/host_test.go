package openhost

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyhole-p2p/keyhole/identity"
)

// testSecret stands in for the DTLS exporter output.
var testSecret = [32]byte{7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7}

// testClient is the client end of a net.Pipe whose other end Serve runs
// on, speaking through the codec.
type testClient struct {
	t      *testing.T
	conn   net.Conn
	r      *Reader
	w      *Writer
	host   identity.PublicKey
	key    *identity.PrivateKey // a paired client key
	served chan error           // Serve's result
}

func mustKey(t *testing.T) *identity.PrivateKey {
	t.Helper()
	k, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// startHost runs Serve against upstream (which may be nil) and returns
// the client end, not yet authenticated.
func startHost(t *testing.T, upstream *url.URL, tweak func(*HostConfig)) *testClient {
	t.Helper()
	return startHostCtx(t, t.Context(), upstream, tweak)
}

func startHostCtx(t *testing.T, ctx context.Context, upstream *url.URL, tweak func(*HostConfig)) *testClient {
	t.Helper()
	hostKey, clientKey := mustKey(t), mustKey(t)
	if upstream == nil {
		upstream = &url.URL{Scheme: "http", Host: "127.0.0.1:1"}
	}
	cfg := HostConfig{
		Identity:  hostKey,
		Upstream:  upstream,
		Authorize: func(k identity.PublicKey) bool { return k == clientKey.Public() },
		Binding:   func() ([32]byte, error) { return testSecret, nil },
	}
	if tweak != nil {
		tweak(&cfg)
	}
	hostEnd, clientEnd := net.Pipe()
	clientEnd.SetDeadline(time.Now().Add(30 * time.Second))
	c := &testClient{t: t, conn: clientEnd, r: NewReader(clientEnd), w: NewWriter(clientEnd),
		host: hostKey.Public(), key: clientKey, served: make(chan error, 1)}
	go func() { c.served <- Serve(ctx, hostEnd, cfg) }()
	t.Cleanup(func() {
		clientEnd.Close()
		select {
		case <-c.served:
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after the client closed")
		}
	})
	return c
}

func startUpstream(t *testing.T, h http.HandlerFunc) *url.URL {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func (c *testClient) readFrame() Frame {
	c.t.Helper()
	f, err := c.r.ReadFrame(MaxPayloadLen)
	if err != nil {
		c.t.Fatalf("reading a frame: %v", err)
	}
	return f
}

func (c *testClient) send(f Frame) {
	c.t.Helper()
	if err := c.w.WriteFrame(f); err != nil {
		c.t.Fatalf("sending %s: %v", f.Type, err)
	}
}

func (c *testClient) nonce() [AuthNonceLen]byte {
	c.t.Helper()
	f := c.readFrame()
	if f.Type != TypeAuthNonce {
		c.t.Fatalf("first frame is %s, want AUTH_NONCE", f.Type)
	}
	n, err := ParseAuthNonce(f.Payload)
	if err != nil {
		c.t.Fatal(err)
	}
	return n
}

func signAuth(key *identity.PrivateKey, secret [32]byte, host identity.PublicKey, nonce [32]byte) Frame {
	ab := AuthBytesBound(secret, host, key.Public(), nonce)
	var sig [identity.SignatureSize]byte
	copy(sig[:], key.Sign(ab[:]))
	return AuthClientFrame(key.Public(), sig)
}

// auth runs the binding with the paired key and checks AUTH_HOST.
func (c *testClient) auth() {
	c.t.Helper()
	nonce := c.nonce()
	c.send(signAuth(c.key, testSecret, c.host, nonce))
	f := c.readFrame()
	if f.Type != TypeAuthHost {
		c.t.Fatalf("got %s, want AUTH_HOST", f.Type)
	}
	ab := AuthBytesBound(testSecret, c.host, c.key.Public(), nonce)
	if err := identity.VerifyStrict(c.host, ab[:], f.Payload); err != nil {
		c.t.Fatalf("AUTH_HOST: %v", err)
	}
}

// expectNothing asserts the host closes the channel without another byte.
func (c *testClient) expectNothing() {
	c.t.Helper()
	rest, err := io.ReadAll(c.conn)
	if len(rest) != 0 || err != nil {
		c.t.Fatalf("after AUTH_CLIENT the host sent %d bytes (%x), %v; want nothing", len(rest), rest[:min(len(rest), 32)], err)
	}
}

// expectError asserts an ERROR frame containing diag, then the close.
func (c *testClient) expectError(diag string) {
	c.t.Helper()
	f := c.readFrame()
	if f.Type != TypeError || !strings.Contains(string(f.Payload), diag) {
		c.t.Fatalf("got %s %q, want ERROR containing %q", f.Type, f.Payload, diag)
	}
	if _, err := c.r.Next(); err != io.EOF {
		c.t.Fatalf("after ERROR: %v, want the channel closed", err)
	}
}

func (c *testClient) result() error {
	select {
	case err := <-c.served:
		c.served <- err // for the cleanup
		return err
	case <-time.After(10 * time.Second):
		c.t.Fatal("Serve did not return")
		return nil
	}
}

// sendRequest writes a head, the body in chunks of chunk bytes, and END.
func (c *testClient) sendRequest(id uint32, method, target string, h Header, body []byte, chunk int) {
	c.t.Helper()
	p, err := AppendRequestHead(nil, RequestHead{Method: method, Target: target, Header: h})
	if err != nil {
		c.t.Fatal(err)
	}
	c.send(Frame{Type: TypeRequestHead, RequestID: id, Payload: p})
	for len(body) > 0 {
		n := min(chunk, len(body))
		c.send(Frame{Type: TypeRequestBody, RequestID: id, Payload: body[:n]})
		body = body[n:]
	}
	c.send(Frame{Type: TypeRequestEnd, RequestID: id})
}

// response reads RESPONSE_HEAD, bodies and END for id, handing each body
// chunk to onBody if it is set and collecting it otherwise.
func (c *testClient) response(id uint32, onBody func([]byte)) (ResponseHead, []byte) {
	c.t.Helper()
	f := c.readFrame()
	if f.Type != TypeResponseHead || f.RequestID != id {
		c.t.Fatalf("got %s id %d (%q), want RESPONSE_HEAD id %d", f.Type, f.RequestID, f.Payload, id)
	}
	head, err := ParseResponseHead(f.Payload)
	if err != nil {
		c.t.Fatal(err)
	}
	var body []byte
	for {
		f := c.readFrame()
		switch {
		case f.RequestID != id:
			c.t.Fatalf("frame %s for id %d inside the response for id %d", f.Type, f.RequestID, id)
		case f.Type == TypeResponseEnd:
			return head, body
		case f.Type != TypeResponseBody:
			c.t.Fatalf("got %s inside a response", f.Type)
		case len(f.Payload) > BodyChunkLen:
			c.t.Fatalf("body frame of %d bytes exceeds BodyChunkLen", len(f.Payload))
		case onBody != nil:
			onBody(f.Payload)
		default:
			body = append(body, f.Payload...)
		}
	}
}

// get sends a bodyless GET and returns the response.
func (c *testClient) get(target string, h Header) (ResponseHead, []byte) {
	c.t.Helper()
	c.sendRequest(1, "GET", target, h, nil, 0)
	return c.response(1, nil)
}

// TestHostAuthRefused: whatever is wrong with AUTH_CLIENT, the host
// answers with nothing at all and closes the channel, so a client
// cannot tell an unpaired key from a bad signature.
func TestHostAuthRefused(t *testing.T) {
	stranger := mustKey(t)
	tests := []struct {
		name  string
		frame func(c *testClient, nonce [32]byte) Frame
	}{
		{"unpaired client, valid signature", func(c *testClient, n [32]byte) Frame {
			return signAuth(stranger, testSecret, c.host, n)
		}},
		{"paired key, signature by another key", func(c *testClient, n [32]byte) Frame {
			f := signAuth(stranger, testSecret, c.host, n)
			pk := c.key.Public()
			copy(f.Payload, pk[:])
			return f
		}},
		{"other channel binding", func(c *testClient, n [32]byte) Frame {
			return signAuth(c.key, [32]byte{1}, c.host, n)
		}},
		{"stale nonce", func(c *testClient, n [32]byte) Frame {
			n[0] ^= 1
			return signAuth(c.key, testSecret, c.host, n)
		}},
		{"other host key", func(c *testClient, n [32]byte) Frame {
			return signAuth(c.key, testSecret, stranger.Public(), n)
		}},
		{"signature bytes flipped", func(c *testClient, n [32]byte) Frame {
			f := signAuth(c.key, testSecret, c.host, n)
			f.Payload[AuthClientLen-1] ^= 0x40
			return f
		}},
		{"all-zero key and signature", func(c *testClient, n [32]byte) Frame {
			return Frame{Type: TypeAuthClient, Payload: make([]byte, AuthClientLen)}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := startHost(t, nil, nil)
			c.send(tt.frame(c, c.nonce()))
			c.expectNothing()
			if err := c.result(); !errors.Is(err, ErrAuthFailed) {
				t.Fatalf("Serve: %v, want ErrAuthFailed", err)
			}
		})
	}
}

func TestHostBindingProtocol(t *testing.T) {
	t.Run("frame before AUTH_CLIENT", func(t *testing.T) {
		c := startHost(t, nil, nil)
		c.nonce()
		c.send(Frame{Type: TypePing})
		c.expectError("expected AuthClient before any other frame (got 0xfe)")
		if err := c.result(); !errors.Is(err, ErrProtocol) {
			t.Fatalf("Serve: %v", err)
		}
	})
	t.Run("short AUTH_CLIENT", func(t *testing.T) {
		c := startHost(t, nil, nil)
		c.nonce()
		c.send(Frame{Type: TypeAuthClient, Payload: make([]byte, 95)})
		c.expectError("malformed frame")
	})
	t.Run("timeout", func(t *testing.T) {
		c := startHost(t, nil, func(cfg *HostConfig) { cfg.BindingTimeout = 50 * time.Millisecond })
		c.nonce()
		c.expectError("channel binding timeout")
		if err := c.result(); !errors.Is(err, ErrBindingTimeout) {
			t.Fatalf("Serve: %v", err)
		}
	})
	t.Run("binding then ping", func(t *testing.T) {
		c := startHost(t, nil, nil)
		c.auth()
		c.send(Frame{Type: TypePing})
		if f := c.readFrame(); f.Type != TypePong || f.RequestID != 0 {
			t.Fatalf("got %s id %d, want PONG id 0", f.Type, f.RequestID)
		}
		c.conn.Close()
		if err := c.result(); err != nil {
			t.Fatalf("Serve after a clean close: %v", err)
		}
	})
}

// TestHostViolations: each breach of the framing rules gets one ERROR
// frame, then the channel closes.
func TestHostViolations(t *testing.T) {
	head, _ := AppendRequestHead(nil, RequestHead{Method: "POST", Target: "/", Header: Header{{Name: "Host", Value: "x"}}})
	tests := []struct {
		name   string
		frames []Frame
		raw    []byte
		diag   string
	}{
		{name: "body before head", frames: []Frame{{Type: TypeRequestBody, RequestID: 1, Payload: []byte("x")}},
			diag: "REQUEST_BODY without an open REQUEST_HEAD"},
		{name: "end without head", frames: []Frame{{Type: TypeRequestEnd, RequestID: 1}},
			diag: "REQUEST_END without an open REQUEST_HEAD"},
		{name: "body after end", frames: []Frame{{Type: TypeRequestHead, RequestID: 1, Payload: head},
			{Type: TypeRequestEnd, RequestID: 1}, {Type: TypeRequestBody, RequestID: 1, Payload: []byte("x")}},
			diag: "REQUEST_BODY without an open REQUEST_HEAD"},
		{name: "head on a busy id", frames: []Frame{{Type: TypeRequestHead, RequestID: 4, Payload: head},
			{Type: TypeRequestHead, RequestID: 4, Payload: head}}, diag: "request id 4 is still in use"},
		{name: "response frame from client", frames: []Frame{{Type: TypeResponseEnd}}, diag: "unexpected frame type from client"},
		{name: "WS_UPGRADE", frames: []Frame{{Type: TypeWSUpgrade, Payload: []byte("x")}}, diag: "unexpected frame type from client"},
		{name: "WS_FRAME outside a tunnel", frames: []Frame{{Type: TypeWSFrame, Payload: []byte("x")}}, diag: "unexpected frame type from client"},
		{name: "AUTH_CLIENT again", frames: []Frame{{Type: TypeAuthClient, Payload: make([]byte, AuthClientLen)}},
			diag: "unexpected AUTH_CLIENT after authentication"},
		{name: "malformed head", frames: []Frame{{Type: TypeRequestHead, RequestID: 1, Payload: []byte("GET / HTTP/1.0\r\n\r\n")}},
			diag: "malformed request head"},
		{name: "body too large", frames: []Frame{{Type: TypeRequestHead, RequestID: 1, Payload: head},
			{Type: TypeRequestBody, RequestID: 1, Payload: make([]byte, 600)}}, diag: "request body too large"},
		{name: "reserved type code", raw: []byte{0x00, 0x77, 0, 0, 0, 0, 0, 0, 0, 0}, diag: "malformed frame"},
		{name: "oversized length", raw: []byte{0x00, 0x02, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff}, diag: "malformed frame"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := startUpstream(t, func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) })
			c := startHost(t, up, func(cfg *HostConfig) { cfg.MaxBody = 512 })
			c.auth()
			go func() {
				for _, f := range tt.frames {
					if c.w.WriteFrame(f) != nil {
						return
					}
				}
				c.conn.Write(tt.raw)
			}()
			for {
				// A response to an earlier, valid request may come first.
				f := c.readFrame()
				if f.Type == TypeResponseHead || f.Type == TypeResponseEnd {
					continue
				}
				if f.Type != TypeError || string(f.Payload) != tt.diag {
					t.Fatalf("got %s %q, want ERROR %q", f.Type, f.Payload, tt.diag)
				}
				break
			}
			if _, err := c.r.Next(); err != io.EOF {
				t.Fatalf("after ERROR: %v, want the channel closed", err)
			}
			if err := c.result(); !errors.Is(err, ErrProtocol) {
				t.Fatalf("Serve: %v, want ErrProtocol", err)
			}
		})
	}
}

// pattern is a deterministic body, different at every offset.
func pattern(n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{1})
	r.Read(b)
	return b
}

// TestHostStreamsResponse: an 8 MiB response arrives intact while the
// upstream may run at most 2 MiB ahead of what the client has read, so
// a host holding the body whole would stall the test.
func TestHostStreamsResponse(t *testing.T) {
	const size, piece, ahead = 8 << 20, 256 << 10, 2 << 20
	body := pattern(size)
	var received atomic.Int64
	up := startUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(size))
		for off := 0; off < size; off += piece {
			deadline := time.Now().Add(10 * time.Second)
			for int64(off)-received.Load() > ahead {
				if time.Now().After(deadline) {
					t.Errorf("client stuck at %d bytes while the upstream has written %d", received.Load(), off)
					return
				}
				time.Sleep(time.Millisecond)
			}
			w.Write(body[off : off+piece])
			w.(http.Flusher).Flush()
		}
	})
	c := startHost(t, up, nil)
	c.auth()
	c.sendRequest(1, "GET", "/big", nil, nil, 0)
	h := sha256.New()
	head, _ := c.response(1, func(p []byte) {
		h.Write(p)
		received.Add(int64(len(p)))
	})
	if head.StatusCode != 200 || head.Header.Get("Content-Length") != fmt.Sprint(size) {
		t.Fatalf("head %+v", head)
	}
	if got, want := h.Sum(nil), sha256.Sum256(body); received.Load() != size || !bytes.Equal(got, want[:]) {
		t.Fatalf("received %d bytes with SHA-256 %x, want %d bytes %x", received.Load(), got, size, want)
	}
}

// TestHostStreamsRequestBody: the upstream reads the first chunk of a
// POST body before the client has sent the rest, so the host cannot be
// holding the body until REQUEST_END.
func TestHostStreamsRequestBody(t *testing.T) {
	const size, first = 3<<20 + 17, 1000
	body := pattern(size)
	for _, withLength := range []bool{false, true} {
		t.Run(fmt.Sprintf("content-length=%v", withLength), func(t *testing.T) {
			gotFirst := make(chan struct{})
			up := startUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				buf := make([]byte, first)
				if _, err := io.ReadFull(r.Body, buf); err != nil {
					t.Error(err)
					return
				}
				close(gotFirst)
				h := sha256.New()
				h.Write(buf)
				n, _ := io.Copy(h, r.Body)
				fmt.Fprintf(w, "%s %d %d %v", hex.EncodeToString(h.Sum(nil)), n+first, r.ContentLength, r.TransferEncoding)
			})
			c := startHost(t, up, nil)
			c.auth()
			var h Header
			if withLength {
				h = Header{{Name: "Content-Length", Value: fmt.Sprint(size)}}
			}
			p, _ := AppendRequestHead(nil, RequestHead{Method: "POST", Target: "/upload", Header: h})
			c.send(Frame{Type: TypeRequestHead, RequestID: 3, Payload: p})
			c.send(Frame{Type: TypeRequestBody, RequestID: 3, Payload: body[:first]})
			select {
			case <-gotFirst:
			case <-time.After(10 * time.Second):
				t.Fatal("upstream did not see the first chunk before the body ended")
			}
			bw := c.w.RequestBody(3)
			go func() {
				bw.Write(body[first:])
				bw.Close()
			}()
			_, resp := c.response(3, nil)
			sum := sha256.Sum256(body)
			want := fmt.Sprintf("%x %d -1 [chunked]", sum, size)
			if withLength {
				want = fmt.Sprintf("%x %d %d []", sum, size, size)
			}
			if string(resp) != want {
				t.Fatalf("upstream saw %q, want %q", resp, want)
			}
		})
	}
}

func TestHostRange(t *testing.T) {
	content := pattern(1 << 20)
	up := startUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "blob.bin", time.Unix(1700000000, 0), bytes.NewReader(content))
	})
	c := startHost(t, up, nil)
	c.auth()
	tests := []struct {
		rng       string
		from, to  int // inclusive
		wantRange string
	}{
		{"bytes=100-199", 100, 199, "bytes 100-199/1048576"},
		{"bytes=1000000-", 1000000, 1<<20 - 1, "bytes 1000000-1048575/1048576"},
		{"bytes=-10", 1<<20 - 10, 1<<20 - 1, "bytes 1048566-1048575/1048576"},
	}
	for _, tt := range tests {
		t.Run(tt.rng, func(t *testing.T) {
			c.t = t
			head, body := c.get("/blob.bin", Header{{Name: "Range", Value: tt.rng}})
			if head.StatusCode != http.StatusPartialContent || head.Header.Get("Content-Range") != tt.wantRange {
				t.Fatalf("head %+v", head)
			}
			if !bytes.Equal(body, content[tt.from:tt.to+1]) {
				t.Fatalf("got %d bytes, not content[%d:%d]", len(body), tt.from, tt.to+1)
			}
		})
	}
}

func TestHostChunkedResponse(t *testing.T) {
	up := startUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		for _, s := range []string{"first ", "second ", strings.Repeat("third", 30000)} {
			io.WriteString(w, s)
			w.(http.Flusher).Flush()
		}
	})
	c := startHost(t, up, nil)
	c.auth()
	head, body := c.get("/", nil)
	if head.StatusCode != 200 || head.Header.Get("Content-Length") != "" || head.Header.Get("Transfer-Encoding") != "" {
		t.Fatalf("head %+v: want 200 without Content-Length or Transfer-Encoding", head)
	}
	if want := "first second " + strings.Repeat("third", 30000); string(body) != want {
		t.Fatalf("body of %d bytes, want %d", len(body), len(want))
	}
}

// TestHostHeaderRules: spec 01 section 4.1 both ways.
func TestHostHeaderRules(t *testing.T) {
	var upHost string
	up := startUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		seen := r.Header.Clone()
		seen.Set("X-Seen-Host", r.Host)
		seen.Set("X-Seen-Length", fmt.Sprint(r.ContentLength))
		w.Header().Set("Connection", "X-Resp-Private")
		w.Header().Set("X-Resp-Private", "secret")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("Proxy-Authenticate", "Basic")
		w.Header().Set("X-Resp-Kept", "yes")
		json.NewEncoder(w).Encode(seen)
	})
	upHost = up.Host
	c := startHost(t, up, nil)
	c.auth()
	head, body := c.get("/echo?q=1", Header{
		{Name: "Host", Value: "evil.example"},
		{Name: "Connection", Value: "keep-alive, X-Private"},
		{Name: "X-Private", Value: "hop"},
		{Name: "Keep-Alive", Value: "timeout=5"},
		{Name: "Proxy-Authorization", Value: "Basic eA=="},
		{Name: "Proxy-Connection", Value: "keep-alive"},
		{Name: "TE", Value: "trailers"},
		{Name: "Trailer", Value: "X-T"},
		{Name: "Upgrade", Value: "h2c"},
		{Name: "X-Forwarded-For", Value: "10.0.0.1"},
		{Name: "X-Forwarded-Host", Value: "evil.example"},
		{Name: "X-Forwarded-Proto", Value: "https"},
		{Name: "Forwarded", Value: "for=10.0.0.1"},
		{Name: "X-Real-IP", Value: "10.0.0.1"},
		{Name: "X-Kept", Value: "1"},
		{Name: "Accept", Value: "text/plain"},
	})
	var seen http.Header
	if err := json.Unmarshal(body, &seen); err != nil {
		t.Fatalf("%v in %q", err, body)
	}
	for _, name := range []string{"Connection", "X-Private", "Keep-Alive", "Proxy-Authorization", "Proxy-Connection",
		"Te", "Trailer", "Upgrade", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "Forwarded", "X-Real-Ip",
		"Transfer-Encoding", "User-Agent", "Accept-Encoding"} {
		if v, ok := seen[name]; ok {
			t.Errorf("upstream received %s: %q", name, v)
		}
	}
	if seen.Get("X-Kept") != "1" || seen.Get("Accept") != "text/plain" {
		t.Errorf("end-to-end fields lost: %v", seen)
	}
	if seen.Get("X-Seen-Host") != upHost || seen.Get("X-Seen-Length") != "0" {
		t.Errorf("upstream saw Host %q and length %s, want %q and 0", seen.Get("X-Seen-Host"), seen.Get("X-Seen-Length"), upHost)
	}
	for _, name := range []string{"Connection", "X-Resp-Private", "Keep-Alive", "Proxy-Authenticate"} {
		if v := head.Header.Get(name); v != "" {
			t.Errorf("client received %s: %q", name, v)
		}
	}
	if head.Header.Get("X-Resp-Kept") != "yes" {
		t.Errorf("response head lost X-Resp-Kept: %v", head.Header)
	}
}

// TestHostUpstreamDown: IMPLEMENTATION-NOTES section 1's exact 502 and
// RESPONSE_END, and the channel stays open.
func TestHostUpstreamDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := startHost(t, &url.URL{Scheme: "http", Host: addr}, nil)
	c.auth()
	c.sendRequest(9, "POST", "/", nil, []byte("hello"), 2)
	f := c.readFrame()
	if f.Type != TypeResponseHead || string(f.Payload) != "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n" {
		t.Fatalf("got %s %q", f.Type, f.Payload)
	}
	if f := c.readFrame(); f.Type != TypeResponseEnd || f.RequestID != 9 {
		t.Fatalf("got %s id %d, want RESPONSE_END id 9", f.Type, f.RequestID)
	}
	c.send(Frame{Type: TypePing})
	if f := c.readFrame(); f.Type != TypePong {
		t.Fatalf("after the 502: %s, want PONG", f.Type)
	}
}

// TestHostWebSocketRefused: with no tunnel, an upgrade is a 502 (spec
// 01 section 4.2) and never reaches the upstream.
func TestHostWebSocketRefused(t *testing.T) {
	var hits atomic.Int32
	up := startUpstream(t, func(w http.ResponseWriter, r *http.Request) { hits.Add(1) })
	c := startHost(t, up, nil)
	c.auth()
	head, _ := c.get("/ws", Header{{Name: "Connection", Value: "Upgrade"}, {Name: "Upgrade", Value: "websocket"},
		{Name: "Sec-WebSocket-Key", Value: "dGhlIHNhbXBsZSBub25jZQ=="}, {Name: "Sec-WebSocket-Version", Value: "13"}})
	if head.StatusCode != http.StatusBadGateway || hits.Load() != 0 {
		t.Fatalf("status %d, upstream hit %d times", head.StatusCode, hits.Load())
	}
}

// TestHostConcurrentRequests: request ids multiplex; a slow response
// does not hold up a later one, and each is answered with its own id.
func TestHostConcurrentRequests(t *testing.T) {
	release := make(chan struct{})
	up := startUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		io.WriteString(w, r.URL.Path)
	})
	c := startHost(t, up, nil)
	c.auth()
	c.sendRequest(1, "GET", "/slow", nil, nil, 0)
	c.sendRequest(2, "GET", "/fast", nil, nil, 0)
	if _, body := c.response(2, nil); string(body) != "/fast" {
		t.Fatalf("id 2 body %q", body)
	}
	close(release)
	if _, body := c.response(1, nil); string(body) != "/slow" {
		t.Fatalf("id 1 body %q", body)
	}
	// An id is free again once its RESPONSE_END has arrived.
	if _, body := c.get("/again", nil); string(body) != "/again" {
		t.Fatalf("reused id 1: body %q", body)
	}
}

// TestHostCancel: ending the context mid-body ends the session and
// aborts the upstream request, whose body then fails.
func TestHostCancel(t *testing.T) {
	upstreamDone := make(chan error, 1)
	up := startUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		_, err := io.Copy(io.Discard, r.Body)
		upstreamDone <- err
	})
	ctx, cancel := context.WithCancel(t.Context())
	c := startHostCtx(t, ctx, up, nil)
	c.auth()
	p, _ := AppendRequestHead(nil, RequestHead{Method: "PUT", Target: "/stuck"})
	c.send(Frame{Type: TypeRequestHead, RequestID: 1, Payload: p})
	go func() {
		bw := c.w.RequestBody(1)
		for i := 0; i < 200; i++ { // 12 MiB, more than the sockets hold
			if _, err := bw.Write(make([]byte, BodyChunkLen)); err != nil {
				return
			}
		}
	}()
	time.Sleep(100 * time.Millisecond)
	cancel()
	if err := c.result(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Serve: %v, want context.Canceled", err)
	}
	select {
	case err := <-upstreamDone:
		if err == nil {
			t.Fatal("the upstream read a complete body from a cancelled request")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream request was not cancelled")
	}
}

// TestHostUpstreamTruncated: once the head is out, an upstream failure
// can only be reported as ERROR, and the channel goes down.
func TestHostUpstreamTruncated(t *testing.T) {
	up := startUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100000")
		io.WriteString(w, "partial")
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	})
	c := startHost(t, up, nil)
	c.auth()
	c.sendRequest(5, "GET", "/", nil, nil, 0)
	if f := c.readFrame(); f.Type != TypeResponseHead {
		t.Fatalf("got %s, want RESPONSE_HEAD", f.Type)
	}
	for {
		f := c.readFrame()
		if f.Type == TypeResponseBody {
			continue
		}
		if f.Type != TypeError || string(f.Payload) != "upstream response truncated" {
			t.Fatalf("got %s %q, want ERROR", f.Type, f.Payload)
		}
		break
	}
	if _, err := c.r.Next(); err != io.EOF {
		t.Fatalf("after ERROR: %v", err)
	}
	if err := c.result(); !errors.Is(err, ErrUpstreamTruncated) {
		t.Fatalf("Serve: %v", err)
	}
}

// TestHostTargets: whatever the request target names, the request goes
// to the upstream's host; targets that are not paths are refused.
func TestHostTargets(t *testing.T) {
	up := startUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.RequestURI+" "+r.Host)
	})
	c := startHost(t, up, nil)
	c.auth()
	tests := []struct {
		target string
		status int
		seen   string // RequestURI the upstream saw
	}{
		{"/a/b?c=d", 200, "/a/b?c=d"},
		{"/%2F..%2Fetc", 200, "/%2F..%2Fetc"},
		{"http://evil.example/x?y=1", 200, "/x?y=1"},
		{"//evil.example/x", 200, "//evil.example/x"},
		{"*", 400, ""},
		{"evil.example:80", 400, ""},
		{"ftp://evil.example/x", 400, ""},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			c.t = t
			head, body := c.get(tt.target, nil)
			if head.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", head.StatusCode, tt.status)
			}
			if tt.status == 200 && string(body) != tt.seen+" "+up.Host {
				t.Fatalf("upstream saw %q, want %q", body, tt.seen+" "+up.Host)
			}
		})
	}
}
