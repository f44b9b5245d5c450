package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyhole-p2p/keyhole/identity"
	"github.com/keyhole-p2p/keyhole/identity/keystore"
	"github.com/keyhole-p2p/keyhole/kps"
)

// listenKey is the identity a listener or dialer proves: the chosen one,
// or a fresh ephemeral key when there is none yet (said on stderr).
func listenKey(e *env, g *globals) (*identity.PrivateKey, error) {
	key, err := loadKey(e, g)
	if err == nil {
		return key, nil
	}
	if g.id == "" && errors.Is(err, keystore.ErrNotFound) {
		fmt.Fprintln(e.stderr, "note: no identity yet ('keyhole id new' makes one); using a throwaway key for this run")
		return identity.Generate()
	}
	return nil, err
}

func newListenCmd(e *env, g *globals) *cobra.Command {
	var addr, certPath string
	var echo, plain bool
	cmd := &cobra.Command{
		Use:   "listen",
		Short: "Accept KPS connections (QUIC and WebRTC on one UDP port)",
		Long: "Listens on one UDP port for QUIC and browser WebRTC connections pinned by\n" +
			"this device's certificate, and prints the address to dial on the first line\n" +
			"of stdout. Without --echo it pipes the first stream to stdin/stdout, like\n" +
			"netcat -l. Both sides prove their identity keys unless --plain.",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			s, err := g.store(e)
			if err != nil {
				return err
			}
			if certPath == "" {
				certPath = filepath.Join(s.Home(), "kps.pem")
			}
			if err := os.MkdirAll(filepath.Dir(certPath), 0o700); err != nil {
				return err
			}
			cert, err := kps.LoadOrCreateCertificate(certPath)
			if err != nil {
				return err
			}
			opts := kps.Options{Certificate: cert}
			if !plain {
				if opts.Identity, err = listenKey(e, g); err != nil {
					return err
				}
			}
			l, err := kps.Listen(ctx, addr, opts)
			if err != nil {
				return err
			}
			defer l.Close()
			fmt.Fprintln(e.stdout, l.Address())
			if opts.Identity != nil {
				fmt.Fprintf(e.stderr, "identity: %s\n", opts.Identity.Public())
			} else {
				fmt.Fprintln(e.stderr, "plain KPS: no identity exchange")
			}
			for _, a := range otherAddresses(l) {
				fmt.Fprintf(e.stderr, "also at:  %s\n", a)
			}
			fmt.Fprintf(e.stderr, "dial with: keyhole cat %s   (add --webrtc for WebRTC)\n", l.Address())
			if echo {
				return serveEcho(ctx, e, l)
			}
			c, err := l.Accept(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			describePeer(e, "accepted", c, 0)
			st, err := c.AcceptStream(ctx)
			if err != nil {
				return err
			}
			return pipe(ctx, e, st, kpsAbort(st))
		},
	}
	cmd.Flags().StringVar(&addr, "addr", ":4242", "UDP address to listen on (both transports)")
	cmd.Flags().BoolVar(&echo, "echo", false, "echo every stream and datagram back, for any number of connections")
	cmd.Flags().BoolVar(&plain, "plain", false, "plain KPS: no keyhole identity exchange (for KPS clients)")
	cmd.Flags().StringVar(&certPath, "cert", "", "certificate file, made on first use so the certhash stays stable (default <home>/kps.pem)")
	return cmd
}

// otherAddresses lists the address at each non-loopback interface IP when
// the listener is bound to a wildcard.
func otherAddresses(l *kps.Listener) []string {
	if !l.Address().AddrPort.Addr().IsLoopback() {
		return nil
	}
	ifaddrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []string
	for _, a := range ifaddrs {
		pfx, err := netip.ParsePrefix(a.String())
		if err != nil || pfx.Addr().IsLoopback() || pfx.Addr().IsLinkLocalUnicast() {
			continue
		}
		out = append(out, l.AddressAt(pfx.Addr()).String())
	}
	return out
}

