package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/mail"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/docker/go-units"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/robfig/cron/v3"

	"hawser.dev/hawser/proxy"
	"hawser.dev/hawser/reconciler/preview"
	"hawser.dev/hawser/registry"
)

// keyPrefix marks the keys that configure hawser itself.
const keyPrefix = "HAWSER_"

// Key describes one HAWSER_* configuration key.
type Key struct {
	Name        string
	Default     string // used when the key is absent from the file
	Description string // one line, as in .env.example
	Secret      bool   // the value is never shown
	apply       func(l *loading, v string) error
}

// table is every key, in the order .env.example documents them. Keys that
// derive their default from others (HAWSER_PROJECT) come after those.
func table() []Key {
	return []Key{
		{"HAWSER_REPO", ".", "git repository to deploy: a URL (https://, ssh://, git@host:path) or a local path, relative to this file's directory", false, required(applyRepo)},
		{"HAWSER_BRANCH", "", "branch to deploy; empty means the remote's default branch", false, applyBranch},
		{"HAWSER_PATH", "examples/hello", "directory of the compose project inside the repository; empty or . means its root", false, applyPath},
		{"HAWSER_COMPOSE_FILES", "", "comma-separated compose files relative to HAWSER_PATH; empty means compose's default names (compose.yaml, ...)", false, applyComposeFiles},
		{"HAWSER_PROJECT", "", "compose project name; empty means the last element of HAWSER_PATH (or the repository's name), normalised as docker compose does", false, applyProject},
		{"HAWSER_PROFILES", "", "comma-separated compose profiles to enable", false, applyProfiles},
		{"HAWSER_SCHEDULE", "@every 1m", "when to poll the repository: a cron spec with an optional seconds field, or @every <duration>, @hourly, ...", false, required(applySchedule)},
		{"HAWSER_SCHEDULE_JITTER", "5s", "a random delay of up to this duration is added to each scheduled poll; 0 for none", false, required(applyJitter)},
		{"HAWSER_STATE_DIR", "state", "directory for hawser's own state (checkouts, history), relative to this file's directory", false, required(applyStateDir)},
		{"HAWSER_ADMIN_ADDR", "127.0.0.1:9180", "host:port of the admin HTTP server (health, metrics, the API the CLI uses)", false, required(applyAdminAddr)},
		{"HAWSER_API_TOKEN", "", "bearer token the API's writes (sync, rollback, pause, resume, previews), its deployment logs and the dashboard's buttons require; empty refuses them all (a secret, at least 16 characters)", true, applyAPIToken},
		{"HAWSER_ADMIN_URL", "", "URL at which the CLI reaches the daemon; empty means http:// and HAWSER_ADMIN_ADDR; the environment variable of the same name overrides it", false, applyAdminURL},
		{"HAWSER_WEBHOOK_SECRET", "", "secret shared with the git host's webhooks (/webhook/github, gitlab, gitea for Gitea, Forgejo and Gogs, generic); empty turns webhooks off (a secret, at least 16 characters)", true, applyWebhookSecret},
		{"HAWSER_ADMIN_HOST", "", "host name at which the front end also serves the webhooks and the API (every call needing the token), with TLS when HAWSER_DOMAIN is set; empty: only HAWSER_ADMIN_ADDR serves them", false, applyAdminHost},
		{"HAWSER_LOG_FORMAT", "text", "log format: text or json", false, required(applyLogFormat)},
		{"HAWSER_LOG_LEVEL", "info", "log level: debug, info, warn or error", false, required(applyLogLevel)},
		{"HAWSER_GIT_TOKEN", "", "token for HTTPS git remotes (a secret: never logged or shown)", true, applyGitToken},
		{"HAWSER_GIT_SSH_KEY", "", "private key file for SSH git remotes, relative to this file's directory", false, applyGitSSHKey},
		{"HAWSER_GIT_KNOWN_HOSTS", "", "known_hosts file for SSH git remotes, relative to this file's directory", false, applyGitKnownHosts},
		{"HAWSER_KEEP_CHECKOUTS", "5", "how many checked-out commits to keep on disk per project (for rollback)", false, required(applyKeepCheckouts)},
		{"HAWSER_HEALTH_TIMEOUT", "60s", "how long a new container may take to become healthy (or running, if it has no healthcheck)", false, required(applyHealthTimeout)},
		{"HAWSER_DOMAIN", "", "domain of the primary routed service, others at <service>.<domain>; set, hawser serves HTTPS with ACME certificates; empty serves plain HTTP at localhost names", false, applyDomain},
		{"HAWSER_PRIMARY_SERVICE", "", "routed service served at HAWSER_DOMAIN itself; empty means the only routed service, if there is one", false, applyPrimaryService},
		{"HAWSER_HTTP_ADDR", "127.0.0.1:8080", "host:port of the front end's HTTP listener (use :80 with a domain, for ACME and redirects)", false, required(applyHTTPAddr)},
		{"HAWSER_HTTPS_ADDR", ":443", "host:port of the front end's HTTPS listener, used only with HAWSER_DOMAIN", false, required(applyHTTPSAddr)},
		{"HAWSER_UPSTREAM_NETWORK", "", "when hawser runs in a container: the Docker network it shares with routed services, reached there by name; empty: they publish their port on 127.0.0.1", false, applyUpstreamNetwork},
		{"HAWSER_ACME_EMAIL", "", "contact e-mail for the ACME account", false, applyACMEEmail},
		{"HAWSER_ACME_CA", "https://acme-v02.api.letsencrypt.org/directory", "ACME directory URL of the certificate authority", false, required(applyACMECA)},
		{"HAWSER_DRAIN_TIMEOUT", "30s", "how long requests in flight to an old container may take to finish before it is stopped", false, required(applyDrainTimeout)},
		{"HAWSER_PREVIEW_BRANCHES", "", "comma-separated globs of branches that get a preview at <slug>.<preview domain>; empty turns previews off", false, applyPreviewBranches},
		{"HAWSER_PREVIEW_DOMAIN", "", "domain of the previews; empty means HAWSER_DOMAIN, or localhost without one", false, applyPreviewDomain},
		{"HAWSER_PREVIEW_INHERIT", "", "comma-separated keys (or globs) of this file passed to previews; no other value reaches a branch's code", false, applyPreviewInherit},
		{"HAWSER_PREVIEW_IDLE", "30m", "a preview without a request for this long is stopped, and started again by the next request; 0 keeps previews running", false, required(applyPreviewIdle)},
		{"HAWSER_PREVIEW_TTL", "336h", "a preview whose branch saw no push for this long is torn down until the next push; 0 keeps it (336h is 14 days)", false, required(applyPreviewTTL)},
		{"HAWSER_PREVIEW_MAX_RUNNING", "0", "at most this many previews run at once, the least recently used sleep first; 0 for no cap", false, required(applyPreviewMaxRunning)},
		{"HAWSER_WAKE_TIMEOUT", "60s", "how long a request to a sleeping preview is held while it starts (browsers get a page that reloads itself)", false, required(applyWakeTimeout)},
		{"HAWSER_PREVIEW_AUTH", "", "basic auth for every preview: user:<bcrypt hash> as `htpasswd -nbB user password` prints it, in single quotes (a secret)", true, applyPreviewAuth},
		{"HAWSER_MAX_BUILDS", "2", "image builds that may run at once, production's before any preview's", false, required(applyMaxBuilds)},
		{"HAWSER_PREVIEW_CPUS", "0", "CPU limit of each preview service, in CPUs; 0 for none", false, required(applyPreviewCPUs)},
		{"HAWSER_PREVIEW_MEMORY", "0", "memory limit of each preview service, like 512m or 1g; 0 for none", false, required(applyPreviewMemory)},
		{"HAWSER_REGISTRY_SCHEDULE", "", "when to check registries for new digests of followed image tags; empty means at every HAWSER_SCHEDULE poll", false, applyRegistrySchedule},
		{"HAWSER_REGISTRY_AUTH", "", "registry credentials that override the Docker config for their hosts: host=user:password,host2=user:token (a secret)", true, applyRegistryAuth},
		{"HAWSER_INSECURE_REGISTRIES", "", "comma-separated host[:port] of registries reached over plain HTTP; loopback registries always are", false, applyInsecureRegistries},
		{"HAWSER_PRUNE_IMAGES", "true", "remove images no container and no kept deployment uses after a successful update: true or false", false, required(applyPruneImages)},
		{"HAWSER_SELF_UPDATE", "true", "when hawser runs in a container: replace it with the new image when its own tag gets a new digest (checked on HAWSER_REGISTRY_SCHEDULE), between deployments, rolled back if the new one is not healthy: true or false", false, required(applySelfUpdate)},
	}
}

