package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/keyhole-p2p/keyhole/identity"
	"github.com/keyhole-p2p/keyhole/identity/keystore"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

func newIDCmd(e *env, g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "id",
		Short: "Create, list, back up and restore identities",
		Long:  "An identity is an Ed25519 key pair; its public key is the device's address.",
	}
	cmd.AddCommand(newIDNewCmd(e, g), newIDListCmd(e, g), newIDShowCmd(e, g), newIDBackupCmd(e, g), newIDRestoreCmd(e, g), newIDUseCmd(e, g))
	return cmd
}

// idView is how commands print an identity.
type idView struct {
	Name         string `json:"name"`
	Address      string `json:"address"`
	PublicKeyHex string `json:"public_key_hex"`
	URL          string `json:"url"`
	Encrypted    bool   `json:"encrypted"`
	Default      bool   `json:"default"`
	Created      string `json:"created"`
	Path         string `json:"path"`
}

func viewOf(en keystore.Entry) idView {
	return idView{Name: en.Name, Address: en.Address, PublicKeyHex: en.PublicKey.Hex(), URL: "keyhole://" + en.Address,
		Encrypted: en.Encrypted, Default: en.Default, Created: en.Created.UTC().Format("2006-01-02T15:04:05Z"), Path: en.Path}
}

func printID(w io.Writer, v idView) {
	fmt.Fprintf(w, "name        %s\naddress     %s\npublic key  %s\nurl         %s\nencrypted   %v\nfile        %s\n",
		v.Name, v.Address, v.PublicKeyHex, v.URL, v.Encrypted, v.Path)
}

// chooseNewName picks --name, or "default" for the first identity.
func chooseNewName(s *keystore.Store, name string) (string, error) {
	if name != "" {
		return name, keystore.CheckName(name)
	}
	if _, err := s.Info("default"); err == nil {
		return "", usagef("an identity named \"default\" exists; pass --name for the new one")
	}
	return "default", nil
}

// storeNew writes key under a new name, asking for a passphrase unless
// --no-passphrase was given.
func storeNew(e *env, s *keystore.Store, name string, key *identity.PrivateKey, noPass bool) (keystore.Entry, error) {
	if _, err := s.Info(name); err == nil || !errors.Is(err, keystore.ErrNotFound) {
		if err == nil {
			return keystore.Entry{}, fmt.Errorf("%w: %q; choose another --name", keystore.ErrExists, name)
		}
		return keystore.Entry{}, err
	}
	var pass []byte
	if !noPass {
		var err error
		if pass, err = e.newPassphrase(name); err != nil {
			return keystore.Entry{}, err
		}
	}
	return s.Create(name, key, pass)
}

func newIDNewCmd(e *env, g *globals) *cobra.Command {
	var name string
	var noPass, asJSON bool
	cmd := &cobra.Command{
		Use:   "new",
		Short: "Create a new identity",
		Args:  noArgs,
		RunE: func(*cobra.Command, []string) error {
			s, err := g.store(e)
			if err != nil {
				return err
			}
			if name, err = chooseNewName(s, name); err != nil {
				return err
			}
			key, err := identity.Generate()
			if err != nil {
				return err
			}
			en, err := storeNew(e, s, name, key, noPass)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(e.stdout, viewOf(en))
			}
			printID(e.stdout, viewOf(en))
			fmt.Fprintf(e.stderr, "Write down the backup words now: keyhole id backup --id %s\n", name)
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "name of the identity (default \"default\")")
	cmd.Flags().BoolVar(&noPass, "no-passphrase", false, "store the key unencrypted (for servers that start unattended)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newIDListCmd(e *env, g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List identities",
		Args:  noArgs,
		RunE: func(*cobra.Command, []string) error {
			s, err := g.store(e)
			if err != nil {
				return err
			}
			list, errs := s.List()
			for _, err := range errs {
				fmt.Fprintln(e.stderr, "keyhole: warning:", err)
			}
			views := make([]idView, 0, len(list))
			for _, en := range list {
				views = append(views, viewOf(en))
			}
			if asJSON {
				return printJSON(e.stdout, views)
			}
			if len(views) == 0 {
				fmt.Fprintln(e.stderr, "No identities yet; create one with 'keyhole id new'.")
			}
			for _, v := range views {
				mark := " "
				if v.Default {
					mark = "*"
				}
				fmt.Fprintf(e.stdout, "%s %-16s %s\n", mark, v.Name, v.Address)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newIDShowCmd(e *env, g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Show the current identity's address and public key",
		Args:  noArgs,
		RunE: func(*cobra.Command, []string) error {
			s, err := g.store(e)
			if err != nil {
				return err
			}
			name, err := g.identityName(s)
			if err != nil {
				return err
			}
			en, err := s.Info(name)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(e.stdout, viewOf(en))
			}
			printID(e.stdout, viewOf(en))
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// loadKey opens the current identity, asking for its passphrase if needed.
func loadKey(e *env, g *globals) (*identity.PrivateKey, error) {
	s, err := g.store(e)
	if err != nil {
		return nil, err
	}
	name, err := g.identityName(s)
	if err != nil {
		return nil, err
	}
	need, err := s.NeedsPassphrase(name)
	if err != nil {
		return nil, err
	}
	var pass []byte
	if need {
		if pass, err = e.passphrase(name); err != nil {
			return nil, err
		}
	}
	return s.Load(name, pass)
}

func newIDBackupCmd(e *env, g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "backup",
		Short: "Print the 24 backup words that restore this identity",
		Args:  noArgs,
		RunE: func(*cobra.Command, []string) error {
			key, err := loadKey(e, g)
			if err != nil {
				return err
			}
			words := key.BackupWords()
			if asJSON {
				return printJSON(e.stdout, map[string]string{"address": key.Public().String(), "words": words})
			}
			fmt.Fprintln(e.stderr, "These 24 words ARE the key. Anyone who reads them owns this identity; keep them offline.")
			fmt.Fprintln(e.stdout, words)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newIDRestoreCmd(e *env, g *globals) *cobra.Command {
	var name string
	var noPass, asJSON bool
	cmd := &cobra.Command{
		Use:   "restore",
		Short: "Restore an identity from its 24 backup words, read from stdin",
		Args:  noArgs,
		RunE: func(*cobra.Command, []string) error {
			s, err := g.store(e)
			if err != nil {
				return err
			}
			if name, err = chooseNewName(s, name); err != nil {
				return err
			}
			if f, ok := e.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
				fmt.Fprintln(e.stderr, "Type the 24 backup words, then press Enter and Ctrl-D:")
			}
			words, err := io.ReadAll(io.LimitReader(e.stdin, 4096))
			if err != nil {
				return fmt.Errorf("reading backup words from stdin: %w", err)
			}
			key, err := identity.FromBackupWords(string(words))
			if err != nil {
				return fmt.Errorf("%w; nothing was written", err)
			}
			en, err := storeNew(e, s, name, key, noPass)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(e.stdout, viewOf(en))
			}
			printID(e.stdout, viewOf(en))
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "name for the restored identity (default \"default\")")
	cmd.Flags().BoolVar(&noPass, "no-passphrase", false, "store the key unencrypted (for servers)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newIDUseCmd(e *env, g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "use NAME",
		Short: "Make NAME the identity commands use by default",
		Args:  exactArgs(1, "one identity name"),
		RunE: func(_ *cobra.Command, args []string) error {
			s, err := g.store(e)
			if err != nil {
				return err
			}
			if err := s.SetDefault(strings.TrimSpace(args[0])); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "default identity is now %s\n", args[0])
			return nil
		},
	}
}
