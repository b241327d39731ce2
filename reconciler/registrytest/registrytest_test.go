package registrytest_test

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/moby/moby/api/pkg/authconfig"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/registry"
	"github.com/moby/moby/client"

	"hawser.dev/hawser/reconciler/dockertest"
	"hawser.dev/hawser/reconciler/registrytest"
)

// pull pulls ref into the engine with the encoded auth ("" is anonymous).
func pull(t *testing.T, c *client.Client, ref, auth string) error {
	t.Helper()
	if auth == "" {
		auth = encodeAuth(t, registry.AuthConfig{})
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	res, err := c.ImagePull(ctx, ref, client.ImagePullOptions{RegistryAuth: auth})
	if err != nil {
		return err
	}
	return res.Wait(ctx)
}

func encodeAuth(t *testing.T, ac registry.AuthConfig) string {
	t.Helper()
	s, err := authconfig.Encode(ac)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// run runs cmd in a container of ref and returns its exit code.
func run(t *testing.T, c *client.Client, ref string, cmd ...string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	created, err := c.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config:     &container.Config{Image: ref, Cmd: cmd, Labels: map[string]string{dockertest.Label: t.Name()}},
		HostConfig: &container.HostConfig{NetworkMode: "none"},
	})
	if err != nil {
		t.Fatalf("create container of %s: %v", ref, err)
	}
	wait := c.ContainerWait(ctx, created.ID, client.ContainerWaitOptions{Condition: container.WaitConditionNextExit})
	if _, err := c.ContainerStart(ctx, created.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatalf("start container of %s: %v", ref, err)
	}
	select {
	case res := <-wait.Result:
		return res.StatusCode
	case err := <-wait.Error:
		t.Fatalf("wait for container of %s: %v", ref, err)
	}
	return -1
}

func repoDigests(t *testing.T, c *client.Client, ref string) []string {
	t.Helper()
	res, err := c.ImageInspect(t.Context(), ref)
	if err != nil {
		t.Fatalf("inspect %s: %v", ref, err)
	}
	return res.RepoDigests
}

func TestPushedBusyboxRunsInTheEngineWithItsMarker(t *testing.T) {
	c := dockertest.Client(t)
	dockertest.Cleanup(t, c, t.Name())
	r := registrytest.Start(t)
	one := r.PushBusybox(t, "app", "v1", "one")
	if two := r.PushBusybox(t, "app", "v2", "two"); two == one {
		t.Errorf("markers one and two pushed the same digest %s", one)
	}
	ref := r.Ref("app", "v1")
	if err := pull(t, c, ref, ""); err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	if got, want := repoDigests(t, c, ref), r.RepoDigest("app", one); !slices.Contains(got, want) {
		t.Errorf("RepoDigests = %v, want %s among them", got, want)
	}
	if code := run(t, c, ref, "grep", "-qx", "one", "/marker"); code != 0 {
		t.Errorf("grep one /marker exited %d, want 0", code)
	}
	if code := run(t, c, ref, "grep", "-qx", "two", "/marker"); code == 0 {
		t.Error("grep two /marker matched in the image with marker one")
	}
}

func TestIndexChangesOnlyItsDigestWhenOnlyArm64Changes(t *testing.T) {
	c := dockertest.Client(t)
	dockertest.Cleanup(t, c, t.Name())
	r := registrytest.Start(t)
	first := r.PushIndex(t, "multi", "v1", "amd", "arm-1")
	firstAMD := platformDigest(t, r.Ref("multi", "v1"), "amd64")
	second := r.PushIndex(t, "multi", "v1", "amd", "arm-2")
	if first == second {
		t.Fatalf("index digest %s did not change with the arm64 marker", first)
	}
	if got := platformDigest(t, r.Ref("multi", "v1"), "amd64"); got != firstAMD {
		t.Errorf("amd64 manifest changed from %s to %s with only the arm64 marker", firstAMD, got)
	}
	ref := r.Ref("multi", "v1")
	if err := pull(t, c, ref, ""); err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	if got, want := repoDigests(t, c, ref), r.RepoDigest("multi", second); !slices.Contains(got, want) {
		t.Errorf("RepoDigests = %v, want the index digest %s among them", got, want)
	}
	if code := run(t, c, ref, "grep", "-qx", "amd", "/marker"); code != 0 {
		t.Errorf("grep amd /marker exited %d, want 0", code)
	}
}

// platformDigest is the digest of arch's manifest in the index at ref.
func platformDigest(t *testing.T, ref, arch string) string {
	t.Helper()
	idx, err := remote.Index(parse(t, ref), remote.WithContext(t.Context()))
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range m.Manifests {
		if d.Platform != nil && d.Platform.Architecture == arch {
			return d.Digest.String()
		}
	}
	t.Fatalf("index %s has no %s manifest", ref, arch)
	return ""
}

