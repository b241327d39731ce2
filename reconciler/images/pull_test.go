package images_test

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"

	"hawser.dev/hawser/reconciler/dockertest"
	"hawser.dev/hawser/reconciler/images"
	"hawser.dev/hawser/reconciler/registrytest"
	"hawser.dev/hawser/registry"
)

func TestPullFetchesTheNewDigestOfAPresentTag(t *testing.T) {
	// The pulled images carry the test's label; they go after the containers.
	dockertest.Cleanup(t, dockertest.Client(t), t.Name())
	e := newEnv(t)
	reg := registrytest.Start(t)
	v1 := reg.PushBusybox(t, "app", "stable", "one")
	ref := reg.Ref("app", "stable")
	p := e.project(map[string]string{"compose.yaml": "services:\n  app:\n    image: " + ref + "\n"})

	first, err := e.ensure(p, "app")
	if err != nil {
		t.Fatal(err)
	}
	if !first.Pulled || first.Ref != ref || !has(first.RepoDigests, reg.RepoDigest("app", v1)) {
		t.Fatalf("first = %+v, want %s pulled with repo digest %s", first, ref, v1)
	}
	v2 := reg.PushBusybox(t, "app", "stable", "two")
	present, err := e.ensure(p, "app")
	if err != nil {
		t.Fatal(err)
	}
	if present.Pulled || present.ID != first.ID || !has(present.RepoDigests, reg.RepoDigest("app", v1)) {
		t.Errorf("ensure of the present tag = %+v, want the first image %s with its repo digests, not pulled", present, first.ID)
	}

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	pulled, err := e.images.Pull(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if !pulled.Pulled || pulled.Ref != ref || pulled.ID == first.ID || !has(pulled.RepoDigests, reg.RepoDigest("app", v2)) {
		t.Errorf("Pull = %+v, want a new image with repo digest %s", pulled, v2)
	}
	if n := e.docker.pulls.Load(); n != 2 {
		t.Errorf("%d pulls, want 2", n)
	}
	inspected, err := e.images.Inspect(ctx, ref)
	if err != nil || inspected.ID != pulled.ID || !slices.Equal(inspected.RepoDigests, pulled.RepoDigests) {
		t.Errorf("Inspect = %+v, %v; want the pulled image %+v", inspected, err, pulled)
	}
	if code := e.run(ref, "grep", "-qx", "two", "/marker"); code != 0 {
		t.Errorf("the tag does not run the pulled image: grep two /marker exited %d", code)
	}
}

func TestPullUsesTheRegistryAuth(t *testing.T) {
	dockertest.Cleanup(t, dockertest.Client(t), t.Name())
	e := newEnv(t)
	reg := registrytest.StartWithAuth(t, "deploy", "s3cret")
	digest := reg.PushBusybox(t, "private", "v1", "one")
	ref := reg.Ref("private", "v1")
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	if _, err := e.images.Pull(ctx, ref); err == nil || !strings.Contains(err.Error(), "pull "+ref) {
		t.Fatalf("anonymous pull: error = %v, want a failed pull of %s", err, ref)
	}
	checker, err := registry.New(registry.Options{
		Auth:     registry.Credentials{reg.Host(): {Username: "deploy", Password: "s3cret"}},
		Keychain: authn.NewMultiKeychain(), // not the host's Docker config
	})
	if err != nil {
		t.Fatal(err)
	}
	var asked []string
	auth := func(ctx context.Context, ref string) (string, error) {
		asked = append(asked, ref)
		return checker.PullAuth(ctx, ref)
	}
	withAuth := images.New(e.c, t.TempDir(), slog.New(slog.NewTextHandler(t.Output(), nil)), images.WithRegistryAuth(auth))
	img, err := withAuth.Pull(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if !has(img.RepoDigests, reg.RepoDigest("private", digest)) || len(asked) != 1 || asked[0] != ref {
		t.Errorf("Pull = %+v after auth asked for %q; want repo digest %s and one ask for %s", img, asked, digest, ref)
	}
}

func TestInspectOfAMissingImageIsEmptyNotAnError(t *testing.T) {
	e := newEnv(t)
	ref := "127.0.0.1:1/hawser/" + e.name + ":1"
	img, err := e.images.Inspect(t.Context(), ref)
	if err != nil || img.ID != "" || img.RepoDigests != nil || img.Ref != ref {
		t.Fatalf("Inspect = %+v, %v; want %s without an ID and no error", img, err, ref)
	}
}
