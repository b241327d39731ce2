package images_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"hawser.dev/hawser/reconciler/dockertest"
	"hawser.dev/hawser/reconciler/images"
	"hawser.dev/hawser/reconciler/registrytest"
)

const otherCommit = "fedcba9876543210fedcba9876543210fedcba98"

func TestPruneRemovesOnlyImagesNothingUsesOrKeeps(t *testing.T) {
	t.Parallel()
	// The pulled images carry the test's label; they go after the containers.
	dockertest.Cleanup(t, dockertest.Client(t), t.Name())
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	p := e.project(map[string]string{"compose.yaml": "services:\n  web:\n    build: .\n", "Dockerfile": "FROM hawser-test/busybox:1.36\n"})
	svc, err := p.GetService("web")
	if err != nil {
		t.Fatal(err)
	}
	used, err := e.images.Ensure(ctx, p, svc, commit)
	if err != nil {
		t.Fatal(err)
	}
	// The other commit changed the build: built images carry no commit,
	// so the same build would be the very same image.
	changed := e.project(map[string]string{"compose.yaml": "services:\n  web:\n    build: .\n", "Dockerfile": "FROM hawser-test/busybox:1.36\nENV CHANGED=1\n"})
	unused, err := e.images.Ensure(ctx, changed, changed.Services["web"], otherCommit)
	if err != nil {
		t.Fatal(err)
	}
	stopped := e.container(used.Ref, false, "true") // stopped containers count as users

	reg := registrytest.Start(t)
	pull := func(repo, marker string) images.Image {
		t.Helper()
		reg.PushBusybox(t, repo, "v1", marker)
		img, err := e.images.Pull(ctx, reg.Ref(repo, "v1"))
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
	old, running, kept, twice := pull("old", "old"), pull("running", "running"), pull("kept", "kept"), pull("twice", "twice")
	e.container(running.Ref, true)
	if _, err := e.c.ImageTag(ctx, client.ImageTagOptions{Source: twice.Ref, Target: reg.Ref("twice", "other")}); err != nil {
		t.Fatal(err)
	}

	candidates := []string{old.Ref, running.ID, kept.Ref, twice.Ref, reg.Ref("missing", "v1")}
	removed, err := e.images.Prune(ctx, e.name, candidates, []string{kept.Ref})
	if err != nil {
		t.Fatal(err)
	}
	if want := slices.Sorted(slices.Values([]string{unused.ID, old.ID})); !slices.Equal(removed, want) {
		t.Errorf("removed %v, want the unused build and the old pull %v", removed, want)
	}
	for _, img := range []images.Image{unused, old} {
		if e.exists(img.ID) {
			t.Errorf("%s (%s) is still there", img.Ref, img.ID)
		}
	}
	for _, ref := range []string{used.ID, running.ID, kept.ID, twice.ID, dockertest.BusyboxImage} {
		if !e.exists(ref) {
			t.Errorf("%s was removed", ref)
		}
	}

	if _, err := e.c.ContainerRemove(ctx, stopped, client.ContainerRemoveOptions{}); err != nil {
		t.Fatal(err)
	}
	removed, err = e.images.Prune(ctx, e.name, candidates, []string{kept.Ref})
	if err != nil || !slices.Equal(removed, []string{used.ID}) {
		t.Errorf("second prune removed %v (%v), want the build no container uses any more %s", removed, err, used.ID)
	}
}