func parse(t *testing.T, ref string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestPushTagsListsEveryTagWithItsOwnDigest(t *testing.T) {
	r := registrytest.Start(t)
	tags := []string{"1.0.0", "1.2.0", "1.10.1", "2.0.0"}
	digests := r.PushTags(t, "semver", tags...)
	listed, err := remote.List(parse(t, r.Ref("semver", "x")).Context(), remote.WithContext(t.Context()))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(listed)
	if want := slices.Sorted(slices.Values(tags)); !slices.Equal(listed, want) {
		t.Errorf("tags = %v, want %v", listed, want)
	}
	if len(slices.Compact(slices.Sorted(slices.Values(digests)))) != len(tags) {
		t.Errorf("digests %v are not one per tag", digests)
	}
}

func TestRequestsAreCountedAndRateLimitAnswers429(t *testing.T) {
	r := registrytest.Start(t)
	r.PushBusybox(t, "app", "v1", "one")
	if n := r.Count("HEAD", ""); n != 0 {
		t.Errorf("%d HEAD requests before any check, want 0 (pushes are not counted)", n)
	}
	url := "http://" + r.Host() + "/v2/app/manifests/v1"
	r.RateLimit(1, 7*time.Second)
	if resp := head(t, url); resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "7" {
		t.Errorf("rate-limited answer: %s, Retry-After %q; want 429 and 7", resp.Status, resp.Header.Get("Retry-After"))
	}
	if resp := head(t, url); resp.StatusCode != http.StatusOK {
		t.Errorf("answer after the rate limit: %s, want 200", resp.Status)
	}
	if n := r.Count("HEAD", "/manifests/v1"); n != 2 {
		t.Errorf("Count(HEAD, /manifests/v1) = %d, want 2; requests: %v", n, r.Requests())
	}
	if n := r.Count("GET", "/manifests/v1"); n != 0 {
		t.Errorf("Count(GET, /manifests/v1) = %d, want 0", n)
	}
}

func TestStoppedRegistryRefusesRequests(t *testing.T) {
	r := registrytest.Start(t)
	r.PushBusybox(t, "app", "v1", "one")
	r.Stop()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodHead, "http://"+r.Host()+"/v2/app/manifests/v1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("stopped registry answered %s", resp.Status)
	}
}

func head(t *testing.T, url string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodHead, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func TestEnginePullsOnlyWithTheLogin(t *testing.T) {
	c := dockertest.Client(t)
	for _, tc := range []struct {
		name   string
		start  func(testing.TB, string, string) *registrytest.Registry
		tokens bool
	}{
		{"token server", registrytest.StartWithAuth, true},
		{"basic auth", registrytest.StartWithBasicAuth, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dockertest.Cleanup(t, c, t.Name())
			r := tc.start(t, "alice", "s3cret")
			digest := r.PushBusybox(t, "private", "v1", "secret-marker")
			ref := r.Ref("private", "v1")
			if err := pull(t, c, ref, ""); err == nil {
				t.Fatalf("anonymous pull of %s succeeded", ref)
			}
			wrong := encodeAuth(t, registry.AuthConfig{Username: "alice", Password: "wrong", ServerAddress: r.Host()})
			if err := pull(t, c, ref, wrong); err == nil {
				t.Fatalf("pull of %s with a wrong password succeeded", ref)
			}
			right := encodeAuth(t, registry.AuthConfig{Username: "alice", Password: "s3cret", ServerAddress: r.Host()})
			if err := pull(t, c, ref, right); err != nil {
				t.Fatalf("pull of %s with the login: %v", ref, err)
			}
			if got, want := repoDigests(t, c, ref), r.RepoDigest("private", digest); !slices.Contains(got, want) {
				t.Errorf("RepoDigests = %v, want %s among them", got, want)
			}
			if asked := r.Count("GET", "/token") > 0; asked != tc.tokens {
				t.Errorf("token server asked: %v, want %v; requests: %v", asked, tc.tokens, r.Requests())
			}
		})
	}
}

func TestGoContainerRegistryGetsATokenAndRenewsIt(t *testing.T) {
	r := registrytest.StartWithAuth(t, "alice", "s3cret")
	r.PushBusybox(t, "private", "v1", "one")
	ref := parse(t, r.Ref("private", "v1"))
	login := remote.WithAuth(&authn.Basic{Username: "alice", Password: "s3cret"})
	if _, err := remote.Head(ref, remote.WithContext(t.Context())); err == nil {
		t.Fatal("anonymous HEAD succeeded")
	}
	for i := range 2 {
		if _, err := remote.Head(ref, login, remote.WithContext(t.Context())); err != nil {
			t.Fatalf("HEAD %d with the login: %v", i, err)
		}
		r.ExpireTokens()
	}
	if n := r.Count("GET", "/token"); n < 2 {
		t.Errorf("%d token requests, want one per expired token; requests: %v", n, r.Requests())
	}
}
