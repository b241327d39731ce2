// Command hawser keeps a Docker host in step with a git repository's compose
// project. main only wires things together; see run.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `hawser keeps a Docker host in step with a git repository.

Usage:
  hawser [-env FILE] <command>

Commands:
  serve      run the daemon: watch the repository and converge the host
  validate   check .env and the compose project of the watched commit
  status     show the watched and running commit and each service (asks the daemon)
  sync [SERVICE...]
             reconcile now, retrying a failed commit; recreate the named
             services even if nothing changed (asks the daemon)
  version    print the version

Options:
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, errReported) {
			fmt.Fprintln(os.Stderr, "hawser:", err)
		}
		os.Exit(1)
	}
}

// errReported means the problem was already printed in full.
var errReported = errors.New("reported")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("hawser", flag.ContinueOnError)
	fs.SetOutput(stderr)
	envFile := fs.String("env", ".env", "the configuration `file`")
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return errReported
	}
	if fs.NArg() < 1 || (fs.Arg(0) != "sync" && fs.NArg() > 1) {
		fs.Usage()
		return errReported
	}
	switch cmd := fs.Arg(0); cmd {
	case "serve":
		return serve(ctx, *envFile, stderr)
	case "validate":
		return validate(ctx, *envFile, stdout, stderr)
	case "status":
		return status(ctx, *envFile, stdout)
	case "sync":
		return syncNow(ctx, *envFile, fs.Args()[1:], stdout)
	case "version":
		fmt.Fprintln(stdout, "hawser", version)
		return nil
	default:
		fmt.Fprintf(stderr, "hawser: unknown command %q\n\n", cmd)
		fs.Usage()
		return errReported
	}
}
