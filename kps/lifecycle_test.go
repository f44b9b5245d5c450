package kps

import (
	"context"
	"errors"
	"io"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/keyhole-p2p/keyhole/identity"
)

// serve runs handle for every accepted connection.
func serve(t testing.TB, opts Options, handle func(Conn)) *Listener {
	t.Helper()
	l, err := Listen(context.Background(), "127.0.0.1:0", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept(context.Background())
			if err != nil {
				return
			}
			go handle(c)
		}
	}()
	return l
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func wantStreamError(t *testing.T, err error, code ErrorCode, remote bool) {
	t.Helper()
	var se *StreamError
	if !errors.As(err, &se) {
		t.Fatalf("got %v (%T), want a StreamError with code %d", err, err, code)
	}
	if se.Code != code || se.Remote != remote {
		t.Fatalf("got code %d remote %v, want code %d remote %v", se.Code, se.Remote, code, remote)
	}
}

// TestStreamLifecycle checks SPEC section 9 on both transports: EOF after
// CloseWrite, an error with the code after Reset, failing writes with the
// code after the peer's CancelRead, and the listener opening streams too.
func TestStreamLifecycle(t *testing.T) {
	type step struct {
		name string
		// server acts on the accepted stream after reading "go".
		server func(s Stream)
		client func(t *testing.T, s Stream)
	}
	steps := []step{
		{"closewrite gives EOF after the data", func(s Stream) {
			s.Write([]byte("last words"))
			s.CloseWrite()
		}, func(t *testing.T, s Stream) {
			b, err := io.ReadAll(s)
			if err != nil || string(b) != "last words" {
				t.Fatalf("got %q, %v", b, err)
			}
		}},
		{"reset gives the code, not EOF", func(s Stream) {
			s.Write([]byte("partial"))
			s.Reset(CodeTimeout)
		}, func(t *testing.T, s Stream) {
			_, err := io.ReadAll(s)
			wantStreamError(t, err, CodeTimeout, true)
		}},
		{"cancelread fails the peer's writes with the code", func(s Stream) {
			s.CancelRead(CodePermissionDenied)
		}, func(t *testing.T, s Stream) {
			buf := make([]byte, 32<<10)
			deadline := time.Now().Add(10 * time.Second)
			for time.Now().Before(deadline) {
				if _, err := s.Write(buf); err != nil {
					wantStreamError(t, err, CodePermissionDenied, true)
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
			t.Fatal("writes kept succeeding after the peer cancelled reading")
		}},
		{"unknown codes arrive as internal-error", func(s Stream) {
			s.Reset(ErrorCode(4242))
		}, func(t *testing.T, s Stream) {
			_, err := io.ReadAll(s)
			wantStreamError(t, err, CodeInternalError, true)
		}},
		{"local reset fails later writes", func(s Stream) {}, func(t *testing.T, s Stream) {
			s.Reset(CodeCancelled)
			_, err := s.Write([]byte("x"))
			wantStreamError(t, err, CodeCancelled, false)
		}},
		{"local cancelread fails reads", func(s Stream) {}, func(t *testing.T, s Stream) {
			s.CancelRead(CodeCancelled)
			_, err := s.Read(make([]byte, 1))
			wantStreamError(t, err, CodeCancelled, false)
		}},
	}
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			var mu sync.Mutex
			actions := map[string]func(Stream){}
			for _, st := range steps {
				actions[st.name] = st.server
			}
			l := serve(t, Options{}, func(c Conn) {
				for {
					s, err := c.AcceptStream(context.Background())
					if err != nil {
						return
					}
					go func() {
						b := make([]byte, 64)
						n, err := s.Read(b)
						if err != nil {
							return
						}
						mu.Lock()
						f := actions[string(b[:n])]
						mu.Unlock()
						if f != nil {
							f(s)
						}
					}()
				}
			})
			c := dial(t, l, tr, DialOptions{})
			for _, st := range steps {
				t.Run(st.name, func(t *testing.T) {
					s, err := c.OpenStream(ctxT(t))
					if err != nil {
						t.Fatal(err)
					}
					if _, err := s.Write([]byte(st.name)); err != nil {
						t.Fatal(err)
					}
					time.Sleep(20 * time.Millisecond) // the name is read as one message
					st.client(t, s)
				})
			}
		})
	}
}

// TestListenerOpensStreams: stream open is symmetric.
func TestListenerOpensStreams(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			l := serve(t, Options{}, func(c Conn) {
				s, err := c.OpenStream(context.Background())
				if err != nil {
					return
				}
				s.Write([]byte("hello from the listener"))
				s.CloseWrite()
			})
			c := dial(t, l, tr, DialOptions{})
			s, err := c.AcceptStream(ctxT(t))
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(s)
			if err != nil || string(b) != "hello from the listener" {
				t.Fatalf("got %q, %v", b, err)
			}
		})
	}
}

