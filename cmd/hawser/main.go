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
  hawser [-env FILE] [-json] <command>

Commands:
  serve      run the daemon: watch the repository and converge the host
  validate   check .env and the compose project of the watched commit
  status     show the watched and running commit, the deployment in progress
             and each service
  sync [SERVICE...]
             reconcile now, retrying a failed commit; recreate the named
             services even if nothing changed
  history [DEPLOYMENT]
             list the deployments, or show one with its reasons
  logs [DEPLOYMENT]
             print what a deployment did, its build output included, and
             follow it while it runs; without one, the newest deployment
  rollback DEPLOYMENT|COMMIT
             deploy an earlier commit and pin it: automatic updates pause
  previews   list the previews: branch, URL, commit, state, last request, size of their volumes
  previews wake|destroy SLUG
             start a sleeping preview now, or tear one down until the next
             push to its branch
  pause      pause automatic updates (the running version is still kept up)
  resume     resume automatic updates and deploy the head of the branch
  health     exit 0 when the daemon answers, 1 when not (for healthchecks)
  version    print the version

All commands but serve, validate and version ask the running daemon, at
HAWSER_ADMIN_URL (else http:// and HAWSER_ADMIN_ADDR) with HAWSER_API_TOKEN;
the environment variables of those names come before the values in .env.
Flags may also follow the command: hawser status -json.

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
	asJSON := fs.Bool("json", false, "print the daemon's answer as JSON, for scripts")
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	args, err := parseInterspersed(fs, args)
	if err != nil {
		return errReported
	}
	if !argsFit(args, *asJSON) {
		fs.Usage()
		return errReported
	}
	c := &apiCLI{envFile: *envFile, json: *asJSON, stdout: stdout}
	switch cmd := args[0]; cmd {
	case "serve":
		return serve(ctx, *envFile, stderr)
	case "validate":
		return validate(ctx, *envFile, stdout, stderr)
	case "status":
		return c.status(ctx)
	case "sync":
		return c.sync(ctx, args[1:])
	case "history":
		return c.history(ctx, args[1:])
	case "logs":
		id := ""
		if len(args) == 2 {
			id = args[1]
		}
		return c.logs(ctx, id)
	case "rollback":
		return c.rollback(ctx, args[1])
	case "previews":
		return c.previews(ctx, args[1:])
	case "pause":
		return c.post(ctx, "/api/v1/pause")
	case "resume":
		return c.post(ctx, "/api/v1/resume")
	case "health":
		return c.health(ctx)
	case "handover": // hidden: hawser's own container runs it to update itself
		return handover(ctx, args[1:], stderr)
	case "version":
		fmt.Fprintln(stdout, "hawser", version)
		return nil
	default:
		fmt.Fprintf(stderr, "hawser: unknown command %q\n\n", cmd)
		fs.Usage()
		return errReported
	}
}

// parseInterspersed parses flags wherever they are among the arguments,
// and returns the others; after "--" every argument is one of those.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		left := fs.Args()
		if len(left) == 0 {
			return rest, nil
		}
		if len(left) < len(args) && args[len(args)-len(left)-1] == "--" {
			return append(rest, left...), nil
		}
		rest, args = append(rest, left[0]), left[1:]
	}
}

// argsFit checks the number of arguments each command takes, and that
// -json goes with a command that asks the daemon.
func argsFit(args []string, asJSON bool) bool {
	if len(args) == 0 {
		return false
	}
	switch args[0] {
	case "serve", "validate", "health", "version":
		return len(args) == 1 && !asJSON
	case "sync":
		return true
	case "history", "logs":
		return len(args) <= 2
	case "rollback":
		return len(args) == 2
	case "handover":
		return len(args) == 4 && !asJSON
	case "previews":
		return len(args) == 1 || (len(args) == 3 && (args[1] == "wake" || args[1] == "destroy"))
	}
	return len(args) == 1
}
