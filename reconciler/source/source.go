// Package source is the git side of a project: it asks the remote cheaply
// which commit each branch is at, and materialises a commit's tree on disk
// only when that commit changed.
//
// A Repo owns one remote, one bare cache repository and one checkouts
// directory. Neither directory may be shared with another Repo: a Repo
// serialises its own disk work, but not against other values.
package source

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5/plumbing/transport"
)

// Bounds on a single remote operation, applied on top of the caller's
// context so that a hung server cannot stall a reconcile loop forever.
const (
	lsRemoteTimeout = 1 * time.Minute
	fetchTimeout    = 10 * time.Minute
)

// Errors a caller may want to tell apart with errors.Is.
var (
	// ErrInvalidCommit means a commit ID is not 40 or 64 lowercase hex digits.
	ErrInvalidCommit = errors.New("invalid commit id")
	// ErrInvalidBranch means a branch name is not a valid git ref name.
	ErrInvalidBranch = errors.New("invalid branch name")
	// ErrCommitNotFound means the remote could not provide the commit: the
	// branch has moved on and the server does not serve commits by ID.
	ErrCommitNotFound = errors.New("commit not available from remote")
)

// Auth holds the credentials for one remote. Token is never logged and is
// scrubbed from every error this package returns.
type Auth struct {
	// Token is sent as the HTTP basic-auth password (user "hawser").
	Token string
	// SSHKeyFile is an unencrypted private key used for ssh remotes.
	SSHKeyFile string
	// KnownHostsFile verifies ssh host keys; empty means ~/.ssh/known_hosts.
	KnownHostsFile string
}

// Refs is what one ls-remote reports.
type Refs struct {
	// Default is the branch the remote's HEAD points at, or "" if unknown.
	Default string
	// Branches maps each branch name (without refs/heads/) to its commit.
	Branches map[string]string
}

// Checkout is a commit exported to disk.
type Checkout struct {
	// Commit is the full commit ID.
	Commit string
	// Dir is the directory holding exactly this commit's tree.
	Dir string
	// Current is the stable symlink that points at the active commit.
	Current string
	// Subject is the first line of the commit's message; empty if the
	// cache no longer holds the commit.
	Subject string
}

// Repo is the git source of one project.
type Repo struct {
	url          string // as handed to go-git
	display      string // url without credentials, for logs and errors
	endpoint     *transport.Endpoint
	auth         Auth
	knownHosts   string // resolved known_hosts file, ssh only
	cacheDir     string
	checkoutsDir string
	log          *slog.Logger

	// mu serialises fetches, exports, repoints and prunes of this Repo.
	mu sync.Mutex
	// historyMu serialises Resolve, which has a cache of its own.
	historyMu sync.Mutex
}

// New checks the URL and credentials and returns a Repo. The remote is not
// contacted. cacheDir holds a bare repository (created on first fetch);
// checkoutsDir holds one directory per exported commit and the symlink
// "current".
func New(rawURL string, auth Auth, cacheDir, checkoutsDir string, log *slog.Logger) (*Repo, error) {
	if cacheDir == "" || checkoutsDir == "" {
		return nil, errors.New("git source: cache and checkouts directories are required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ep, normalized, err := parseRemote(rawURL)
	if err != nil {
		return nil, err
	}
	r := &Repo{
		url: normalized, display: redactURL(normalized), endpoint: ep, auth: auth,
		cacheDir: filepath.Clean(cacheDir), checkoutsDir: filepath.Clean(checkoutsDir),
		log: log.With("remote", redactURL(normalized)),
	}
	if err := r.checkAuth(); err != nil {
		return nil, r.scrub(err)
	}
	if err := os.MkdirAll(r.checkoutsDir, 0o755); err != nil {
		return nil, fmt.Errorf("git source: create checkouts directory: %w", err)
	}
	return r, nil
}

// parseRemote accepts https, http, ssh (URL and scp-like), file URLs and
// absolute local paths, and returns the endpoint and the URL for go-git.
func parseRemote(raw string) (*transport.Endpoint, string, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return nil, "", errors.New("git source: repository URL is empty")
	}
	if filepath.IsAbs(raw) {
		raw = (&url.URL{Scheme: "file", Path: filepath.Clean(raw)}).String()
	}
	ep, err := transport.NewEndpoint(raw)
	if err != nil {
		return nil, "", fmt.Errorf("git source: parse repository URL %q: %w", redactURL(raw), err)
	}
	switch ep.Protocol {
	case "https", "http", "ssh":
	case "file":
		// go-git would resolve a relative path against the daemon's working
		// directory; refuse it instead of depending on where hawser started.
		if !strings.HasPrefix(raw, "file://") || !filepath.IsAbs(ep.Path) {
			return nil, "", fmt.Errorf("git source: local repository path %q must be absolute", raw)
		}
	default:
		return nil, "", fmt.Errorf("git source: repository URL %q: unsupported protocol %q (use https, ssh, file or an absolute path)", redactURL(raw), ep.Protocol)
	}
	return ep, raw, nil
}

// redactURL hides a password embedded in a URL.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	return u.Redacted()
}
