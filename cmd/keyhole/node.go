package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/keyhole-p2p/keyhole/board"
	"github.com/keyhole-p2p/keyhole/identity"
	"github.com/keyhole-p2p/keyhole/internal/atomicfile"
	"github.com/keyhole-p2p/keyhole/node"
	nodeclient "github.com/keyhole-p2p/keyhole/node/client"
	"github.com/keyhole-p2p/keyhole/pkarr/relay"
	"github.com/keyhole-p2p/keyhole/stunturn"
)

func newNodeCmd(e *env, g *globals) *cobra.Command {
	var nf netFlags
	var o nodeFlags
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Run a community node: signaling rooms, board, Pkarr relay, STUN/TURN",
		Long: "A community node helps others connect: rooms where browsers and devices\n" +
			"swap signaling, a blind rendezvous board, a Pkarr relay, and STUN/TURN.\n" +
			"Nodes find each other on the Mainline DHT; clients pay proof of work priced\n" +
			"by the node's load instead of holding accounts. The first line printed is\n" +
			"the node's URL. Settings can come from a JSON file (--config) whose keys\n" +
			"are the flag names; flags given on the command line win.",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyConfig(cmd.Flags(), o.config); err != nil {
				return err
			}
			return runNode(cmd.Context(), e, g, &nf, &o)
		},
	}
	nf.register(cmd.Flags(), false)
	o.register(cmd.Flags())
	cmd.AddCommand(newNodeListCmd(e, g))
	return cmd
}

// nodeFlags are keyhole node's settings (flags or --config keys).
type nodeFlags struct {
	config, addr, publicURL, turnAddr, relayIP, network, keyFile string
	peers                                                        []string
	announce, turnTTL                                            time.Duration
	powBase, powLoadBits, powSurcharge                           float64
	powMax, maxSubscribers, maxPeers                             int
	trustProxy, noBoard, noRelay                                 bool
}

func (o *nodeFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&o.config, "config", "", "JSON settings file; keys are these flags' names")
	fs.StringVar(&o.addr, "addr", ":8080", "TCP address of the HTTP API")
	fs.StringVar(&o.publicURL, "public-url", "", "the node's URL as others reach it (default http://<addr>)")
	fs.StringVar(&o.turnAddr, "turn-addr", ":3478", "UDP and TCP address of STUN/TURN ('off' for none)")
	fs.StringVar(&o.relayIP, "relay-ip", "", "IP that TURN relays open on and advertise (default the TURN address's)")
	fs.DurationVar(&o.turnTTL, "turn-ttl", time.Hour, "how long /token credentials last")
	fs.StringVar(&o.network, "network", "", "private mesh name: only nodes with the same name find each other")
	fs.StringArrayVar(&o.peers, "peer", nil, "another node's URL to join even if the DHT does not find it (repeatable)")
	fs.DurationVar(&o.announce, "announce-interval", 10*time.Minute, "how often to announce on the DHT and look for other nodes")
	fs.StringVar(&o.keyFile, "key-file", "", "the node's key (created if missing; default <home>/node.key)")
	fs.Float64Var(&o.powBase, "pow-base", 14, "proof-of-work bits asked of everyone when idle")
	fs.Float64Var(&o.powLoadBits, "pow-load-bits", 8, "extra bits at full load (CPU or memory)")
	fs.Float64Var(&o.powSurcharge, "pow-post-surcharge", 0.5, "work added per room post in the past minute, as a share of the base work")
	fs.IntVar(&o.powMax, "pow-max", 28, "most bits ever asked")
	fs.IntVar(&o.maxSubscribers, "max-subscribers", 10000, "open room streams at most")
	fs.IntVar(&o.maxPeers, "max-peers", 64, "other nodes kept in the mesh")
	fs.BoolVar(&o.trustProxy, "trust-proxy", false, "take client addresses from X-Forwarded-For (only behind your own reverse proxy)")
	fs.BoolVar(&o.noBoard, "no-board", false, "do not serve the rendezvous board at /board")
	fs.BoolVar(&o.noRelay, "no-relay", false, "do not serve the Pkarr relay at /pkarr")
}

// applyConfig sets every flag the file names that the command line did
// not: flags win over the file, the file over defaults.
func applyConfig(fs *pflag.FlagSet, path string) error {
	if path == "" {
		return nil
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return usagef("--config: %v", err)
	}
	var settings map[string]any
	if err := json.Unmarshal(raw, &settings); err != nil {
		return usagef("--config %s: not a JSON object of settings: %v", path, err)
	}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		f := fs.Lookup(k)
		if f == nil || k == "config" {
			return usagef("--config %s: unknown setting %q; the keys are the flag names of 'keyhole node --help'", path, k)
		}
		if f.Changed {
			continue
		}
		values := []any{settings[k]}
		if list, ok := settings[k].([]any); ok {
			values = list
		}
		for _, v := range values {
			s := fmt.Sprint(v)
			if f, ok := v.(float64); ok {
				s = strconv.FormatFloat(f, 'f', -1, 64)
			}
			if err := fs.Set(k, s); err != nil {
				return usagef("--config %s: %q: %v", path, k, err)
			}
		}
	}
	return nil
}