// Keys returns every HAWSER_* key with its default and description, in the
// order they are documented.
func Keys() []Key {
	return table()
}

// errEmpty is returned for a key that is present without a value where
// empty has no meaning; Parse names the default to use instead.
var errEmpty = errors.New("empty")

// required rejects an empty value before apply sees it.
func required(apply func(*loading, string) error) func(*loading, string) error {
	return func(l *loading, v string) error {
		if v == "" {
			return errEmpty
		}
		return apply(l, v)
	}
}

// scheduleParser accepts an optional seconds field and descriptors such as
// "@every 1m"; the plain cron.ParseStandard has no seconds.
func scheduleParser() cron.Parser {
	return cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)
}

// profileRe is the compose specification's rule for profile names; "*"
// enables every profile, as with `docker compose --profile "*"`.
var profileRe = regexp.MustCompile(`^(\*|[a-zA-Z0-9][a-zA-Z0-9_.-]*)$`)

func applyRepo(l *loading, v string) error {
	if strings.Contains(v, "://") || !isLocalPath(v) {
		return l.applyRemoteRepo(v)
	}
	dir := l.resolve(v)
	if err := requireDir(dir); err != nil {
		return err
	}
	l.cfg.Repo, l.repoName = dir, filepath.Base(dir)
	l.show(dir)
	return nil
}