// TestConnCloseCodes: the peer of CloseWithError sees the code and the
// reason, and every stream fails. On WebRTC, KPS has no connection close
// on the wire; keyhole peers (after the auth exchange) carry it on the
// control channel.
func TestConnCloseCodes(t *testing.T) {
	server, _ := identity.Generate()
	client, _ := identity.Generate()
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			l := serve(t, Options{Identity: server}, func(c Conn) {
				s, err := c.AcceptStream(context.Background())
				if err != nil {
					return
				}
				s.Read(make([]byte, 1))
				c.CloseWithError(CodeTimeout, "idle too long")
			})
			c := dial(t, l, tr, DialOptions{Identity: client})
			s, err := c.OpenStream(ctxT(t))
			if err != nil {
				t.Fatal(err)
			}
			s.Write([]byte("x"))
			_, err = io.ReadAll(s)
			var ce *ConnError
			if !errors.As(err, &ce) {
				t.Fatalf("stream read after the peer closed: %v (%T), want a ConnError", err, err)
			}
			if ce.Code != CodeTimeout || ce.Reason != "idle too long" || !ce.Remote {
				t.Fatalf("got %+v", ce)
			}
			select {
			case <-c.Context().Done():
			case <-time.After(5 * time.Second):
				t.Fatal("the connection's context stayed open")
			}
			if _, err := c.OpenStream(ctxT(t)); !errors.As(err, &ce) {
				t.Fatalf("OpenStream on a closed connection: %v", err)
			}
		})
	}
}

// TestThousandStreams opens 1000 streams on one connection, 100 at a
// time, each echoing its own payload.
func TestThousandStreams(t *testing.T) {
	l := echoServer(t, Options{})
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			c := dial(t, l, tr, DialOptions{})
			sem := make(chan struct{}, 100)
			var wg sync.WaitGroup
			for i := 0; i < 1000; i++ {
				wg.Add(1)
				sem <- struct{}{}
				go func() {
					defer wg.Done()
					defer func() { <-sem }()
					p := make([]byte, 1000+i)
					for j := range p {
						p[j] = byte(i + j)
					}
					roundTrip(t, c, p)
				}()
			}
			wg.Wait()
		})
	}
}

// TestManyConnections: independent connections from one process, each
// with its own streams and lifetime.
func TestManyConnections(t *testing.T) {
	l := echoServer(t, Options{})
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			conns := make([]Conn, 20)
			var wg sync.WaitGroup
			for i := range conns {
				wg.Add(1)
				go func() {
					defer wg.Done()
					conns[i] = dial(t, l, tr, DialOptions{})
				}()
			}
			wg.Wait()
			// Closing one leaves the others working.
			conns[0].Close()
			for _, c := range conns[1:] {
				wg.Add(1)
				go func() {
					defer wg.Done()
					roundTrip(t, c, []byte("still here"))
				}()
			}
			wg.Wait()
		})
	}
}

// TestBackpressure: a fast writer against a reader that does not read
// blocks instead of buffering without bound, and everything arrives once
// the reader catches up.
func TestBackpressure(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			release := make(chan struct{})
			got := make(chan int64, 1)
			l := serve(t, Options{}, func(c Conn) {
				s, err := c.AcceptStream(context.Background())
				if err != nil {
					return
				}
				<-release
				n, _ := io.Copy(io.Discard, s)
				got <- n
			})
			c := dial(t, l, tr, DialOptions{})
			s, err := c.OpenStream(ctxT(t))
			if err != nil {
				t.Fatal(err)
			}
			var written int64
			var mu sync.Mutex
			go func() {
				buf := make([]byte, 64<<10)
				for i := 0; i < 384; i++ { // at most 24 MiB
					n, err := s.Write(buf)
					mu.Lock()
					written += int64(n)
					mu.Unlock()
					if err != nil {
						return
					}
				}
				s.CloseWrite()
			}()
			time.Sleep(1500 * time.Millisecond)
			mu.Lock()
			stalled := written
			mu.Unlock()
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			// Windows and buffers on both sides add up to a few MiB; the
			// writer would be at 24 MiB without backpressure.
			if stalled > 8<<20 {
				t.Fatalf("the writer got %d bytes out to a reader that reads nothing", stalled)
			}
			if ms.HeapInuse > 256<<20 {
				t.Fatalf("heap grew to %d MiB", ms.HeapInuse>>20)
			}
			t.Logf("%s: writer stalled after %d KiB; heap in use %d MiB", tr, stalled>>10, ms.HeapInuse>>20)
			close(release)
			select {
			case n := <-got:
				if n != 24<<20 {
					t.Fatalf("reader got %d bytes, want %d", n, 24<<20)
				}
			case <-time.After(60 * time.Second):
				t.Fatal("the reader never caught up")
			}
		})
	}
}
