package registry_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/prometheus/client_golang/prometheus"

	"hawser.dev/hawser/reconciler/registrytest"
	"hawser.dev/hawser/registry"
)

// The benchmarks of issue 3 (results in bench/README.md): registry requests per image
// and time per tick for 50 followed images against registrytest's
// in-process registry, once with a token server and once anonymous. The
// images are random (go-containerregistry's random.Image) and pushed before
// the counting starts; no Docker engine is involved.
//
//	go test -run '^$' -bench . -benchmem -count 5 ./registry/

// benchImages is how many followed images one tick checks.
const benchImages = 50

// The login of the token-auth registry.
const (
	benchUser     = "bench"
	benchPassword = "bench-secret"
)

// benchRegistry is a registry holding benchImages followed images, each
// pushed once, and the checks the reconciler would make of them.
type benchRegistry struct {
	reg    *registrytest.Registry
	auth   registry.Credentials
	checks []registry.Check
	want   []string // the remote digest of each check
}

// BenchmarkCheckTick50 measures one tick (a Check of each of 50 images, in
// turn, as the reconciler makes them) by hawser's Checker with its tokens
// and connections warm, against the baseline of watchtower's request
// pattern: a new transport and no token kept, per check.
func BenchmarkCheckTick50(b *testing.B) {
	registries := []struct {
		name string
		reg  *registrytest.Registry
		auth func(host string) registry.Credentials
	}{
		{"token", registrytest.StartWithAuth(b, benchUser, benchPassword), func(host string) registry.Credentials {
			return registry.Credentials{host: {Username: benchUser, Password: benchPassword}}
		}},
		{"anonymous", registrytest.Start(b), func(string) registry.Credentials { return registry.Credentials{} }},
	}
	for _, r := range registries {
		br := pushFollowed(b, r.reg, r.auth(r.reg.Host()))
		b.Run(r.name+"/hawser", func(b *testing.B) { benchHawserTicks(b, br) })
		b.Run(r.name+"/baseline", func(b *testing.B) { benchBaselineTicks(b, br) })
	}
}

// BenchmarkCheckTick50OtherPlatformChanged measures ticks over 50
// multi-platform images whose index changed, after hawser first saw it, only
// in its arm64 manifest: no update, and one HEAD per image once the new
// index is known. Reported besides: the requests of the first tick after the
// change, which fetches each new index once to learn that the amd64
// manifest is the same.
func BenchmarkCheckTick50OtherPlatformChanged(b *testing.B) {
	reg := registrytest.StartWithAuth(b, benchUser, benchPassword)
	br := &benchRegistry{reg: reg, auth: registry.Credentials{reg.Host(): {Username: benchUser, Password: benchPassword}}}
	amd64 := make([]v1.Image, benchImages)
	for i := range benchImages {
		repo := fmt.Sprintf("multi-%02d", i)
		amd64[i] = randomImage(b)
		first := pushIndex(b, br, repo, amd64[i], randomImage(b))
		br.checks = append(br.checks, registry.Check{Ref: reg.Ref(repo, "stable"), LocalRepoDigests: []string{reg.RepoDigest(repo, first)}})
	}
	c := newBenchChecker(b, br.auth)
	tick(b, c, br) // the images as deployed: learns each index's amd64 manifest
	for i := range benchImages {
		br.want = append(br.want, pushIndex(b, br, fmt.Sprintf("multi-%02d", i), amd64[i], randomImage(b)))
	}

	before := countRequests(reg)
	tick(b, c, br)
	first := countRequests(reg).since(before)

	before = countRequests(reg)
	for b.Loop() {
		tick(b, c, br)
	}
	countRequests(reg).since(before).report(b)
	b.ReportMetric(float64(first.all)/benchImages, "req/image-first-tick")
}

