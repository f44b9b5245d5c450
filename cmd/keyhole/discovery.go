package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyhole-p2p/keyhole/dht"
	"github.com/keyhole-p2p/keyhole/identity"
	"github.com/keyhole-p2p/keyhole/pkarr/relay"
	"github.com/keyhole-p2p/keyhole/record"
	"github.com/keyhole-p2p/keyhole/resolve"
)

// publisherFor prepares what publish and daemon share: it checks there
// is somewhere to publish, reads the content flags and the identity, and
// builds a publisher holding that content. The returned closer stops its
// DHT node.
func publisherFor(ctx context.Context, e *env, g *globals, nf *netFlags, cf *contentFlags) (*resolve.Publisher, *slog.Logger, func(), error) {
	c, err := cf.content()
	if err != nil {
		return nil, nil, nil, err
	}
	if err := checkPublishable(e, nf); err != nil {
		return nil, nil, nil, err
	}
	logger, err := nf.logger(e.stderr)
	if err != nil {
		return nil, nil, nil, err
	}
	key, err := loadKey(e, g)
	if err != nil {
		return nil, nil, nil, err
	}
	relays, err := nf.relayList(e)
	if err != nil {
		return nil, nil, nil, err
	}
	p := &resolve.Publisher{Key: key, Relays: relays, Now: e.now}
	closer := func() {}
	if !nf.noDHT {
		n, err := nf.node(ctx, e, logger)
		if err != nil {
			return nil, nil, nil, err
		}
		p.DHT, closer = n, func() { n.Close() }
	}
	p.SetContent(c)
	return p, logger, closer, nil
}

// checkPublishable refuses, before anything else happens, a configuration
// with nowhere to publish.
func checkPublishable(e *env, nf *netFlags) error {
	relays, err := nf.relayList(e)
	if err != nil {
		return err
	}
	if nf.noDHT && len(relays) == 0 {
		return usagef("nowhere to publish: --no-dht and no relays; drop --no-dht or add --relay URL")
	}
	return nil
}

func printReport(w io.Writer, r resolve.Report) {
	fmt.Fprintf(w, "published  seq %d (%d bytes) in %v\n", r.Seq, r.Size, r.Elapsed.Round(time.Millisecond))
	if r.DHT != nil {
		fmt.Fprintf(w, "  dht      stored on %d of %d closest nodes", r.DHT.Stored, r.DHT.Tried)
		if r.DHTErr != "" {
			fmt.Fprintf(w, " (%s)", r.DHTErr)
		}
		fmt.Fprintln(w)
	}
	for _, rr := range r.Relays {
		status := "accepted"
		if rr.Err != "" {
			status = "failed: " + rr.Err
		}
		fmt.Fprintf(w, "  relay    %s %s\n", rr.URL, status)
	}
}

func newPublishCmd(e *env, g *globals) *cobra.Command {
	var nf netFlags
	var cf contentFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "publish",
		Short: "Publish this device's record once, to the DHT and relays",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, _, closeNode, err := publisherFor(cmd.Context(), e, g, &nf, &cf)
			if err != nil {
				return err
			}
			defer closeNode()
			rep, err := p.PublishOnce(cmd.Context())
			if asJSON {
				_ = printJSON(e.stdout, rep)
			} else if rep.Seq != 0 {
				printReport(e.stdout, rep)
			}
			return err
		},
	}
	nf.register(cmd.Flags(), true)
	cf.register(cmd.Flags())
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// resolveView is what 'keyhole resolve' prints.
type resolveView struct {
	packetView
	From      string            `json:"from"`
	ElapsedMS float64           `json:"elapsed_ms"`
	Attempts  []resolve.Attempt `json:"attempts"`
}

