package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/keyhole-p2p/keyhole/identity/keystore"
	"github.com/spf13/cobra"
)

// Exit codes (design.md conventions).
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// env is everything a command touches outside itself, so commands run
// in tests exactly as they run for a person.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	now            func() time.Time
	// prompt reads a secret from the terminal; nil when there is none.
	prompt func(label string) ([]byte, error)
}

// globals are the flags every command shares.
type globals struct {
	home string
	id   string
}

// usageError marks mistakes in how a command was called (exit code 2).
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

func run(ctx context.Context, args []string, e *env) int {
	root := newRoot(e)
	root.SetArgs(args)
	root.SetIn(e.stdin)
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	// One line: what went wrong and what to do.
	msg := strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; ")
	fmt.Fprintln(e.stderr, "keyhole: "+msg)
	var u usageError
	if errors.As(err, &u) || strings.HasPrefix(err.Error(), "unknown command") {
		fmt.Fprintln(e.stderr, "Run 'keyhole --help' for usage.")
		return exitUsage
	}
	return exitFailure
}

func newRoot(e *env) *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "keyhole",
		Short:         "Reach any device by its public key",
		Long:          "keyhole reaches any device by its Ed25519 public key: no port forwarding,\nno tunnel service in the data path, no trusted server.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.home, "home", "", "configuration directory (default $XDG_CONFIG_HOME/keyhole or ~/.config/keyhole)")
	root.PersistentFlags().StringVar(&g.id, "id", "", "identity to use (default: the one set by 'keyhole id use')")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.CompletionOptions.DisableDefaultCmd = true
	root.AddCommand(newIDCmd(e, g), newRecordCmd(e, g), newPublishCmd(e, g), newResolveCmd(e), newDaemonCmd(e, g),
		newDHTCmd(e), newRelayCmd(e), newListenCmd(e, g), newCatCmd(e, g), newBoardCmd(e, g), newNodeCmd(e, g), newPingCmd(e, g), newDemoCmd(e), newVersionCmd(e))
	return root
}

// homeDir is --home, or the default configuration directory.
func (g *globals) homeDir(e *env) (string, error) {
	if g.home != "" {
		return g.home, nil
	}
	return keystore.DefaultHome(e.getenv)
}

// store opens the keystore named by --home or the environment.
func (g *globals) store(e *env) (*keystore.Store, error) {
	home, err := g.homeDir(e)
	if err != nil {
		return nil, err
	}
	return keystore.Open(home), nil
}

// identityName is --id, or the store's default.
func (g *globals) identityName(s *keystore.Store) (string, error) {
	if g.id != "" {
		return g.id, nil
	}
	return s.Default()
}

// noArgs and friends turn argument-count mistakes into usage errors.
func noArgs(_ *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("unexpected argument %q", args[0])
	}
	return nil
}

func maxArgs(n int) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) > n {
			return usagef("expected at most %d argument(s), got %d", n, len(args))
		}
		return nil
	}
}

func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("expected %s", what)
		}
		return nil
	}
}

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func newVersionCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the keyhole version",
		Args:  noArgs,
		RunE: func(*cobra.Command, []string) error {
			fmt.Fprintln(e.stdout, "keyhole", version)
			return nil
		},
	}
}