// benchHawserTicks runs ticks with one Checker, as hawser serve wires it.
// The first tick, which pings the registry and fetches a token per
// repository, is left out of the figures but for its own request count.
func benchHawserTicks(b *testing.B, br *benchRegistry) {
	c := newBenchChecker(b, br.auth)
	before := countRequests(br.reg)
	tick(b, c, br)
	first := countRequests(br.reg).since(before)

	before = countRequests(br.reg)
	for b.Loop() {
		tick(b, c, br)
	}
	countRequests(br.reg).since(before).report(b)
	b.ReportMetric(float64(first.all)/benchImages, "req/image-first-tick")
}

// benchBaselineTicks runs ticks the way watchtower checks, each check on
// its own: see baselineHead.
func benchBaselineTicks(b *testing.B, br *benchRegistry) {
	refs := make([]name.Reference, len(br.checks))
	for i, chk := range br.checks {
		ref, err := name.ParseReference(chk.Ref)
		if err != nil {
			b.Fatal(err)
		}
		refs[i] = ref
	}
	baselineTick(b, refs, br) // only to treat both sides alike; it warms nothing
	before := countRequests(br.reg)
	for b.Loop() {
		baselineTick(b, refs, br)
	}
	countRequests(br.reg).since(before).report(b)
}

// pushFollowed pushes benchImages repositories with one tag each to reg and
// returns the checks of images deployed from them.
func pushFollowed(b *testing.B, reg *registrytest.Registry, auth registry.Credentials) *benchRegistry {
	b.Helper()
	br := &benchRegistry{reg: reg, auth: auth}
	for i := range benchImages {
		repo := fmt.Sprintf("app-%02d", i)
		digest := pushImage(b, br, repo, randomImage(b))
		br.checks = append(br.checks, registry.Check{Ref: reg.Ref(repo, "stable"), LocalRepoDigests: []string{reg.RepoDigest(repo, digest)}})
		br.want = append(br.want, digest)
	}
	return br
}

// pushImage pushes img as repo:stable through the registry's public server
// and returns its digest. registrytest's own pushes build a busybox image
// each, some 50 ms; a HEAD does not care what the image holds.
func pushImage(b *testing.B, br *benchRegistry, repo string, img v1.Image) string {
	b.Helper()
	ref := publicRef(b, br, repo)
	if err := remote.Write(ref, img, remote.WithContext(b.Context()), remote.WithAuthFromKeychain(br.auth)); err != nil {
		b.Fatalf("push %s: %v", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		b.Fatal(err)
	}
	return d.String()
}

// pushIndex pushes a Docker manifest list of amd64 and arm64 for linux as
// repo:stable, as pushImage does, and returns its digest.
func pushIndex(b *testing.B, br *benchRegistry, repo string, amd64, arm64 v1.Image) string {
	b.Helper()
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.DockerManifestList),
		mutate.IndexAddendum{Add: amd64, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm64, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
	)
	ref := publicRef(b, br, repo)
	if err := remote.WriteIndex(ref, idx, remote.WithContext(b.Context()), remote.WithAuthFromKeychain(br.auth)); err != nil {
		b.Fatalf("push index %s: %v", ref, err)
	}
	d, err := idx.Digest()
	if err != nil {
		b.Fatal(err)
	}
	return d.String()
}

func publicRef(b *testing.B, br *benchRegistry, repo string) name.Reference {
	b.Helper()
	ref, err := name.ParseReference(br.reg.Ref(repo, "stable"))
	if err != nil {
		b.Fatal(err)
	}
	return ref
}

func randomImage(b *testing.B) v1.Image {
	b.Helper()
	img, err := random.Image(1024, 2)
	if err != nil {
		b.Fatal(err)
	}
	return img
}