func serveEcho(ctx context.Context, e *env, l *kps.Listener) error {
	for {
		c, err := l.Accept(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		describePeer(e, "accepted", c, 0)
		go kps.Echo(ctx, c)
	}
}

func describePeer(e *env, verb string, c kps.Conn, took time.Duration) {
	who := "a plain KPS peer"
	if k := kps.PeerKey(c); !k.IsZero() {
		who = k.String()
	}
	msg := fmt.Sprintf("%s %s over %s from %s", verb, who, c.Transport(), c.RemoteAddr())
	if took > 0 {
		msg += fmt.Sprintf(" in %s", took.Round(time.Millisecond))
	}
	fmt.Fprintln(e.stderr, msg)
}

// halfStream is a byte stream whose sending side can be finished on
// its own: a KPS stream, or a board session's data channel.
type halfStream interface {
	io.Reader
	io.Writer
	CloseWrite() error
}

// pipe copies stdin to the stream (then finishes it) and the stream to
// stdout, returning when the stream has been read to the end. abort
// tears the stream down when ctx ends or sending fails.
func pipe(ctx context.Context, e *env, st halfStream, abort func()) error {
	sent := make(chan error, 1)
	go func() {
		if _, err := io.Copy(st, e.stdin); err != nil {
			abort()
			sent <- err
			return
		}
		sent <- st.CloseWrite()
	}()
	stop := context.AfterFunc(ctx, abort)
	defer stop()
	if _, err := io.Copy(e.stdout, st); err != nil {
		return fmt.Errorf("receiving: %w", err)
	}
	// Standard input may never end (a terminal); the peer finished, so
	// this side is done, unless sending already failed.
	select {
	case err := <-sent:
		if err != nil {
			return fmt.Errorf("sending: %w", err)
		}
	default:
	}
	return nil
}

// kpsAbort resets both directions of a KPS stream.
func kpsAbort(st kps.Stream) func() {
	return func() { st.Reset(kps.CodeCancelled); st.CancelRead(kps.CodeCancelled) }
}

func newCatCmd(e *env, g *globals) *cobra.Command {
	var df dialFlags
	var webrtc, plain bool
	var peer string
	cmd := &cobra.Command{
		Use:   "cat KEY|ADDRESS",
		Short: "Pipe stdin/stdout over one stream to a device, by its key or a KPS address",
		Long: "Given a key, resolves the device's record and races the ways in (direct,\n" +
			"hole punch through a board, TURN relay); the first connection whose peer\n" +
			"proves the key wins. Given ip:port:certhash, dials it (QUIC unless --webrtc),\n" +
			"checks the certificate against the certhash, and proves identities (unless\n" +
			"--plain). Then sends stdin on one stream and prints what comes back.",
		Args: exactArgs(1, "a key (z-base-32 or keyhole:// URL) or a KPS address (ip:port:certhash)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if key, ok := dialTarget(args[0]); ok {
				if plain || webrtc || peer != "" {
					return usagef("--plain, --webrtc and --peer apply to KPS addresses; a key is dialed by the best path found")
				}
				_, st, done, err := df.stream(ctx, e, g, key)
				if err != nil {
					return err
				}
				defer done()
				return pipe(ctx, e, st, kpsAbort(st))
			}
			opts := kps.DialOptions{Timeout: df.timeout}
			if webrtc {
				opts.Transport = kps.TransportWebRTC
			}
			if peer != "" {
				if plain {
					return usagef("--peer needs the identity exchange; drop --plain")
				}
				k, err := identity.ParseKey(peer)
				if err != nil {
					return usagef("--peer: %v", err)
				}
				opts.PeerKey = k
			}
			if !plain {
				key, err := listenKey(e, g)
				if err != nil {
					return err
				}
				opts.Identity = key
			}
			start := time.Now()
			c, err := kps.Dial(ctx, args[0], opts)
			if err != nil {
				return err
			}
			defer c.Close()
			describePeer(e, "connected to", c, time.Since(start))
			st, err := c.OpenStream(ctx)
			if err != nil {
				return err
			}
			return pipe(ctx, e, st, kpsAbort(st))
		},
	}
	cmd.Flags().BoolVar(&webrtc, "webrtc", false, "use WebRTC instead of QUIC")
	cmd.Flags().BoolVar(&plain, "plain", false, "plain KPS: no keyhole identity exchange (for KPS listeners)")
	cmd.Flags().StringVar(&peer, "peer", "", "require the listener to prove this identity key")
	df.register(cmd.Flags())
	return cmd
}
