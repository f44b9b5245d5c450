package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/spf13/cobra"

	"github.com/keyhole-p2p/keyhole/board"
	"github.com/keyhole-p2p/keyhole/board/client"
	"github.com/keyhole-p2p/keyhole/identity"
	"github.com/keyhole-p2p/keyhole/stunturn"
)

func newBoardCmd(e *env, g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "board",
		Short: "Blind rendezvous board (ORP): serve one, or meet a device through one",
		Long: "A board lets two devices that know only each other's keys set up a direct\n" +
			"WebRTC connection. It relays their signaling sealed, so it cannot read it.",
	}
	cmd.AddCommand(newBoardServeCmd(e), newBoardWaitCmd(e, g), newBoardConnectCmd(e, g))
	return cmd
}

func newBoardServeCmd(e *env) *cobra.Command {
	var addr, publicURL, logLevel string
	var peers []string
	var stun bool
	var powBits int
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run a board: WebSocket and status page on TCP, STUN on the same UDP port",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := newLogger(e.stderr, logLevel)
			if err != nil {
				return err
			}
			if powBits < 0 || powBits > 32 {
				return usagef("--pow-bits %d: use 0 (off) to 32", powBits)
			}
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("board: %w", err)
			}
			port := ln.Addr().(*net.TCPAddr).Port
			if publicURL == "" {
				publicURL = defaultBoardURL(ln.Addr().(*net.TCPAddr))
			}
			opts := board.Options{PublicURL: publicURL, Peers: peers, Logger: logger, Pusher: &board.HTTPPusher{}}
			if powBits > 0 {
				opts.Admission = board.HashcashAdmission{Bits: powBits}
			}
			stunNote := "no STUN"
			if stun {
				host, _, _ := net.SplitHostPort(ln.Addr().String())
				st, err := stunturn.Listen(net.JoinHostPort(host, strconv.Itoa(port)), stunturn.Options{Logger: logger})
				if err != nil {
					ln.Close()
					return fmt.Errorf("%w (or run with --stun=false)", err)
				}
				defer st.Close()
				opts.STUNPort = port
				stunNote = fmt.Sprintf("STUN on udp %d", port)
			}
			b, err := board.New(opts)
			if err != nil {
				ln.Close()
				return err
			}
			defer b.Close()
			srv := &http.Server{Handler: b, ReadHeaderTimeout: 10 * time.Second}
			go func() {
				<-cmd.Context().Done()
				b.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				srv.Shutdown(ctx)
			}()
			fmt.Fprintf(e.stdout, "%s\n", publicURL)
			fmt.Fprintf(e.stderr, "board serving on %s (%s); status at http://%s/status\n", ln.Addr(), stunNote, ln.Addr())
			logger.Info("board started", "neighbours", len(peers), "pow_bits", powBits)
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&addr, "addr", ":8443", "TCP address for WebSocket and status; STUN uses the same UDP port")
	cmd.Flags().StringVar(&publicURL, "public-url", "", "this board's ws:// or wss:// URL as others reach it (default from --addr)")
	cmd.Flags().StringArrayVar(&peers, "peer", nil, "a neighbouring board's URL to propagate records to (repeatable)")
	cmd.Flags().BoolVar(&stun, "stun", true, "answer STUN on the same port number over UDP, so devices learn their public address")
	cmd.Flags().IntVar(&powBits, "pow-bits", 0, "proof of work demanded per record, in bits (0: none)")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	return cmd
}

// defaultBoardURL names a board by its listening address, using
// localhost for a wildcard bind.
func defaultBoardURL(a *net.TCPAddr) string {
	host := a.IP.String()
	if a.IP.IsUnspecified() {
		host = "localhost"
	}
	return "ws://" + net.JoinHostPort(host, strconv.Itoa(a.Port)) + "/"
}

// rendezvousFlags are the device-side options of wait and connect.
type rendezvousFlags struct {
	board     string
	relayOnly bool
	turn      []string
	turnUser  string
	turnPass  string
	ifaces    []string
	timeout   time.Duration
	pushToken string
	logLevel  string
}

func (f *rendezvousFlags) register(cmd *cobra.Command, timeout time.Duration, timeoutHelp string) {
	cmd.Flags().StringVar(&f.board, "board", "", "the board's URL (ws:// or wss://); required")
	cmd.Flags().BoolVar(&f.relayOnly, "relay-only", false, "offer only TURN relay candidates: the peer never learns this device's IP (needs --turn)")
	cmd.Flags().StringArrayVar(&f.turn, "turn", nil, "a TURN server, turn:host:port (repeatable)")
	cmd.Flags().StringVar(&f.turnUser, "turn-user", "", "TURN user name")
	cmd.Flags().StringVar(&f.turnPass, "turn-pass", "", "TURN password (or KEYHOLE_TURN_PASS)")
	cmd.Flags().StringArrayVar(&f.ifaces, "iface", nil, "gather candidates on these network interfaces only (repeatable; default all)")
	cmd.Flags().DurationVar(&f.timeout, "timeout", timeout, timeoutHelp)
	cmd.Flags().StringVar(&f.logLevel, "log-level", "warn", "log level: debug, info, warn, error")
}