// isLocalPath uses go-git's own rule (that of git itself) for telling an
// scp-like "host:path" from a local path.
func isLocalPath(v string) bool {
	ep, err := transport.NewEndpoint(v)
	return err == nil && ep.Protocol == "file"
}

func (l *loading) applyRemoteRepo(v string) error {
	// The value may hold credentials, so errors describe it without quoting it.
	ep, err := transport.NewEndpoint(v)
	if err != nil {
		return errors.New("not a git URL or local path")
	}
	if u, err := url.Parse(v); err == nil && u.User != nil {
		if _, hasPassword := u.User.Password(); hasPassword || u.Scheme == "https" || u.Scheme == "http" {
			return errors.New("the URL contains credentials; put the token in HAWSER_GIT_TOKEN instead")
		}
	}
	switch ep.Protocol {
	case "file":
		if err := requireDir(ep.Path); err != nil {
			return err
		}
	case "https", "http", "ssh", "git":
	default:
		return fmt.Errorf("unsupported URL scheme %q (use https, http, ssh, git or file)", ep.Protocol)
	}
	l.cfg.Repo = v
	l.repoName = strings.TrimSuffix(path.Base(strings.TrimRight(ep.Path, "/")), ".git")
	return nil
}

func applyBranch(l *loading, v string) error {
	if strings.HasPrefix(v, "refs/") {
		return errors.New("give the branch name without refs/heads/")
	}
	if v != "" && plumbing.NewBranchReferenceName(v).Validate() != nil {
		return fmt.Errorf("%q is not a valid branch name", v)
	}
	l.cfg.Branch = v
	return nil
}

func applyPath(l *loading, v string) error {
	if v == "" {
		v = "."
	}
	if err := requireLocal(v); err != nil {
		return err
	}
	l.cfg.Path = v
	return nil
}

func applyComposeFiles(l *loading, v string) error {
	files := splitList(v)
	for _, f := range files {
		if err := requireLocal(f); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
	}
	l.cfg.ComposeFiles = files
	return nil
}

