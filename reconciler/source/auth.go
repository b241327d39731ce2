package source

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"github.com/skeema/knownhosts"
	"golang.org/x/crypto/ssh"
)

// tokenUser is the basic-auth user name sent with a token; forges that take
// tokens as passwords ignore it, and it names us in server logs.
const tokenUser = "hawser"

// knownHostsEnv is the configuration key users set to name a known_hosts file.
const knownHostsEnv = "HAWSER_GIT_KNOWN_HOSTS"

// checkAuth fails early on credentials that can never work, so a bad
// configuration is reported at start and not on the first tick.
func (r *Repo) checkAuth() error {
	switch r.endpoint.Protocol {
	case "http":
		if r.auth.Token != "" && !isLoopback(r.endpoint.Host) {
			return fmt.Errorf("git source: refusing to send a token over plain http to %s; use https", r.endpoint.Host)
		}
	case "ssh":
		kh, err := resolveKnownHosts(r.auth.KnownHostsFile, r.endpoint.Host, r.sshPort())
		if err != nil {
			return err
		}
		r.knownHosts = kh
	}
	_, err := r.transportAuth()
	return err
}

// transportAuth builds the go-git credentials for one operation. Files are
// read again each time so that a rotated key or an edited known_hosts file
// takes effect without a restart.
func (r *Repo) transportAuth() (transport.AuthMethod, error) {
	switch r.endpoint.Protocol {
	case "http", "https":
		if r.auth.Token == "" {
			return nil, nil
		}
		return &githttp.BasicAuth{Username: tokenUser, Password: r.auth.Token}, nil
	case "ssh":
		return r.sshAuth()
	}
	return nil, nil
}

func (r *Repo) sshAuth() (transport.AuthMethod, error) {
	if r.auth.SSHKeyFile == "" {
		return nil, fmt.Errorf("git source: ssh remote %s needs an SSH key file", r.display)
	}
	user := r.endpoint.User
	if user == "" {
		user = "git"
	}
	keys, err := gitssh.NewPublicKeysFromFile(user, r.auth.SSHKeyFile, "")
	if err != nil {
		return nil, fmt.Errorf("git source: load SSH key %s: %w", r.auth.SSHKeyFile, err)
	}
	db, err := knownhosts.NewDB(r.knownHosts)
	if err != nil {
		return nil, fmt.Errorf("git source: read known_hosts %s: %w", r.knownHosts, err)
	}
	keys.HostKeyCallback = explainHostKey(db.HostKeyCallback(), r.knownHosts)
	// Offer only the key types known_hosts lists for this host, or the
	// server may present a key of another type that then looks unknown.
	keys.HostKeyAlgorithms = db.HostKeyAlgorithms(net.JoinHostPort(r.endpoint.Host, strconv.Itoa(r.sshPort())))
	return keys, nil
}

func (r *Repo) sshPort() int {
	if r.endpoint.Port == 0 {
		return 22
	}
	return r.endpoint.Port
}

// resolveKnownHosts picks the known_hosts file. There is deliberately no
// fallback that skips verification.
func resolveKnownHosts(configured, host string, port int) (string, error) {
	if configured != "" {
		if _, err := os.Stat(configured); err != nil {
			return "", fmt.Errorf("git source: known_hosts file %s (%s): %w", configured, knownHostsEnv, err)
		}
		return configured, nil
	}
	home, err := os.UserHomeDir()
	if err == nil {
		def := filepath.Join(home, ".ssh", "known_hosts")
		if _, err = os.Stat(def); err == nil {
			return def, nil
		}
	}
	return "", fmt.Errorf("git source: no known_hosts file to verify the SSH host key of %s: set %s to a known_hosts file that lists it (for example the checked output of ssh-keyscan -p %d %s): %w",
		host, knownHostsEnv, port, host, err)
}

// explainHostKey turns knownhosts' terse errors into ones that say what to do.
func explainHostKey(verify ssh.HostKeyCallback, file string) ssh.HostKeyCallback {
	return func(host string, remote net.Addr, key ssh.PublicKey) error {
		err := verify(host, remote, key)
		switch {
		case err == nil:
			return nil
		case knownhosts.IsHostKeyChanged(err):
			return fmt.Errorf("SSH host key of %s (%s) does not match %s; the host key changed or the connection is intercepted: %w",
				host, ssh.FingerprintSHA256(key), file, err)
		case knownhosts.IsHostUnknown(err):
			return fmt.Errorf("SSH host key of %s (%s) is not in %s; add the host's key to trust it: %w",
				host, ssh.FingerprintSHA256(key), file, err)
		}
		return fmt.Errorf("verify SSH host key of %s: %w", host, err)
	}
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	addr, err := netip.ParseAddr(strings.Trim(host, "[]"))
	return err == nil && addr.IsLoopback()
}

// scrub removes secrets from an error's text. The cause stays reachable
// with errors.Is and errors.As so callers can still classify it.
func (r *Repo) scrub(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	clean := msg
	for _, secret := range r.secrets() {
		clean = strings.ReplaceAll(clean, secret, "REDACTED")
	}
	if clean == msg {
		return err
	}
	return &redactedError{msg: clean, err: err}
}

func (r *Repo) secrets() []string {
	var s []string
	if r.auth.Token != "" {
		s = append(s, r.auth.Token)
	}
	if r.endpoint != nil && r.endpoint.Password != "" {
		s = append(s, r.endpoint.Password)
	}
	return s
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }
