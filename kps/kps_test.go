package kps

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"sync"
	"testing"
	"time"
)

var transports = []string{TransportQUIC, TransportWebRTC}

// echoServer echoes every stream and datagram of every connection.
func echoServer(t testing.TB, opts Options) *Listener {
	t.Helper()
	return serve(t, opts, func(c Conn) { Echo(context.Background(), c) })
}

func dial(t testing.TB, l *Listener, tr string, opts DialOptions) Conn {
	t.Helper()
	opts.Transport = tr
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := DialAddr(ctx, l.Address(), opts)
	if err != nil {
		t.Fatalf("dial %s: %v", tr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func roundTrip(t testing.TB, c Conn, payload []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := c.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := s.Write(payload)
		if err == nil {
			err = s.CloseWrite()
		}
		errc <- err
	}()
	got, err := io.ReadAll(s)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("write: %v", err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("%s: echo returned %d bytes, want %d (equal prefix: %v)", c.Transport(), len(got), len(payload), bytes.HasPrefix(payload, got))
	}
}

func TestEcho(t *testing.T) {
	l := echoServer(t, Options{})
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			c := dial(t, l, tr, DialOptions{})
			if c.Transport() != tr {
				t.Fatalf("transport %s, want %s", c.Transport(), tr)
			}
			for _, n := range []int{1, 100, maxFramePayload, maxFramePayload + 1, 3 << 20} {
				p := make([]byte, n)
				rand.Read(p)
				roundTrip(t, c, p)
			}
		})
	}
}

func TestDatagrams(t *testing.T) {
	l := echoServer(t, Options{})
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			c := dial(t, l, tr, DialOptions{})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			p := make([]byte, 1100)
			rand.Read(p)
			// Unreliable: resend until one echo comes back.
			got := make(chan []byte, 1)
			go func() {
				b, err := c.ReceiveDatagram(ctx)
				if err == nil {
					got <- b
				}
			}()
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
		loop:
			for {
				if err := c.SendDatagram(p); err != nil {
					t.Fatal(err)
				}
				select {
				case b := <-got:
					if !bytes.Equal(b, p) {
						t.Fatal("datagram echo differs")
					}
					break loop
				case <-tick.C:
				case <-ctx.Done():
					t.Fatal("no datagram echo")
				}
			}
			var tl *DatagramTooLargeError
			err := c.SendDatagram(make([]byte, 64<<10))
			if !errors.As(err, &tl) || tl.MaxDatagramPayloadSize < 1100 || tl.MaxDatagramPayloadSize >= 64<<10 {
				t.Fatalf("oversize datagram: %v", err)
			}
		})
	}
}

func TestBothTransportsAtOnce(t *testing.T) {
	l := echoServer(t, Options{})
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		for _, tr := range transports {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := dial(t, l, tr, DialOptions{})
				p := make([]byte, 200<<10)
				rand.Read(p)
				roundTrip(t, c, p)
			}()
		}
	}
	wg.Wait()
}
