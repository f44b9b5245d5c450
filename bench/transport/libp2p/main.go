// Command libp2p measures go-libp2p's QUIC and WebRTC-direct transports
// the way ../main.go measures keyhole's KPS: bulk throughput of one
// stream in one direction on loopback, each transfer on a fresh
// connection, repeated.
//
// It is a module of its own because go-libp2p pins its own quic-go and
// pion versions, which must not enter keyhole's module graph. ../main.go
// runs it with `go run .` in this directory right after its own cases and
// reads the LIBP2PRESULT lines it prints; it can also be run alone:
//
//	cd bench/transport/libp2p && go run .
//
// The listening host serves QUIC and WebRTC-direct on one UDP port, as a
// kps listener does (go-libp2p then feeds WebRTC its non-QUIC packets
// through quic-go's Transport, the same arrangement kps uses). The
// resource manager is disabled so that only the transports are measured.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	webrtc "github.com/libp2p/go-libp2p/p2p/transport/webrtc"
	ma "github.com/multiformats/go-multiaddr"
)

const benchProtocol = "/keyhole-bench/bulk/1"

type result struct {
	Key       string    `json:"key"`
	Transport string    `json:"transport"`
	Impl      string    `json:"impl"`
	Bytes     int64     `json:"bytes"`
	MBps      []float64 `json:"mbps"`
	Version   string    `json:"version"`
}

func main() {
	quicMiB := flag.Int("quic-mib", 256, "MiB per bulk transfer over QUIC")
	rtcMiB := flag.Int("webrtc-mib", 64, "MiB per bulk transfer over WebRTC-direct")
	repeats := flag.Int("repeats", 3, "transfers per transport")
	writeKiB := flag.Int("write-kib", 64, "size of each Write, KiB")
	timeout := flag.Duration("timeout", 3*time.Minute, "bound on the whole run")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	version := libp2pVersion()
	for _, c := range []struct {
		key, transport, proto string
		mib                   int
	}{
		{"libp2p-quic", "QUIC", "quic-v1", *quicMiB},
		{"libp2p-webrtc", "WebRTC", "webrtc-direct", *rtcMiB},
	} {
		r := result{Key: c.key, Transport: c.transport, Impl: "go-libp2p " + version, Bytes: int64(c.mib) << 20, Version: version}
		for i := 0; i < *repeats; i++ {
			tctx, tcancel := context.WithTimeout(ctx, 2*time.Minute)
			d, err := bulk(tctx, c.proto, r.Bytes, *writeKiB<<10)
			tcancel()
			if err != nil {
				fmt.Fprintf(os.Stderr, "libp2p bench: %s: %v\n", c.key, err)
				os.Exit(1)
			}
			r.MBps = append(r.MBps, float64(r.Bytes)/d.Seconds()/1e6)
		}
		b, _ := json.Marshal(r)
		fmt.Println("LIBP2PRESULT " + string(b))
	}
}

func libp2pVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/libp2p/go-libp2p" {
				return d.Version
			}
		}
	}
	return "(unknown version)"
}

// freeUDPPort picks a port for the listener's shared QUIC and WebRTC
// socket (both listen addresses must name the same port to share it).
func freeUDPPort() (int, error) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port, nil
}

func newHost(listen ...string) (host.Host, error) {
	opts := []libp2p.Option{
		libp2p.NoTransports,
		libp2p.Transport(quic.NewTransport),
		libp2p.Transport(webrtc.New),
		libp2p.ResourceManager(&network.NullResourceManager{}),
		libp2p.DisableRelay(),
		libp2p.DisableMetrics(),
	}
	if len(listen) == 0 {
		opts = append(opts, libp2p.NoListenAddrs)
	} else {
		opts = append(opts, libp2p.ListenAddrStrings(listen...))
	}
	return libp2p.New(opts...)
}

type recv struct {
	got int64
	at  time.Time
	err error
}

// bulk moves n bytes over one stream on a fresh connection using the
// transport whose multiaddr ends in proto, and returns the time from
// opening the stream to the receiver reading EOF.
func bulk(ctx context.Context, proto string, n int64, chunk int) (time.Duration, error) {
	port, err := freeUDPPort()
	if err != nil {
		return 0, err
	}
	server, err := newHost(
		fmt.Sprintf("/ip4/127.0.0.1/udp/%d/quic-v1", port),
		fmt.Sprintf("/ip4/127.0.0.1/udp/%d/webrtc-direct", port),
	)
	if err != nil {
		return 0, err
	}
	defer server.Close()
	done := make(chan recv, 1)
	server.SetStreamHandler(benchProtocol, func(s network.Stream) {
		defer s.Close()
		got, err := drain(s)
		done <- recv{got, time.Now(), err}
	})
	var target ma.Multiaddr
	for _, a := range server.Addrs() {
		if strings.HasSuffix(strings.Split(a.String(), "/certhash")[0], "/"+proto) {
			target = a
		}
	}
	if target == nil {
		return 0, fmt.Errorf("the listener has no %s address (has %v)", proto, server.Addrs())
	}
	client, err := newHost()
	if err != nil {
		return 0, err
	}
	defer client.Close()
	if err := client.Connect(ctx, peer.AddrInfo{ID: server.ID(), Addrs: []ma.Multiaddr{target}}); err != nil {
		return 0, fmt.Errorf("connect %s: %w", target, err)
	}
	start := time.Now()
	s, err := client.NewStream(ctx, server.ID(), benchProtocol)
	if err != nil {
		return 0, err
	}
	context.AfterFunc(ctx, func() { s.Reset() })
	buf := make([]byte, chunk)
	for left := n; left > 0; {
		p := buf
		if int64(len(p)) > left {
			p = p[:left]
		}
		m, err := s.Write(p)
		left -= int64(m)
		if err != nil {
			return 0, err
		}
	}
	if err := s.CloseWrite(); err != nil {
		return 0, err
	}
	select {
	case r := <-done:
		if r.err != nil {
			return 0, r.err
		}
		if r.got != n {
			return 0, fmt.Errorf("received %d bytes of %d", r.got, n)
		}
		return r.at.Sub(start), nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func drain(r io.Reader) (int64, error) {
	buf := make([]byte, 64<<10)
	var total int64
	for {
		n, err := r.Read(buf)
		total += int64(n)
		if errors.Is(err, io.EOF) {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}
