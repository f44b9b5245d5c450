package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net/netip"
	"strings"
	"time"

	"github.com/keyhole-p2p/keyhole/identity"
	"github.com/keyhole-p2p/keyhole/record"
	"github.com/spf13/cobra"
)

func newDemoCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "demo",
		Short: "Show keyhole end to end on this machine, with nothing to set up",
		Long: "Runs the whole story in one process on an embedded default. Today that is\n" +
			"the identity and record layer: make a key, back it up, bind a transport key,\n" +
			"publish-ready signed record, verify it, and watch tampering get caught.\n" +
			"Nothing leaves this machine and nothing is written to disk.",
		Args: noArgs,
		RunE: func(*cobra.Command, []string) error { return runDemo(e) },
	}
}

func runDemo(e *env) error {
	w := e.stdout
	step := func(n int, title string) { fmt.Fprintf(w, "\n[%d] %s\n", n, title) }
	now := e.now()
	fmt.Fprintln(w, "keyhole demo: identities and signed records, in this process only")

	step(1, "A new identity: the public key is the address")
	key, err := identity.Generate()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "    address  %s\n    url      keyhole://%s/\n", key.Public(), key.Public())

	step(2, "24 backup words restore the exact key")
	words := key.BackupWords()
	restored, err := identity.FromBackupWords(words)
	if err != nil {
		return err
	}
	f := strings.Fields(words)
	fmt.Fprintf(w, "    words    %s ... %s (24 words)\n    restored %s (same key: %v)\n",
		strings.Join(f[:3], " "), f[23], restored.Public(), restored.Public() == key.Public())

	step(3, "An X25519 transport key, bound to the identity by a signature")
	tk, err := identity.NewTransportKey()
	if err != nil {
		return err
	}
	b, err := identity.NewBinding(key, tk.Public(), now)
	if err != nil {
		return err
	}
	if _, _, err := b.Verify(key.Public(), now); err != nil {
		return fmt.Errorf("demo: binding does not verify: %w", err)
	}
	fmt.Fprintf(w, "    binding  transport key %s... signed at %s: verified\n", b.TransportKey[:16], b.CreatedUTC)

	step(4, "A signed Pkarr record saying how to reach this device")
	der, err := demoCertificate()
	if err != nil {
		return err
	}
	direct := record.KPSAddr{AddrPort: netip.MustParseAddrPort("127.0.0.1:4242"), CertHash: record.CertHashOf(der)}
	c := &record.Content{Direct: []record.KPSAddr{direct}, Boards: []string{"ws://127.0.0.1:8443/"}}
	p, err := record.Build(key, c, now)
	if err != nil {
		return err
	}
	wire := p.Bytes()
	fmt.Fprintf(w, "    direct   %s\n    board    %s\n    packet   %d bytes (DNS part %d of %d), seq %d\n",
		direct, c.Boards[0], len(wire), len(p.DNS), record.MaxDNSSize, p.Timestamp)

	step(5, "Anyone holding only the address verifies it")
	got, rrs, content, err := verifyPacket(wire, key.Public(), now, record.DefaultWindow)
	if err != nil {
		return fmt.Errorf("demo: the record does not verify: %w", err)
	}
	fmt.Fprintf(w, "    valid    signed by %s, %d records, direct address %s\n", got.PublicKey, len(rrs), content.Direct[0])

	step(6, "Tampering is caught")
	flipped := append([]byte(nil), wire...)
	flipped[len(flipped)-5] ^= 0x01
	_, _, _, err = verifyPacket(flipped, key.Public(), now, record.DefaultWindow)
	fmt.Fprintf(w, "    1 bit    %v\n", err)
	other, _ := identity.Generate()
	_, _, _, err = verifyPacket(wire, other.Public(), now, record.DefaultWindow)
	fmt.Fprintf(w, "    key      %v\n", err)
	_, _, _, err = verifyPacket(wire, key.Public(), now.Add(3*time.Hour), record.DefaultWindow)
	fmt.Fprintf(w, "    old      %v\n", err)

	fmt.Fprintln(w, "\nNext: 'keyhole id new' makes a real identity; 'keyhole record build' signs its record.")
	return nil
}

// demoCertificate makes a throwaway self-signed ECDSA P-256 certificate,
// the kind a KPS listener pins by its hash.
func demoCertificate() ([]byte, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	return x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
}