func applyProject(l *loading, v string) error {
	if v != "" {
		if norm := loader.NormalizeProjectName(v); norm != v {
			return fmt.Errorf("invalid project name %q: only lowercase letters, digits, - and _ are allowed, starting with a letter or digit (for example %q)", v, norm)
		}
		l.cfg.Project = v
		return nil
	}
	source := path.Base(l.cfg.Path)
	if l.cfg.Path == "." || l.cfg.Path == "" {
		source = l.repoName
	}
	if source == "" {
		return nil // HAWSER_REPO or HAWSER_PATH is wrong and already reported
	}
	name := loader.NormalizeProjectName(source)
	if name == "" {
		return fmt.Errorf("cannot derive a project name from %q; set HAWSER_PROJECT", source)
	}
	l.cfg.Project = name
	l.show(name)
	return nil
}

func applyProfiles(l *loading, v string) error {
	profiles := splitList(v)
	for _, p := range profiles {
		if !profileRe.MatchString(p) {
			return fmt.Errorf("invalid profile name %q: use letters, digits, _ . and -, starting with a letter or digit", p)
		}
	}
	l.cfg.Profiles = profiles
	return nil
}

func applySchedule(l *loading, v string) error {
	sched, err := parseSchedule(v)
	l.cfg.ScheduleSpec, l.cfg.Schedule = v, sched
	return err
}

func applyRegistrySchedule(l *loading, v string) error {
	if v == "" {
		return nil
	}
	sched, err := parseSchedule(v)
	l.cfg.RegistrySchedule = sched
	return err
}

func parseSchedule(v string) (cron.Schedule, error) {
	// robfig/cron panics on a time zone prefix with nothing after it.
	if (strings.HasPrefix(v, "TZ=") || strings.HasPrefix(v, "CRON_TZ=")) && !strings.Contains(v, " ") {
		return nil, errors.New("a time zone prefix must be followed by a schedule")
	}
	sched, err := scheduleParser().Parse(v)
	if err != nil {
		return nil, fmt.Errorf("invalid schedule %q: %w", v, err)
	}
	return sched, nil
}

func applyRegistryAuth(l *loading, v string) error {
	creds, err := registry.ParseCredentials(v)
	l.cfg.RegistryAuth = creds
	return err
}

func applyInsecureRegistries(l *loading, v string) error {
	hosts, err := registry.ParseInsecure(v)
	l.cfg.InsecureRegistries = hosts
	return err
}

func applyPruneImages(l *loading, v string) (err error) {
	l.cfg.PruneImages, err = parseBool(v)
	return err
}

func applySelfUpdate(l *loading, v string) (err error) {
	l.cfg.SelfUpdate, err = parseBool(v)
	return err
}

func parseBool(v string) (bool, error) {
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%q is not true or false", v)
	}
	return b, nil
}

func applyJitter(l *loading, v string) error {
	d, err := parseDuration(v)
	if err != nil {
		return err
	}
	l.cfg.ScheduleJitter = d
	return nil
}

func applyStateDir(l *loading, v string) error {
	l.cfg.StateDir = l.resolve(v)
	l.show(l.cfg.StateDir)
	return nil
}

func applyAdminAddr(l *loading, v string) error {
	addr, err := hostPort(v)
	l.cfg.AdminAddr = addr
	return err
}

func hostPort(v string) (string, error) {
	_, port, err := net.SplitHostPort(v)
	if err != nil {
		return "", fmt.Errorf("%q is not host:port: %w", v, unwrapAddrError(err))
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return "", fmt.Errorf("%q: the port must be a number from 0 to 65535", v)
	}
	return v, nil
}

// unwrapAddrError drops the address net repeats in its message.
func unwrapAddrError(err error) error {
	var ae *net.AddrError
	if errors.As(err, &ae) {
		return errors.New(ae.Err)
	}
	return err
}

func applyDomain(l *loading, v string) error {
	v = strings.TrimSuffix(strings.ToLower(v), ".")
	if v != "" && !dnsName.MatchString(v) {
		return fmt.Errorf("%q is not a DNS name", v)
	}
	l.cfg.Domain = v
	return nil
}

