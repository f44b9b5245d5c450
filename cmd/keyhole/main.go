// The keyhole binary: reach any device by its public key. Each
// subcommand parses its flags and calls the packages that do the work;
// see README.md for a tour.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], &env{
		stdin:  os.Stdin,
		stdout: os.Stdout,
		stderr: os.Stderr,
		getenv: os.Getenv,
		now:    time.Now,
		prompt: ttyPrompt,
	})
	stop()
	os.Exit(code)
}
