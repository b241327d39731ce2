// Package registry asks image registries whether a followed tag has moved,
// the way watchtower does but without its faults: one HEAD request per image
// and check once tokens are cached, credentials from the Docker config (and
// HAWSER_REGISTRY_AUTH), TLS always verified, 429 answered with a back-off
// per registry, multi-platform images compared so that a change to another
// architecture is no update, and semver policies that move a service to a
// newer tag.
package registry

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/prometheus/client_golang/prometheus"
)

// defaultTimeout bounds one check when Options.Timeout is zero.
const defaultTimeout = 30 * time.Second

// Options configure a Checker. The zero value works: Docker config
// credentials, no insecure registries, memory-only Seen records, unexported
// metrics, linux on hawser's own architecture.
type Options struct {
	// Auth are the logins of HAWSER_REGISTRY_AUTH (see ParseCredentials);
	// they win over Keychain for their hosts.
	Auth Credentials
	// Keychain finds all other logins; nil means the Docker config and its
	// credential helpers, as the docker CLI finds them ($DOCKER_CONFIG or
	// ~/.docker/config.json).
	Keychain authn.Keychain
	// Insecure lists the registries (host[:port], see ParseInsecure) that may
	// be spoken to over plain HTTP besides loopback ones.
	Insecure []string
	// RootCAs verifies registry certificates; nil means the system pool.
	RootCAs *x509.CertPool
	// Seen keeps what checks found across restarts; nil keeps it in memory.
	Seen SeenStore
	// Registerer receives the registry metrics; nil leaves them unregistered.
	Registerer prometheus.Registerer
	// Platform is the Docker engine's platform, "os/arch[/variant]"; empty
	// means linux on the architecture hawser was built for.
	Platform string
	// Timeout bounds one check; zero means 30 seconds.
	Timeout time.Duration
	// Now is the clock of back-offs and records; nil means time.Now.
	Now func() time.Time
	// Log receives rate-limit warnings and per-check debug lines; nil
	// discards them.
	Log *slog.Logger
}

// Checker checks images against their registries. It is safe for concurrent
// use; one Checker should serve the whole daemon, so that connections and
// tokens are shared by every check.
type Checker struct {
	override  Credentials
	docker    authn.Keychain
	keychain  authn.Keychain
	plain     plainHTTP
	transport http.RoundTripper
	limits    *limiter
	seen      SeenStore
	metrics   *metrics
	platform  v1.Platform
	timeout   time.Duration
	now       func() time.Time
	log       *slog.Logger

	mu      sync.Mutex
	pullers map[string]*remote.Puller // by repository, each caching its token
}

// New returns a Checker configured by opts.
func New(opts Options) (*Checker, error) {
	platform, err := parsePlatform(opts.Platform)
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	c := &Checker{
		override: opts.Auth,
		docker:   opts.Keychain,
		plain:    plainHTTP{listed: lower(opts.Insecure)},
		seen:     opts.Seen,
		metrics:  m,
		platform: platform,
		timeout:  opts.Timeout,
		now:      opts.Now,
		log:      opts.Log,
		pullers:  map[string]*remote.Puller{},
	}
	c.setDefaults()
	c.keychain = authn.NewMultiKeychain(c.override, c.docker)
	c.limits = newLimiter(c.now, c.log, m)
	c.transport = rateGate{limits: c.limits, inner: httpGuard{policy: c.plain, inner: newHTTPTransport(opts.RootCAs)}}
	return c, nil
}

func (c *Checker) setDefaults() {
	if c.override == nil {
		c.override = Credentials{}
	}
	if c.docker == nil {
		c.docker = authn.DefaultKeychain
	}
	if c.seen == nil {
		c.seen = &seenMemory{records: map[string]Seen{}}
	}
	if c.timeout <= 0 {
		c.timeout = defaultTimeout
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
}

func parsePlatform(s string) (v1.Platform, error) {
	if s == "" {
		s = "linux/" + runtime.GOARCH
	}
	p, err := v1.ParsePlatform(s)
	if err != nil {
		return v1.Platform{}, fmt.Errorf("platform %q: %w", s, err)
	}
	return *p, nil
}

func lower(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strings.ToLower(s)
	}
	return out
}

// Check is one image to check.
type Check struct {
	// Ref is the image reference as the compose file writes it.
	Ref string
	// Policy is the service's update policy; empty means PolicyDigest.
	Policy Policy
	// LocalRepoDigests are the local image's RepoDigests from the engine
	// ("host/repo@sha256:..."); empty when the image is not there.
	LocalRepoDigests []string
}

// Result is what a check found.
type Result struct {
	// Ref is the reference to run: Check.Ref, or the newer tag a semver
	// policy chose, written in the same style.
	Ref string
	// Remote is the digest the registry has for Ref: the index digest for a
	// multi-platform image. Empty when the registry was not asked.
	Remote string
	// Platform is the digest of the local platform's manifest in that
	// index, when it was looked at.
	Platform string
	// Local is the local repo digest Remote was found to match, or else the
	// first one of Ref's repository.
	Local string
	// Update is true when Ref should be pulled and its services recreated.
	Update bool
	// Reason says why, for status and logs.
	Reason string
	// Checked is when the check ran.
	Checked time.Time
}

