package client

import (
	"bytes"
	"io"
	"testing"
)

// FuzzReadEvents: whatever a node (or anything pretending to be one)
// streams, the parser neither panics nor invents data: every message
// body is made of bytes that followed "data:" in the stream.
func FuzzReadEvents(f *testing.F) {
	f.Add([]byte("retry: 3000\n: room x\n\nid: 1\ndata: a\ndata: b\n\n"))
	f.Add([]byte("data:no space\n\n\n\ndata\n\n"))
	f.Add([]byte("id: only id\n\n"))
	f.Fuzz(func(t *testing.T, stream []byte) {
		ch := make(chan Message, 1024)
		s := &Subscription{C: ch, body: io.NopCloser(bytes.NewReader(stream))}
		done := make(chan struct{})
		go func() { s.read(ch); close(done) }()
		var total int
		for m := range ch {
			total += len(m.Body)
			for _, line := range bytes.Split(m.Body, []byte{'\n'}) {
				if len(line) > 0 && !bytes.Contains(stream, line) {
					t.Fatalf("message line %q is not in the stream", line)
				}
			}
		}
		<-done
		if total > len(stream) {
			t.Fatalf("%d bytes of messages from a %d-byte stream", total, len(stream))
		}
		if s.Err() == nil {
			t.Fatal("a finished stream has no error")
		}
	})
}