func newResolveCmd(e *env) *cobra.Command {
	var nf netFlags
	var asJSON bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "resolve ADDRESS",
		Short: "Find and verify the record of a key",
		Args:  exactArgs(1, "one address (z-base-32, keyhole:// or oh:// URL)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			key, err := identity.ParseAddress(args[0])
			if err != nil {
				return usageError{err}
			}
			logger, err := nf.logger(e.stderr)
			if err != nil {
				return err
			}
			r, closeNode, err := nf.resolver(cmd.Context(), e, logger, timeout)
			if err != nil {
				return err
			}
			defer closeNode()
			res, err := r.Resolve(cmd.Context(), key)
			if err != nil {
				return err
			}
			c, cerr := record.ParseContent(res.Packet, res.Records, e.now())
			if cerr != nil {
				return fmt.Errorf("the record verifies but its content does not: %w", cerr)
			}
			v := resolveView{packetView: viewPacket(res.Packet, res.Records, c), From: res.From,
				ElapsedMS: float64(res.Elapsed.Microseconds()) / 1000, Attempts: res.Attempts}
			if asJSON {
				return printJSON(e.stdout, v)
			}
			fmt.Fprintf(e.stdout, "resolved   from %s in %.1f ms\n", v.From, v.ElapsedMS)
			printPacket(e.stdout, v.packetView)
			return nil
		},
	}
	nf.register(cmd.Flags(), true)
	cmd.Flags().DurationVar(&timeout, "timeout", resolve.DefaultTimeout, "give up after this long")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newDaemonCmd(e *env, g *globals) *cobra.Command {
	var nf netFlags
	var cf contentFlags
	var ds daemonServe
	var interval time.Duration
	cmd := &cobra.Command{
		Use:   "daemon",
		Short: "Keep this device reachable by its key until stopped",
		Long: "Publishes the record now, again every --interval (re-signed, so it stays\n" +
			"fresh), and retries with backoff when nothing accepts it. With --listen it\n" +
			"also accepts direct connections and publishes that listener's addresses,\n" +
			"again whenever the network changes; with --board it waits on those boards\n" +
			"so devices behind NATs can reach it through a hole punch or a TURN relay\n" +
			"(STUN and TURN from the --node community nodes). Stop with Ctrl-C.",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, logger, closeNode, err := publisherFor(cmd.Context(), e, g, &nf, &cf)
			if err != nil {
				return err
			}
			defer closeNode()
			p.Interval = interval
			if ds.listen != "" || len(cf.boards) > 0 {
				base, err := cf.content()
				if err != nil {
					return err
				}
				ready := make(chan struct{})
				var once sync.Once
				served := make(chan error, 1)
				go func() {
					served <- ds.run(cmd.Context(), p.Key, base, func(c *record.Content) {
						p.SetContent(c)
						once.Do(func() { close(ready) })
					}, logger)
				}()
				if ds.listen != "" {
					select { // publish the listener's addresses from the first record on
					case <-ready:
					case err := <-served:
						return err
					}
				}
				fmt.Fprintf(e.stdout, "%s\n", p.Key.Public()) // the address to dial
			}
			p.OnPublish = func(r resolve.Report, err error) {
				nodes, relays := r.Landed()
				if err != nil {
					logger.Warn("publish failed; retrying with backoff", "err", err)
					return
				}
				logger.Info("published", "address", p.Key.Public().String(), "seq", r.Seq, "dht_nodes", nodes, "relays", relays)
			}
			logger.Info("daemon started", "address", p.Key.Public().String(), "interval", interval)
			err = p.Run(cmd.Context())
			if cmd.Context().Err() != nil {
				logger.Info("daemon stopped")
				return nil
			}
			return err
		},
	}
	nf.register(cmd.Flags(), true)
	cf.register(cmd.Flags())
	ds.register(cmd.Flags())
	cmd.Flags().DurationVar(&interval, "interval", resolve.DefaultInterval, "republish interval")
	return cmd
}

func newDHTCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{Use: "dht", Short: "Mainline DHT tools"}
	cmd.AddCommand(newTestnetCmd(e))
	return cmd
}

