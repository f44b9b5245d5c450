package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"

	"golang.org/x/term"
)

// passphraseEnv lets scripts and servers supply the passphrase.
const passphraseEnv = "KEYHOLE_PASSPHRASE"

var errNoPassphrase = errors.New("no passphrase available: set " + passphraseEnv + " or run in a terminal")

// ttyPrompt reads a secret from the controlling terminal without echo.
// It uses /dev/tty, not stdin, so that stdin stays free for data (backup
// words, packets).
func ttyPrompt(label string) ([]byte, error) {
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return nil, errNoPassphrase
	}
	defer tty.Close()
	fmt.Fprint(tty, label)
	p, err := term.ReadPassword(int(tty.Fd()))
	fmt.Fprintln(tty)
	if err != nil {
		return nil, fmt.Errorf("reading passphrase: %w", err)
	}
	return p, nil
}

// passphrase returns the passphrase to open an identity.
func (e *env) passphrase(name string) ([]byte, error) {
	if p := e.getenv(passphraseEnv); p != "" {
		return []byte(p), nil
	}
	if e.prompt == nil {
		return nil, errNoPassphrase
	}
	return e.prompt(fmt.Sprintf("Passphrase for identity %q: ", name))
}

// newPassphrase asks for a passphrase for a new identity, twice when typed.
func (e *env) newPassphrase(name string) ([]byte, error) {
	if p := e.getenv(passphraseEnv); p != "" {
		return []byte(p), nil
	}
	if e.prompt == nil {
		return nil, fmt.Errorf("%w (or pass --no-passphrase to store the key unencrypted, for servers)", errNoPassphrase)
	}
	p, err := e.prompt(fmt.Sprintf("New passphrase for identity %q: ", name))
	if err != nil {
		return nil, err
	}
	if len(p) == 0 {
		return nil, errors.New("empty passphrase; type one, or pass --no-passphrase to store the key unencrypted")
	}
	again, err := e.prompt("Repeat the passphrase: ")
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(p, again) {
		return nil, errors.New("the two passphrases differ; nothing was written, try again")
	}
	return p, nil
}