// dnsName is a host name of dot-separated labels, each 1 to 63 of a-z, 0-9
// and inner hyphens.
var dnsName = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

func applyPrimaryService(l *loading, v string) error {
	if v != "" && !serviceName.MatchString(v) {
		return fmt.Errorf("%q is not a compose service name", v)
	}
	l.cfg.PrimaryService = v
	return nil
}

// serviceName is the compose specification's rule for service names.
var serviceName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

func applyHTTPAddr(l *loading, v string) error {
	addr, err := hostPort(v)
	l.cfg.HTTPAddr = addr
	return err
}

func applyHTTPSAddr(l *loading, v string) error {
	addr, err := hostPort(v)
	l.cfg.HTTPSAddr = addr
	return err
}

func applyUpstreamNetwork(l *loading, v string) error {
	if v != "" && !serviceName.MatchString(v) {
		return fmt.Errorf("%q is not a Docker network name", v)
	}
	l.cfg.UpstreamNetwork = v
	return nil
}

func applyACMEEmail(l *loading, v string) error {
	if v != "" {
		if _, err := mail.ParseAddress(v); err != nil {
			return fmt.Errorf("%q is not an e-mail address", v)
		}
	}
	l.cfg.ACMEEmail = v
	return nil
}

func applyACMECA(l *loading, v string) error {
	u, err := url.Parse(v)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("%q is not an https:// URL", v)
	}
	l.cfg.ACMECA = v
	return nil
}

func applyDrainTimeout(l *loading, v string) error {
	d, err := parseDuration(v)
	l.cfg.DrainTimeout = d
	return err
}

func applyPreviewBranches(l *loading, v string) error {
	globs := splitList(v)
	for _, g := range globs {
		if _, err := path.Match(g, ""); err != nil {
			return fmt.Errorf("bad glob %q", g)
		}
	}
	l.cfg.PreviewBranches = globs
	return nil
}

func applyPreviewDomain(l *loading, v string) error {
	v = strings.TrimSuffix(strings.ToLower(v), ".")
	if v != "" && !dnsName.MatchString(v) {
		return fmt.Errorf("%q is not a DNS name", v)
	}
	l.cfg.PreviewDomain = v
	return nil
}

func applyPreviewInherit(l *loading, v string) error {
	keys, err := preview.ParseInherit(v)
	l.cfg.PreviewInherit = keys
	return err
}

func applyPreviewIdle(l *loading, v string) error {
	d, err := parseDuration(v)
	l.cfg.PreviewIdle = d
	return err
}

func applyPreviewTTL(l *loading, v string) error {
	d, err := parseDuration(v)
	l.cfg.PreviewTTL = d
	return err
}

func applyPreviewMaxRunning(l *loading, v string) error {
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return fmt.Errorf("%q is not a number of previews (0 for no cap)", v)
	}
	l.cfg.PreviewMaxRunning = n
	return nil
}

func applyWakeTimeout(l *loading, v string) error {
	d, err := parseDuration(v)
	if err == nil && d == 0 {
		err = errors.New("must be more than 0")
	}
	l.cfg.WakeTimeout = d
	return err
}

func applyPreviewAuth(l *loading, v string) error {
	if v == "" {
		return nil
	}
	auth, err := proxy.ParseBasicAuth(v)
	l.cfg.PreviewAuth = auth
	return err
}

func applyMaxBuilds(l *loading, v string) error {
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return fmt.Errorf("%q is not a number of builds (at least 1)", v)
	}
	l.cfg.MaxBuilds = n
	return nil
}

func applyPreviewCPUs(l *loading, v string) error {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 0 {
		return fmt.Errorf("%q is not a number of CPUs, like 0.5 or 2", v)
	}
	l.cfg.PreviewCPUs = f
	return nil
}

func applyPreviewMemory(l *loading, v string) error {
	if v == "0" {
		l.cfg.PreviewMemory = 0
		return nil
	}
	b, err := units.RAMInBytes(v)
	if err != nil || b < 0 {
		return fmt.Errorf("%q is not a size, like 512m or 1g", v)
	}
	l.cfg.PreviewMemory = b
	return nil
}

