package natlab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// rootNetworking lists the machine's own interfaces, addresses and routes,
// to show that a lab adds nothing to them.
func rootNetworking() (string, error) {
	var b strings.Builder
	for _, args := range [][]string{{"-o", "link", "show"}, {"-o", "addr", "show"}, {"route", "show", "table", "all"}} {
		out, err := run("", "ip", args...)
		if err != nil {
			return "", err
		}
		b.WriteString(out)
	}
	return b.String(), nil
}

// labNamespaces lists the namespaces of the lab with this id that exist.
func labNamespaces(t *testing.T, id string) []string {
	var got []string
	for _, name := range mustReadDir(t, netnsDir) {
		if strings.HasPrefix(name, "kh-"+id+"-") {
			got = append(got, name)
		}
	}
	return got
}

// TestLabLifecycle checks that a lab leaves the machine's own networking
// alone while it lives, and leaves nothing at all once closed.
func TestLabLifecycle(t *testing.T) {
	before, err := rootNetworking()
	lab := New(t, Options{}) // skips first if ip is missing
	if err != nil {
		t.Fatal(err)
	}
	lab.Public()
	lab.Private(Symmetric, LinkOptions{LossPercent: 5})
	lab.Private(None, LinkOptions{LossPercent: 5})
	want := []string{"kh-" + lab.id + "-h1", "kh-" + lab.id + "-p1", "kh-" + lab.id + "-p2", "kh-" + lab.id + "-r1", "kh-" + lab.id + "-sw"}
	if got := labNamespaces(t, lab.id); !slices.Equal(got, want) {
		t.Errorf("namespaces %v, want %v", got, want)
	}
	if after, err := rootNetworking(); err != nil || after != before {
		t.Errorf("the root namespace changed (%v):\nbefore:\n%s\nafter:\n%s", err, before, after)
	}
	if _, err := os.Stat(lockPath(lab.id)); err != nil {
		t.Errorf("lock file: %v", err)
	}
	if err := lab.Close(); err != nil {
		t.Fatal(err)
	}
	if got := labNamespaces(t, lab.id); len(got) != 0 {
		t.Errorf("left after Close: %v", got)
	}
	if _, err := os.Stat(lockPath(lab.id)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("lock file after Close: %v", err)
	}
	if err := lab.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := lab.addNamespace(lab.nsName("p9")); err == nil {
		t.Error("a closed lab made a namespace")
	}
}

// TestCloseKillsStragglers checks that processes a test started in a host
// and never stopped do not keep the lab's namespaces alive: one long
// settled in its namespace, and one started just before Close, which may
// still be on its way in.
func TestCloseKillsStragglers(t *testing.T) {
	t.Parallel()
	lab := New(t, Options{})
	h := lab.Public()
	ctx := context.Background()
	settled := h.Command(ctx, "sh", "-c", "echo ready; exec sleep 60")
	stdout, err := settled.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := settled.Start(); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("read %q, %v", line, err)
	}
	late := h.Command(ctx, "sleep", "60")
	if err := late.Start(); err != nil {
		t.Fatal(err)
	}
	if err := lab.Close(); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []*exec.Cmd{settled, late} {
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			t.Logf("%s ended: %v", cmd, err)
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			t.Errorf("%s survived Close", cmd)
		}
	}
}

