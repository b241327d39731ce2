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
  history [DEPLOYMENT]
             list the deployments, or show one with its reasons and logs
  rollback DEPLOYMENT|COMMIT
             deploy an earlier commit and pin it: automatic updates pause
  previews   list the branch previews: branch, URL, commit, state, last request
  pause      pause automatic updates (the running version is still kept up)
  resume     resume automatic updates and deploy the head of the branch
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
	if !argsFit(fs.Args()) {
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
	case "history":
		return history(ctx, *envFile, fs.Args()[1:], stdout)
	case "rollback":
		return rollback(ctx, *envFile, fs.Arg(1), stdout)
	case "previews":
		return listPreviews(ctx, *envFile, stdout)
	case "pause":
		return simpleCall(ctx, *envFile, "/api/v1/pause", stdout)
	case "resume":
		return simpleCall(ctx, *envFile, "/api/v1/resume", stdout)
	case "version":
		fmt.Fprintln(stdout, "hawser", version)
		return nil
	default:
		fmt.Fprintf(stderr, "hawser: unknown command %q\n\n", cmd)
		fs.Usage()
		return errReported
	}
}

// argsFit checks the number of arguments each command takes.
func argsFit(args []string) bool {
	if len(args) == 0 {
		return false
	}
	switch args[0] {
	case "sync":
		return true
	case "history":
		return len(args) <= 2
	case "rollback":
		return len(args) == 2
	}
	return len(args) == 1
}
