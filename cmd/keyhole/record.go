package main

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/keyhole-p2p/keyhole/identity"
	"github.com/keyhole-p2p/keyhole/internal/atomicfile"
	"github.com/keyhole-p2p/keyhole/record"
	"github.com/spf13/cobra"
)

func newRecordCmd(e *env, g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "record",
		Short: "Build and verify signed Pkarr records",
	}
	cmd.AddCommand(newRecordBuildCmd(e, g), newRecordVerifyCmd(e))
	return cmd
}

// packetView is the printed form of a signed packet.
type packetView struct {
	Valid        *bool      `json:"valid,omitempty"`
	Address      string     `json:"address"`
	PublicKeyHex string     `json:"public_key_hex"`
	TimestampUS  uint64     `json:"timestamp_us"`
	Time         string     `json:"time"`
	Size         int        `json:"size"`
	DNSSize      int        `json:"dns_size"`
	Records      []rrView   `json:"records"`
	Content      *contentVw `json:"content,omitempty"`
	Base64       string     `json:"base64"`
	Hex          string     `json:"hex"`
}

type rrView struct {
	Name  string `json:"name"`
	Type  string `json:"type"`
	TTL   uint32 `json:"ttl"`
	Value string `json:"value"`
}

type contentVw struct {
	Direct   []string `json:"direct,omitempty"`
	Boards   []string `json:"boards,omitempty"`
	Nodes    []string `json:"nodes,omitempty"`
	TURN     []string `json:"turn,omitempty"`
	Onion    string   `json:"onion,omitempty"`
	Openhost *struct {
		Version         uint8  `json:"version"`
		TS              uint64 `json:"ts"`
		DTLSFingerprint string `json:"dtls_fp"`
		Roles           string `json:"roles"`
		TURN            string `json:"turn,omitempty"`
	} `json:"openhost,omitempty"`
}

func viewPacket(p *record.SignedPacket, rrs []record.RR, c *record.Content) packetView {
	wire := p.Bytes()
	v := packetView{
		Address: p.PublicKey.String(), PublicKeyHex: p.PublicKey.Hex(), TimestampUS: p.Timestamp,
		Time: p.Time().UTC().Format(time.RFC3339Nano), Size: len(wire), DNSSize: len(p.DNS),
		Base64: base64.StdEncoding.EncodeToString(wire), Hex: hex.EncodeToString(wire), Records: []rrView{},
	}
	for _, r := range rrs {
		rv := rrView{Name: r.Name, TTL: r.TTL, Type: fmt.Sprintf("TYPE%d", r.Type)}
		switch r.Type {
		case record.TypeTXT:
			rv.Type, rv.Value = "TXT", string(r.Text)
		case record.TypeA, record.TypeAAAA:
			rv.Type, rv.Value = map[uint16]string{record.TypeA: "A", record.TypeAAAA: "AAAA"}[r.Type], r.Addr.String()
		default:
			rv.Value = hex.EncodeToString(r.Raw)
		}
		v.Records = append(v.Records, rv)
	}
	if c != nil {
		cv := &contentVw{Boards: c.Boards, Nodes: c.Nodes, TURN: c.TURN}
		for _, a := range c.Direct {
			cv.Direct = append(cv.Direct, a.String())
		}
		if c.Onion != nil {
			cv.Onion = c.Onion.String()
		}
		if o := c.Openhost; o != nil {
			cv.Openhost = &struct {
				Version         uint8  `json:"version"`
				TS              uint64 `json:"ts"`
				DTLSFingerprint string `json:"dtls_fp"`
				Roles           string `json:"roles"`
				TURN            string `json:"turn,omitempty"`
			}{o.Version, o.Timestamp, hex.EncodeToString(o.DTLSFingerprint[:]), o.Roles, ""}
			if o.TURN.IsValid() {
				cv.Openhost.TURN = o.TURN.String()
			}
		}
		v.Content = cv
	}
	return v
}

func printPacket(w io.Writer, v packetView) {
	fmt.Fprintf(w, "address    %s\ntime       %s (%d µs)\nsize       %d bytes (DNS packet %d of %d)\nrecords\n",
		v.Address, v.Time, v.TimestampUS, v.Size, v.DNSSize, record.MaxDNSSize)
	for _, r := range v.Records {
		val := r.Value
		if len(val) > 72 {
			val = val[:69] + "..."
		}
		fmt.Fprintf(w, "  %-10s %-4s %5d  %s\n", r.Name, r.Type, r.TTL, val)
	}
	fmt.Fprintf(w, "base64     %s\nhex        %s\n", v.Base64, v.Hex)
}