// TestStaleLabsRemoved fakes a crashed lab (namespaces and an unlocked
// lock file) and checks that the next New removes it, while a live lab,
// and a recent unlocked namespace without any lock file, are left alone.
func TestStaleLabsRemoved(t *testing.T) {
	live := New(t, Options{})
	live.Public()

	crashedID, lock, err := acquireID()
	if err != nil {
		t.Fatal(err)
	}
	crashed := []string{"kh-" + crashedID + "-sw", "kh-" + crashedID + "-p1"}
	for _, name := range crashed {
		t.Cleanup(func() { removeNamespaces([]string{name}) })
		if _, err := run("", "ip", "netns", "add", name); err != nil {
			t.Fatal(err)
		}
	}
	lock.Close() // the crash: the lock is gone, the file stays

	youngID, youngLock, err := acquireID()
	if err != nil {
		t.Fatal(err)
	}
	young := "kh-" + youngID + "-sw"
	t.Cleanup(func() { removeNamespaces([]string{young}) })
	if _, err := run("", "ip", "netns", "add", young); err != nil {
		t.Fatal(err)
	}
	if err := releaseID(youngLock); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var logged []string
	New(t, Options{Logf: func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		logged = append(logged, fmt.Sprintf(format, args...))
	}})
	t.Logf("New logged: %q", logged)

	if got := labNamespaces(t, crashedID); len(got) != 0 {
		t.Errorf("crashed lab's namespaces survived: %v", got)
	}
	if _, err := os.Stat(lockPath(crashedID)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("crashed lab's lock file: %v", err)
	}
	if got := labNamespaces(t, live.id); len(got) != 2 {
		t.Errorf("live lab's namespaces: %v, want its switch and p1", got)
	}
	if got := labNamespaces(t, youngID); len(got) != 1 {
		t.Errorf("a recent namespace without a lock file was removed: %v", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.ContainsFunc(logged, func(s string) bool { return strings.Contains(s, "kh-"+crashedID) }) {
		t.Error("the removal was not logged")
	}
}

// TestHost checks the ways into a host: Command and Run run in its
// namespace, TCP through a NAT works outbound only, and Run leaves every
// thread of the test process in its original namespace (which is why it
// does not run in parallel with tests that call Run).
func TestHost(t *testing.T) {
	lab := New(t, Options{})
	pub := lab.Public()
	priv := lab.Private(PortRestricted, LinkOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	out, err := priv.Command(ctx, "ip", "-o", "-4", "addr", "show", "dev", "eth0").CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if !strings.Contains(string(out), priv.IP.String()+"/24") {
		t.Errorf("Command ran outside %s: %s", priv.Name, out)
	}
	out, err = priv.Router.Command(ctx, "nft", "list", "table", "ip", "natlab").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "snat") {
		t.Errorf("router rules: %v: %s", err, out)
	}

	// /proc/sys reflects the namespace of the thread reading it.
	for _, tt := range []struct {
		h    *Host
		key  string
		want string
	}{
		{priv.Router, "net/ipv4/ip_forward", "1"},
		{priv, "net/ipv4/ip_forward", "0"},
		{priv, "net/ipv6/conf/all/disable_ipv6", "1"},
	} {
		var got []byte
		if err := tt.h.Run(func() (err error) {
			got, err = os.ReadFile(filepath.Join("/proc/sys", tt.key))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(string(got)) != tt.want {
			t.Errorf("%s %s = %q, want %s", tt.h.Name, tt.key, got, tt.want)
		}
	}

	ln, err := pub.Listen(0)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan netip.AddrPort, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		accepted <- c.RemoteAddr().(*net.TCPAddr).AddrPort()
		c.Write([]byte("hello\n"))
		c.Close()
	}()
	dst := netip.AddrPortFrom(pub.IP, ln.Addr().(*net.TCPAddr).AddrPort().Port())
	c, err := priv.DialContext(ctx, "tcp4", dst.String())
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	c.Close()
	if err != nil || line != "hello\n" {
		t.Errorf("read %q, %v", line, err)
	}
	if from := <-accepted; from.Addr() != priv.PublicIP {
		t.Errorf("server saw %s, want the router's %s", from, priv.PublicIP)
	}

	// Inbound TCP through the NAT, or to the private address, fails.
	privLn, err := priv.Listen(0)
	if err != nil {
		t.Fatal(err)
	}
	defer privLn.Close()
	port := privLn.Addr().(*net.TCPAddr).AddrPort().Port()
	for _, to := range []netip.Addr{priv.PublicIP, priv.IP} {
		dctx, dcancel := context.WithTimeout(ctx, negativeWait)
		c, err := pub.DialContext(dctx, "tcp4", netip.AddrPortFrom(to, port).String())
		dcancel()
		if err == nil {
			c.Close()
			t.Errorf("%s reached %s:%d through a NAT", pub, to, port)
		}
	}

	// Run's threads all return to the test's namespace.
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if err := priv.Run(func() error { time.Sleep(time.Millisecond); return nil }); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	self, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		ns, err := os.Readlink(filepath.Join("/proc/self/task", task.Name(), "ns/net"))
		if err == nil && ns != self {
			t.Errorf("thread %s is in %s, not %s", task.Name(), ns, self)
		}
	}

	// A panic inside Run reaches the caller, with the thread restored.
	func() {
		defer func() {
			if v := recover(); v != "boom" {
				t.Errorf("recovered %v, want boom", v)
			}
		}()
		priv.Run(func() error { panic("boom") })
	}()
}
