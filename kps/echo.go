package kps

import (
	"context"
	"io"
)

// Echo sends every stream and datagram of c back to the peer until c
// closes or ctx ends: the diagnostic service behind 'keyhole listen
// --echo', which the browser and CLI tests and the demo dial. Each stream
// is copied until EOF and then finished with CloseWrite.
func Echo(ctx context.Context, c Conn) {
	go func() {
		for {
			p, err := c.ReceiveDatagram(ctx)
			if err != nil {
				return
			}
			c.SendDatagram(p)
		}
	}()
	for {
		s, err := c.AcceptStream(ctx)
		if err != nil {
			return
		}
		go func() {
			io.Copy(s, s)
			s.CloseWrite()
		}()
	}
}