func newRecordBuildCmd(e *env, g *globals) *cobra.Command {
	var cf contentFlags
	var out string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "build",
		Short: "Build a signed packet for the current identity",
		Long: "Build a signed Pkarr packet saying how to reach this device. It is printed\n" +
			"(base64, hex and decoded) and, with --out, written as raw bytes.",
		Args: noArgs,
		RunE: func(*cobra.Command, []string) error {
			c, err := cf.content()
			if err != nil {
				return err
			}
			key, err := loadKey(e, g)
			if err != nil {
				return err
			}
			p, err := record.Build(key, c, e.now())
			if err != nil {
				return err
			}
			rrs, err := p.Verify(record.VerifyOptions{Key: key.Public(), Now: e.now()})
			if err != nil {
				return fmt.Errorf("internal error: the packet just built does not verify: %w", err)
			}
			if out != "" {
				if err := atomicfile.Write(out, p.Bytes(), 0o644); err != nil {
					return fmt.Errorf("writing %s: %w", out, err)
				}
			}
			v := viewPacket(p, rrs, c)
			if asJSON {
				return printJSON(e.stdout, v)
			}
			printPacket(e.stdout, v)
			return nil
		},
	}
	cf.register(cmd.Flags())
	cmd.Flags().StringVar(&out, "out", "", "also write the raw packet bytes to this file")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newRecordVerifyCmd(e *env) *cobra.Command {
	var keyStr string
	var window time.Duration
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "verify [FILE|-]",
		Short: "Verify a signed packet (raw bytes, hex, base64, or 'record build --json' output)",
		Long: "Verify a signed packet read from FILE or stdin. Exit status 0 means valid;\n" +
			"1 means invalid, with the reason on stderr.",
		Args: maxArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			var want identity.PublicKey
			if keyStr != "" {
				k, err := identity.ParseAddress(keyStr)
				if err != nil {
					return usageError{fmt.Errorf("--key: %w", err)}
				}
				want = k
			}
			in, err := readInput(e, args)
			if err != nil {
				return err
			}
			p, rrs, c, verr := verifyPacket(in, want, e.now(), window)
			if verr != nil {
				verr = fmt.Errorf("invalid packet: %w", verr)
				if asJSON {
					_ = printJSON(e.stdout, map[string]any{"valid": false, "error": verr.Error()})
				}
				return verr
			}
			v := viewPacket(p, rrs, c)
			ok := true
			v.Valid = &ok
			if asJSON {
				return printJSON(e.stdout, v)
			}
			fmt.Fprintln(e.stdout, "valid      yes")
			printPacket(e.stdout, v)
			return nil
		},
	}
	cmd.Flags().StringVar(&keyStr, "key", "", "require the packet to be signed by this address")
	cmd.Flags().DurationVar(&window, "window", record.DefaultWindow, "accept timestamps at most this far from now (negative: any)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func verifyPacket(in []byte, want identity.PublicKey, now time.Time, window time.Duration) (*record.SignedPacket, []record.RR, *record.Content, error) {
	raw, err := decodePacketText(in)
	if err != nil {
		return nil, nil, nil, err
	}
	p, err := record.ParsePacket(raw)
	if err != nil {
		return nil, nil, nil, err
	}
	if window == 0 {
		window = -1 // a zero --window would mean "exactly now"; treat as "any"
	}
	rrs, err := p.Verify(record.VerifyOptions{Key: want, Now: now, Window: window})
	if err != nil {
		return nil, nil, nil, err
	}
	c, err := record.ParseContent(p, rrs, now)
	if err != nil {
		return nil, nil, nil, err
	}
	return p, rrs, c, nil
}

func readInput(e *env, args []string) ([]byte, error) {
	const limit = 1 << 20
	if len(args) == 0 || args[0] == "-" {
		b, err := io.ReadAll(io.LimitReader(e.stdin, limit))
		if err != nil {
			return nil, fmt.Errorf("reading stdin: %w", err)
		}
		return b, nil
	}
	f, err := os.Open(args[0])
	if err != nil {
		return nil, fmt.Errorf("cannot read the packet: %w", err)
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, limit))
}

// decodePacketText accepts the forms people pass packets around in:
// 'record build --json' output, hex, base64 (standard or URL), or raw bytes.
func decodePacketText(in []byte) ([]byte, error) {
	t := bytes.TrimSpace(in)
	if len(t) == 0 {
		return nil, errors.New("no input: pass a file or pipe a packet to stdin")
	}
	if t[0] == '{' {
		var j struct {
			Base64 string `json:"base64"`
		}
		if json.Unmarshal(t, &j) == nil && j.Base64 != "" {
			t = []byte(j.Base64)
		}
	}
	s := string(t)
	if b, err := hex.DecodeString(s); err == nil {
		return b, nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return in, nil // raw bytes
}
