// Command natlab keeps a NAT lab up for a person to use, until Ctrl-C:
// one public host and one private host behind a NAT of each type given.
// It prints the command prefix that runs a program on each host, so you
// can start keyhole there and reach one namespace from another by key.
// It needs root (network namespaces, nftables):
//
//	sudo go run ./tests/natlab/cmd/natlab --nat port-restricted --nat symmetric
//
// Everything it makes lives in namespaces of its own (kh-<id>-*) and is
// removed on exit; a lab left by a killed process is removed by the next
// run.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/keyhole-p2p/keyhole/tests/natlab"
)

type natFlags []natlab.NATType

func (n *natFlags) String() string { return fmt.Sprint(*n) }
func (n *natFlags) Set(v string) error {
	*n = append(*n, natlab.NATType(v))
	return nil
}

func main() {
	var nats natFlags
	loss := flag.Int("loss", 0, "percent of packets each private host's link drops, each way")
	flag.Var(&nats, "nat", "a private host behind this NAT: none, full-cone, restricted, port-restricted, symmetric (repeatable; default port-restricted twice)")
	flag.Parse()
	if len(nats) == 0 {
		nats = natFlags{natlab.PortRestricted, natlab.PortRestricted}
	}
	l, err := natlab.Open(natlab.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	pub, err := l.AddPublic()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("public host   %-16s  run: ip netns exec %s <command>\n", pub.IP, pub.Name)
	for i, nt := range nats {
		h, err := l.AddPrivate(nt, natlab.LinkOptions{LossPercent: *loss})
		if err != nil {
			l.Close()
			log.Fatal(err)
		}
		fmt.Printf("host %d (%s)  %-16s  public %s  run: ip netns exec %s <command>\n", i+1, nt, h.IP, h.PublicIP, h.Name)
	}
	fmt.Println(strings.Repeat("-", 72))
	fmt.Println("The lab is up. Ctrl-C removes it.")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
}