// newBenchChecker returns a Checker wired as hawser serve wires it (Seen
// file, metrics, logger at info), for linux/amd64 and with only auth as
// credentials.
func newBenchChecker(b *testing.B, auth registry.Credentials) *registry.Checker {
	b.Helper()
	seen, err := registry.OpenSeenFile(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	c, err := registry.New(registry.Options{
		Auth:       auth,
		Keychain:   authn.NewMultiKeychain(), // not the host's Docker config
		Seen:       seen,
		Registerer: prometheus.NewRegistry(),
		Platform:   "linux/amd64",
		Log:        slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// tick checks every image in turn, as one reconcile does, and fails on any
// error or update: nothing was pushed that the local images lack.
func tick(b *testing.B, c *registry.Checker, br *benchRegistry) {
	for i, chk := range br.checks {
		res, err := c.Check(b.Context(), chk)
		if err != nil {
			b.Fatal(err)
		}
		if res.Update {
			b.Fatalf("%s: want up to date, got %+v", chk.Ref, res)
		}
		if br.want != nil && res.Remote != br.want[i] {
			b.Fatalf("%s: want remote %s, got %+v", chk.Ref, br.want[i], res)
		}
	}
}

// baselineTick checks every image in turn as baselineHead does and compares
// the digest with the local one, as watchtower's CompareDigest does.
func baselineTick(b *testing.B, refs []name.Reference, br *benchRegistry) {
	for i, ref := range refs {
		digest, err := baselineHead(b.Context(), ref, br.auth)
		if err != nil {
			b.Fatal(err)
		}
		if digest != br.want[i] || digest != localDigest(br.checks[i]) {
			b.Fatalf("%s: want %s, got %s", ref, br.want[i], digest)
		}
	}
}

// baselineHead is the baseline: the request pattern of watchtower's digest
// check (pkg/registry/digest and auth), made with go-containerregistry. Each
// check gets a new http.Transport, so a new connection, and keeps no token:
// it pings /v2/ for the challenge, fetches a token when the challenge asks
// for one, then sends the HEAD. Unlike watchtower it closes its idle
// connection afterwards, so that thousands of checks do not run out of file
// descriptors.
func baselineHead(ctx context.Context, ref name.Reference, kc authn.Keychain) (string, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	defer tr.CloseIdleConnections()
	desc, err := remote.Head(ref, remote.WithContext(ctx), remote.WithTransport(plainOnly{tr}), remote.WithAuthFromKeychain(kc))
	if err != nil {
		return "", err
	}
	return desc.Digest.String(), nil
}

// plainOnly fails HTTPS requests at once. For a loopback registry
// go-containerregistry races an HTTPS ping against the plain one; against
// registrytest's plain server that TLS attempt about doubled the baseline's
// time (and hawser's Checker pays it only in its first tick). Watchtower
// speaks HTTPS only, so the baseline is spared an attempt it would not make.
type plainOnly struct{ inner http.RoundTripper }

// RoundTrip implements http.RoundTripper.
func (p plainOnly) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "https" {
		if req.Body != nil {
			req.Body.Close() // nothing was sent
		}
		return nil, fmt.Errorf("baseline: no HTTPS to %s", req.URL.Host)
	}
	return p.inner.RoundTrip(req)
}

// localDigest is the digest of chk's one local repo digest.
func localDigest(chk registry.Check) string {
	d, err := name.NewDigest(chk.LocalRepoDigests[0])
	if err != nil {
		panic(err) // the benchmark wrote it
	}
	return d.DigestStr()
}

// requestCount is how many requests the registry's public server had: all
// of them, and the HEADs among them.
type requestCount struct{ all, heads int }

func countRequests(reg *registrytest.Registry) requestCount {
	return requestCount{all: len(reg.Requests()), heads: reg.Count(http.MethodHead, "")}
}

func (n requestCount) since(before requestCount) requestCount {
	return requestCount{all: n.all - before.all, heads: n.heads - before.heads}
}

// report gives n, made over b.N ticks, per image checked.
func (n requestCount) report(b *testing.B) {
	checks := float64(b.N * benchImages)
	b.ReportMetric(float64(n.all)/checks, "req/image")
	b.ReportMetric(float64(n.heads)/checks, "HEAD/image")
	b.ReportMetric(float64(n.all-n.heads)/checks, "other/image")
}
