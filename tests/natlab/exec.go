package natlab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// cmdTimeout bounds every command the lab runs to build or tear down its
// topology. Each is one netlink or nftables transaction that takes
// milliseconds, so reaching it means the machine is wedged, and failing
// beats hanging the test binary until go test's own timeout.
const cmdTimeout = 15 * time.Second

// sbinDirs are searched after $PATH: ip, tc and nft live there, and a
// non-login root shell (sudo, CI runners) does not always have them in
// $PATH.
var sbinDirs = []string{"/usr/sbin", "/sbin", "/usr/local/sbin"}

// tool returns the path of a system binary.
func tool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range sbinDirs {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("natlab: %s not found in $PATH or %s", name, strings.Join(sbinDirs, ", "))
}

// run executes a system binary within cmdTimeout, feeding it stdin (if not
// empty), and returns its stdout. The error names the command and carries
// its stderr and, for scripts, the script itself, so a failed rule or
// route can be read straight from the test log.
func run(stdin string, name string, args ...string) (string, error) {
	path, err := tool(name)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.WaitDelay = time.Second
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("%w (killed after %v)", err, cmdTimeout)
		}
		msg := fmt.Sprintf("natlab: %s %s: %v", name, strings.Join(args, " "), err)
		if s := strings.TrimSpace(stderr.String()); s != "" {
			msg += ": " + s
		}
		if stdin != "" {
			msg += "\ninput:\n" + stdin
		}
		return "", errors.New(msg)
	}
	return stdout.String(), nil
}

// ipBatch runs iproute2 commands (one per line, without the leading "ip")
// inside namespace ns, in one process.
func ipBatch(ns string, cmds ...string) error {
	_, err := run(strings.Join(cmds, "\n")+"\n", "ip", "-n", ns, "-batch", "-")
	return err
}

// nft loads an nftables script inside namespace ns as one transaction:
// either every rule applies or none does.
func nft(ns, script string) error {
	path, err := tool("nft")
	if err != nil {
		return err
	}
	_, err = run(script, "ip", "netns", "exec", ns, path, "-f", "-")
	return err
}