// Check asks chk's registry whether chk.Ref has an update for the local
// image. Errors are a *RateLimitedError or *TransientError (see IsTransient)
// when the registry could not be asked; anything else (a bad reference,
// refused credentials, an unknown tag) needs a change to go away.
func (c *Checker) Check(ctx context.Context, chk Check) (Result, error) {
	res := Result{Ref: chk.Ref, Checked: c.now()}
	policy, err := ParsePolicy(string(chk.Policy))
	if err != nil {
		return res, fmt.Errorf("check %s: policy: %w", chk.Ref, err)
	}
	if policy == PolicyNone {
		res.Reason = "policy none"
		return res, nil
	}
	ref, err := c.parse(chk.Ref)
	if err != nil {
		return res, err
	}
	tag, ok := ref.(name.Tag)
	if !ok {
		res.Reason = "pinned by digest"
		return res, nil
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	res, err = c.check(ctx, chk, policy, tag, res)
	if err != nil {
		err = c.explain(ctx, tag.Context(), err)
	}
	c.observe(tag.RegistryStr(), res, err)
	if err != nil {
		return res, fmt.Errorf("check %s: %w", chk.Ref, err)
	}
	return res, nil
}

// parse reads ref; loopback and listed registries may use plain HTTP.
func (c *Checker) parse(ref string) (name.Reference, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("image reference %q: %w", ref, err)
	}
	if c.plain.allowed(r.Context().RegistryStr()) {
		return name.ParseReference(ref, name.Insecure)
	}
	return r, nil
}

// check asks the registry; the caller types the error.
func (c *Checker) check(ctx context.Context, chk Check, policy Policy, tag name.Tag, res Result) (Result, error) {
	if err := c.limits.blocked(tag.RegistryStr()); err != nil {
		return res, err
	}
	p, err := c.puller(tag.Context())
	if err != nil {
		return res, err
	}
	if policy.semverPolicy() {
		newest, err := c.newestTag(ctx, p, tag, policy)
		if err != nil {
			return res, err
		}
		if newest != tag.TagStr() {
			return c.moveTag(ctx, p, chk.Ref, policy, tag, newest, res)
		}
	}
	desc, err := p.Head(ctx, tag)
	if err != nil {
		return res, err
	}
	res.Remote = desc.Digest.String()
	v, err := c.compare(ctx, p, tag, *desc, chk.LocalRepoDigests)
	res.Update, res.Reason, res.Local, res.Platform = v.update, v.reason, v.local, v.platform
	return res, err
}

// newestTag lists tag's repository and returns the newest tag policy
// allows, which may be tag's own.
func (c *Checker) newestTag(ctx context.Context, p *remote.Puller, tag name.Tag, policy Policy) (string, error) {
	tags, err := p.List(ctx, tag.Context())
	if err != nil {
		return "", fmt.Errorf("list tags: %w", err)
	}
	return newestTag(tag.TagStr(), tags, policy)
}

// moveTag reports an update to the newer tag newest, written in the style
// of ref (the compose file's reference).
func (c *Checker) moveTag(ctx context.Context, p *remote.Puller, ref string, policy Policy, tag name.Tag, newest string, res Result) (Result, error) {
	desc, err := p.Head(ctx, tag.Context().Tag(newest))
	if err != nil {
		return res, err
	}
	res.Ref = strings.TrimSuffix(ref, tag.TagStr()) + newest
	res.Remote = desc.Digest.String()
	res.Update = true
	res.Reason = fmt.Sprintf("newer tag %s (policy %s)", newest, policy)
	return res, nil
}

// puller returns the puller of repo. A puller keeps the transport of its
// first request, and with it the bearer token, so steady-state checks are
// one HEAD each.
func (c *Checker) puller(repo name.Repository) (*remote.Puller, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.pullers[repo.Name()]; ok {
		return p, nil
	}
	p, err := remote.NewPuller(
		remote.WithTransport(c.transport),
		remote.WithAuthFromKeychain(c.keychain),
		remote.WithUserAgent("hawser"),
		// One attempt per check: the next tick is the retry, and a 429 must
		// reach the per-registry back-off rather than be retried into.
		remote.WithRetryBackoff(remote.Backoff{Steps: 1}),
		remote.WithRetryStatusCodes(),
	)
	if err != nil {
		return nil, fmt.Errorf("registry client: %w", err)
	}
	c.pullers[repo.Name()] = p
	return p, nil
}

// forget drops repo's puller, so the next check resolves credentials
// afresh (a `docker login` since, or a fixed HAWSER_REGISTRY_AUTH).
func (c *Checker) forget(repo name.Repository) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.pullers, repo.Name())
}

// explain types err for the caller: rate limited, transient, or refused
// credentials with where they came from (never the secret itself).
func (c *Checker) explain(ctx context.Context, repo name.Repository, err error) error {
	var rl *RateLimitedError
	switch {
	case errors.As(err, &rl):
		return err
	case isUnavailable(err):
		return &TransientError{Registry: repo.RegistryStr(), Err: err}
	case isAuthFailure(err):
		c.forget(repo)
		return fmt.Errorf("registry %s refused access to %s with %s: %w",
			repo.RegistryStr(), repo.RepositoryStr(), c.credentialSource(ctx, repo), err)
	}
	return err
}

func (c *Checker) observe(registry string, res Result, err error) {
	result := resultUpToDate
	var rl *RateLimitedError
	var te *TransientError
	switch {
	case errors.As(err, &rl):
		result = resultRateLimited
	case errors.As(err, &te):
		result = resultUnavailable
	case err != nil:
		result = resultError
	case res.Update:
		result = resultUpdate
	}
	c.metrics.checks.WithLabelValues(registry, result).Inc()
	c.metrics.duration.WithLabelValues(registry).Observe(c.now().Sub(res.Checked).Seconds())
	attrs := []any{"ref", res.Ref, "registry", registry, "result", result, "remote", res.Remote, "reason", res.Reason}
	if err != nil {
		attrs = append(attrs, "error", err)
	}
	c.log.Debug("image checked", attrs...)
}
