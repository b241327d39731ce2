package images_test

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"

	"hawser.dev/hawser/reconciler/converge"
	"hawser.dev/hawser/reconciler/dockertest"
	"hawser.dev/hawser/reconciler/images"
	"hawser.dev/hawser/reconciler/registrytest"
)

func TestRebuildPullsTheNewBaseAndMovesTheTag(t *testing.T) {
	t.Parallel()
	// The base image and what is built on it carry the test's label; they
	// go after the project's containers and builds.
	dockertest.Cleanup(t, dockertest.Client(t), t.Name())
	e := newEnv(t)
	reg := registrytest.Start(t)
	reg.PushBusybox(t, "base", "v1", "base-one")
	base := reg.Ref("base", "v1")
	p := e.project(map[string]string{
		"compose.yaml": "services:\n  web:\n    build: .\n",
		// No RUN step: the image inherits /marker from its base, and a
		// build that runs no container is quick.
		"Dockerfile": "FROM " + base + "\n",
	})
	svc, err := p.GetService("web")
	if err != nil {
		t.Fatal(err)
	}
	if bases, err := images.BaseImages(svc); err != nil || !slices.Equal(bases, []string{base}) {
		t.Fatalf("BaseImages = %q, %v; want [%s]", bases, err, base)
	}
	first, err := e.ensure(p, "web")
	if err != nil {
		t.Fatal(err)
	}
	reg.PushBusybox(t, "base", "v1", "base-two")
	if again, err := e.ensure(p, "web"); err != nil || again.Built || again.ID != first.ID {
		t.Fatalf("ensure after the base moved = %+v, %v; want the first build %s as it is", again, err, first.ID)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	rebuilt, err := e.images.Rebuild(ctx, p, svc, commit)
	if err != nil {
		t.Fatal(err)
	}
	if !rebuilt.Built || rebuilt.Ref != first.Ref || rebuilt.ID == first.ID || rebuilt.Log != first.Log {
		t.Fatalf("rebuilt = %+v, want a new image under %s with log %s", rebuilt, first.Ref, first.Log)
	}
	if n := e.docker.builds.Load(); n != 2 {
		t.Errorf("%d builds, want 2", n)
	}
	if tagged, err := e.c.ImageInspect(ctx, first.Ref); err != nil || tagged.ID != rebuilt.ID {
		t.Errorf("%s names %s (%v), want the rebuilt %s", first.Ref, tagged.ID, err, rebuilt.ID)
	}
	labels := e.labels(rebuilt.Ref)
	if labels[converge.LabelProject] != e.name || labels[images.LabelBuild] == "" {
		t.Errorf("rebuilt labels = %v, want the project and build labels", labels)
	}
	if code := e.run(rebuilt.Ref, "grep", "-qx", "base-two", "/marker"); code != 0 {
		t.Errorf("the rebuilt image was not built on the new base: grep exited %d", code)
	}
}

func TestRebuildWithoutBuildSectionFails(t *testing.T) {
	i := images.New(nil, t.TempDir(), slog.New(slog.NewTextHandler(t.Output(), nil)))
	svc := types.ServiceConfig{Name: "db"}
	svc.Image = "postgres:16"
	_, err := i.Rebuild(context.Background(), &types.Project{Name: "shop"}, svc, commit)
	if err == nil || !strings.Contains(err.Error(), `"db"`) || !strings.Contains(err.Error(), "no build section") {
		t.Fatalf("error = %v, want one saying db has no build section", err)
	}
}