func newTestnetCmd(e *env) *cobra.Command {
	var nodes, port int
	var host, relayAddr string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "testnet",
		Short: "Run a private DHT of real nodes on this machine",
		Long: "Starts --nodes real Mainline DHT nodes on loopback and prints the address to\n" +
			"bootstrap from. Nothing talks to the internet. Runs until stopped.",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if nodes < 1 || nodes > 2000 {
				return usagef("--nodes must be 1-2000")
			}
			ctx := cmd.Context()
			start := time.Now()
			tn, err := dht.StartTestnet(ctx, nodes, dht.TestnetOptions{Host: host, FirstPort: port})
			if err != nil {
				return err
			}
			defer tn.Close()
			out := map[string]any{"nodes": nodes, "bootstrap": tn.Bootstrap(), "started_ms": time.Since(start).Milliseconds()}
			var srv *http.Server
			if relayAddr != "" {
				ln, err := net.Listen("tcp", relayAddr)
				if err != nil {
					return fmt.Errorf("relay: %w", err)
				}
				rs := relay.New(relay.Config{DHT: tn.Nodes[0]})
				defer rs.Close()
				srv = &http.Server{Handler: rs, ReadHeaderTimeout: 10 * time.Second}
				go srv.Serve(ln)
				defer srv.Close()
				out["relay"] = "http://" + ln.Addr().String()
			}
			if asJSON {
				_ = printJSON(e.stdout, out)
			} else {
				boot := strings.Join(tn.Bootstrap(), ",")
				fmt.Fprintf(e.stdout, "DHT testnet: %d nodes on %s, started in %v\nbootstrap  %s\n", nodes, host, time.Since(start).Round(time.Millisecond), boot)
				if out["relay"] != nil {
					fmt.Fprintf(e.stdout, "relay      %s\n", out["relay"])
				}
				fmt.Fprintf(e.stdout, "\nUse it from another terminal:\n  export %s=%s\n", bootstrapEnv, boot)
				if out["relay"] != nil {
					fmt.Fprintf(e.stdout, "  export %s=%s\n", relaysEnv, out["relay"])
				} else {
					fmt.Fprintf(e.stdout, "  export %s=none\n", relaysEnv)
				}
				fmt.Fprintln(e.stdout, "  keyhole publish --kps 127.0.0.1:4242:<certhash>\n  keyhole resolve <address>\n\nCtrl-C stops the testnet.")
			}
			<-ctx.Done()
			return nil
		},
	}
	cmd.Flags().IntVar(&nodes, "nodes", 50, "number of nodes")
	cmd.Flags().StringVar(&host, "host", "127.0.0.1", "IP the nodes bind")
	cmd.Flags().IntVar(&port, "port", 0, "UDP port of the first (bootstrap) node; 0 picks one")
	cmd.Flags().StringVar(&relayAddr, "relay-addr", "", "also run a Pkarr relay on this TCP address (e.g. 127.0.0.1:8080)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newRelayCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{Use: "relay", Short: "Pkarr relay"}
	var nf netFlags
	var addr string
	serve := &cobra.Command{
		Use:   "serve",
		Short: "Serve the Pkarr relay HTTP API, backed by a DHT node",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := nf.logger(e.stderr)
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("relay: %w", err)
			}
			n, err := nf.node(cmd.Context(), e, logger)
			if err != nil {
				ln.Close()
				return err
			}
			defer n.Close()
			rs := relay.New(relay.Config{DHT: n, Logger: logger})
			defer rs.Close()
			srv := &http.Server{Handler: rs, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
			go func() {
				<-cmd.Context().Done()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				srv.Shutdown(ctx)
			}()
			fmt.Fprintf(e.stdout, "relay listening on http://%s (DHT node %s, %d peers)\n", ln.Addr(), n.Addr(), n.NumNodes())
			logger.Info("relay started", "addr", ln.Addr().String())
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}
	nf.register(serve.Flags(), false)
	serve.Flags().StringVar(&addr, "addr", "127.0.0.1:8080", "TCP address to serve on")
	cmd.AddCommand(serve)
	return cmd
}