func applyLogFormat(l *loading, v string) error {
	if v != "text" && v != "json" {
		return fmt.Errorf("%q: must be text or json", v)
	}
	l.cfg.LogFormat = v
	return nil
}

func applyLogLevel(l *loading, v string) error {
	levels := map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError}
	level, ok := levels[strings.ToLower(v)]
	if !ok {
		return fmt.Errorf("%q: must be debug, info, warn or error", v)
	}
	l.cfg.LogLevel = level
	return nil
}

func applyAPIToken(l *loading, v string) error {
	secret, err := longSecret(v)
	l.cfg.APIToken = secret
	return err
}

func applyWebhookSecret(l *loading, v string) error {
	secret, err := longSecret(v)
	l.cfg.WebhookSecret = secret
	return err
}

// longSecret refuses a secret short enough to be guessed; empty is allowed
// and turns its feature off.
func longSecret(v string) (Secret, error) {
	if v != "" && len(v) < 16 {
		return "", fmt.Errorf("must be at least 16 characters (try `openssl rand -hex 32`)")
	}
	return Secret(v), nil
}

func applyAdminURL(l *loading, v string) error {
	if v != "" {
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%q is not an http:// or https:// URL", v)
		}
	}
	l.cfg.AdminURL = strings.TrimSuffix(v, "/")
	return nil
}

func applyAdminHost(l *loading, v string) error {
	v = strings.TrimSuffix(strings.ToLower(v), ".")
	if v != "" && !dnsName.MatchString(v) {
		return fmt.Errorf("%q is not a DNS name", v)
	}
	l.cfg.AdminHost = v
	return nil
}

func applyGitToken(l *loading, v string) error {
	l.cfg.GitToken = Secret(v)
	return nil
}

func applyGitSSHKey(l *loading, v string) error {
	file, err := l.optionalFile(v)
	l.cfg.GitSSHKey = file
	return err
}

func applyGitKnownHosts(l *loading, v string) error {
	file, err := l.optionalFile(v)
	l.cfg.GitKnownHosts = file
	return err
}

func applyKeepCheckouts(l *loading, v string) error {
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return fmt.Errorf("%q: must be a whole number of at least 1", v)
	}
	l.cfg.KeepCheckouts = n
	return nil
}

func applyHealthTimeout(l *loading, v string) error {
	d, err := parseDuration(v)
	if err == nil && d == 0 {
		err = errors.New("must be more than 0")
	}
	l.cfg.HealthTimeout = d
	return err
}

func parseDuration(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (write it like 30s, 5m or 1h30m)", v)
	}
	if d < 0 {
		return 0, fmt.Errorf("%q: must not be negative", v)
	}
	return d, nil
}

// splitList splits a comma-separated value, ignoring spaces and empty items.
func splitList(v string) []string {
	var items []string
	for item := range strings.SplitSeq(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			items = append(items, item)
		}
	}
	return items
}

// requireLocal accepts a clean relative path that stays inside the directory
// it is relative to.
func requireLocal(p string) error {
	if !filepath.IsLocal(p) {
		return fmt.Errorf("%q must be a relative path inside the repository", p)
	}
	if clean := filepath.Clean(p); clean != p {
		return fmt.Errorf("%q is not a clean path (write %q)", p, clean)
	}
	return nil
}

func requireDir(dir string) error {
	info, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("%s: %w", dir, pathCause(err))
	}
	if !info.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	return nil
}

// optionalFile resolves v against the file's directory and checks that it
// is an existing regular file; empty means not set.
func (l *loading) optionalFile(v string) (string, error) {
	if v == "" {
		return "", nil
	}
	file := l.resolve(v)
	l.show(file)
	info, err := os.Stat(file)
	if err != nil {
		return file, fmt.Errorf("%s: %w", file, pathCause(err))
	}
	if !info.Mode().IsRegular() {
		return file, fmt.Errorf("%s is not a regular file", file)
	}
	return file, nil
}

// pathCause drops the path that *fs.PathError repeats in its message.
func pathCause(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