func (f *rendezvousFlags) dial(ctx context.Context, e *env, key *identity.PrivateKey, authorize func(identity.PublicKey) error) (*client.Client, error) {
	if f.board == "" {
		return nil, usagef("--board is required: the URL of a board both devices use")
	}
	if f.relayOnly && len(f.turn) == 0 {
		return nil, usagef("--relay-only needs a TURN server (--turn turn:host:port)")
	}
	logger, err := newLogger(e.stderr, f.logLevel)
	if err != nil {
		return nil, err
	}
	pass := f.turnPass
	if pass == "" {
		pass = e.getenv("KEYHOLE_TURN_PASS")
	}
	opts := client.Options{Identity: key, RelayOnly: f.relayOnly, PushToken: f.pushToken, Logger: logger, Authorize: authorize}
	if len(f.turn) > 0 {
		opts.ICEServers = []webrtc.ICEServer{{URLs: f.turn, Username: f.turnUser, Credential: pass}}
	}
	if len(f.ifaces) > 0 {
		opts.WebRTC = onlyInterfaces(f.ifaces)
	}
	return client.Dial(ctx, f.board, opts)
}

// onlyInterfaces keeps WebRTC's candidates on the named interfaces
// (loopback included when "lo" is named).
func onlyInterfaces(names []string) func(*webrtc.SettingEngine) {
	ifaces := map[string]bool{}
	for _, n := range names {
		ifaces[n] = true
	}
	return func(se *webrtc.SettingEngine) {
		se.SetInterfaceFilter(func(name string) bool { return ifaces[name] })
		se.SetIncludeLoopbackCandidate(ifaces["lo"])
	}
}

func newBoardWaitCmd(e *env, g *globals) *cobra.Command {
	var f rendezvousFlags
	var allow []string
	var echo bool
	cmd := &cobra.Command{
		Use:   "wait",
		Short: "Wait on a board for a device to connect, then pipe stdin/stdout",
		Long: "Announces this device's presence on the board and prints its address (its\n" +
			"key) on the first line of stdout. When a device that knows the address\n" +
			"connects with 'keyhole board connect', the two set up a direct WebRTC data\n" +
			"channel and this command pipes stdin/stdout over it (or echoes, with --echo).",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			key, err := listenKey(e, g)
			if err != nil {
				return err
			}
			allowed := map[identity.PublicKey]bool{}
			for _, a := range allow {
				k, err := identity.ParseKey(a)
				if err != nil {
					return usagef("--allow %q: %v", a, err)
				}
				allowed[k] = true
			}
			ctx, cancel := context.WithCancel(cmd.Context())
			if f.timeout > 0 {
				ctx, cancel = context.WithTimeout(cmd.Context(), f.timeout)
			}
			defer cancel()
			var authorize func(identity.PublicKey) error
			if len(allowed) > 0 {
				authorize = func(k identity.PublicKey) error {
					if !allowed[k] {
						return errors.New("not on the --allow list")
					}
					return nil
				}
			}
			c, err := f.dial(ctx, e, key, authorize)
			if err != nil {
				return err
			}
			defer c.Close()
			fmt.Fprintln(e.stdout, key.Public())
			fmt.Fprintf(e.stderr, "waiting on %s; connect with: keyhole board connect --board %s %s\n", f.board, f.board, key.Public())
			for {
				s, err := c.Accept(ctx)
				if err != nil {
					if echo && cmd.Context().Err() != nil {
						return nil
					}
					return err
				}
				fmt.Fprintf(e.stderr, "connected to %s directly\n", s.Peer)
				if !echo {
					defer s.Close()
					return pipe(cmd.Context(), e, s, func() { s.Close() })
				}
				go func() {
					defer s.Close()
					s.Echo()
				}()
			}
		},
	}
	f.register(cmd, 0, "stop waiting after this long (0: wait until interrupted)")
	cmd.Flags().StringArrayVar(&allow, "allow", nil, "answer only this key (repeatable; default: anyone who knows the address)")
	cmd.Flags().BoolVar(&echo, "echo", false, "echo every connection back, until interrupted")
	cmd.Flags().StringVar(&f.pushToken, "push", "", "a push endpoint (https URL) the board may POST to, to wake this device")
	return cmd
}

func newBoardConnectCmd(e *env, g *globals) *cobra.Command {
	var f rendezvousFlags
	cmd := &cobra.Command{
		Use:   "connect ADDRESS",
		Short: "Connect to a device waiting on a board, and pipe stdin/stdout",
		Args:  exactArgs(1, "the waiting device's address (its key, as 'keyhole board wait' prints it)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			peer, err := identity.ParseKey(args[0])
			if err != nil {
				return usagef("%q is not a device address: %v", args[0], err)
			}
			key, err := listenKey(e, g)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
			defer cancel()
			c, err := f.dial(ctx, e, key, nil)
			if err != nil {
				return err
			}
			defer c.Close()
			start := time.Now()
			s, err := c.Connect(ctx, peer)
			if err != nil {
				return err
			}
			defer s.Close()
			fmt.Fprintf(e.stderr, "connected to %s directly in %s (this device: %s)\n", s.Peer, time.Since(start).Round(time.Millisecond), key.Public())
			return pipe(cmd.Context(), e, s, func() { s.Close() })
		},
	}
	f.register(cmd, 2*time.Minute, "give up connecting after this long")
	return cmd
}