// nodeKey loads the node's key from path, creating it on first run.
func nodeKey(path string) (*identity.PrivateKey, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		k, err := identity.Generate()
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		if err := atomicfile.Create(path, []byte(hex.EncodeToString(k.Seed())+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("node key %s: %w", path, err)
		}
		return k, nil
	}
	if err != nil {
		return nil, fmt.Errorf("node key: %w", err)
	}
	seed, err := hex.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil || len(seed) != 32 {
		return nil, fmt.Errorf("node key %s is damaged (want 64 hex digits); move it away to make a new one", path)
	}
	return identity.NewPrivateKey(seed)
}

func runNode(ctx context.Context, e *env, g *globals, nf *netFlags, o *nodeFlags) error {
	logger, err := nf.logger(e.stderr)
	if err != nil {
		return err
	}
	if o.keyFile == "" {
		home, err := g.homeDir(e)
		if err != nil {
			return err
		}
		o.keyFile = filepath.Join(home, "node.key")
	}
	key, err := nodeKey(o.keyFile)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	defer ln.Close()
	tcp := ln.Addr().(*net.TCPAddr)
	if o.publicURL == "" {
		host := tcp.IP.String()
		if tcp.IP.IsUnspecified() {
			host = "localhost"
		}
		o.publicURL = "http://" + net.JoinHostPort(host, strconv.Itoa(tcp.Port))
	}
	d, err := nf.node(ctx, e, logger)
	if err != nil {
		return err
	}
	defer d.Close()

	opts := node.Options{
		Identity: key, PublicURL: o.publicURL, DHT: d, Network: o.network, AnnouncePort: tcp.Port,
		AnnounceInterval: o.announce, Peers: o.peers, MaxPeers: o.maxPeers, TURNTTL: o.turnTTL,
		Pricing:        &node.Pricing{Base: o.powBase, LoadBits: o.powLoadBits, PostSurcharge: o.powSurcharge, MaxBits: o.powMax},
		MaxSubscribers: o.maxSubscribers, TrustProxy: o.trustProxy, Version: version, Logger: logger,
	}
	turnNote := "no STUN/TURN"
	if o.turnAddr != "off" {
		secret := make([]byte, 32)
		rand.Read(secret)
		st, err := stunturn.Listen(o.turnAddr, stunturn.Options{Secret: secret, TCP: true, RelayIP: o.relayIP, Logger: logger})
		if err != nil {
			return fmt.Errorf("%w (or run with --turn-addr off)", err)
		}
		defer st.Close()
		opts.TURN = st
		turnNote = fmt.Sprintf("STUN/TURN on udp+tcp %d", st.Addr().Port)
	}
	if !o.noBoard {
		b, err := board.New(board.Options{PublicURL: "ws" + strings.TrimPrefix(o.publicURL, "http") + "/board", Logger: logger, Pusher: &board.HTTPPusher{}})
		if err != nil {
			return err
		}
		defer b.Close()
		opts.Board = b
	}
	if !o.noRelay {
		rs := relay.New(relay.Config{DHT: d, Logger: logger})
		defer rs.Close()
		opts.Relay = rs
	}
	srv, err := node.New(opts)
	if err != nil {
		return usageError{err}
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	bg := make(chan struct{})
	go func() { srv.Run(runCtx); close(bg) }()
	go func() {
		<-ctx.Done()
		// Graceful: end the room streams (clients reconnect elsewhere),
		// let requests in flight finish, then stop the background work.
		logger.Info("node shutting down")
		srv.Close()
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		hs.Shutdown(sctx)
	}()
	fmt.Fprintln(e.stdout, o.publicURL)
	fmt.Fprintf(e.stderr, "node %s serving on %s (%s; DHT node %s)\n", key.Public(), ln.Addr(), turnNote, d.Addr())
	if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	cancel()
	<-bg
	return nil
}

func newNodeListCmd(e *env, g *globals) *cobra.Command {
	var nf netFlags
	var network string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "list",
		Short: "Find community nodes on the DHT and show their current price",
		Long: "Searches the DHT for community nodes, adds them to the cache in the keyhole\n" +
			"home (nodes.json), and prints every known node that answers, cheapest first.",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := nf.logger(e.stderr)
			if err != nil {
				return err
			}
			home, err := g.homeDir(e)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			d, err := nf.node(ctx, e, logger)
			if err != nil {
				return err
			}
			defer d.Close()
			var c nodeclient.Client
			found, err := c.Discover(ctx, d, network)
			if err != nil {
				fmt.Fprintf(e.stderr, "keyhole: %v; showing cached nodes\n", err)
			}
			cache := nodeclient.Cache{Path: filepath.Join(home, "nodes.json")}
			all, err := cache.Merge(found)
			if err != nil {
				fmt.Fprintf(e.stderr, "keyhole: %v\n", err)
			}
			infos := c.Pick(ctx, nodeclient.URLs(all))
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "URL\tDIFFICULTY\tLOAD\tKEY")
			for _, in := range infos {
				fmt.Fprintf(tw, "%s\t%d\t%.2f\t%s\n", in.URL, in.Difficulty, in.Load, in.Node)
			}
			tw.Flush()
			fmt.Fprintf(e.stderr, "%d found on the DHT now, %d known, %d answering\n", len(found), len(all), len(infos))
			if len(infos) == 0 {
				return errors.New("no community node answered; run one with 'keyhole node' or pass --bootstrap")
			}
			return nil
		},
	}
	nf.register(cmd.Flags(), false)
	cmd.Flags().StringVar(&network, "network", "", "private mesh name")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "give up after this long")
	return cmd
}
