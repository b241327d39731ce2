package images_test

import (
	"context"
	"slices"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"hawser.dev/hawser/reconciler/converge"
)

// container creates a container of ref, labelled with the test's project
// so that the test's cleanup removes it, and starts it when start is true.
func (e *env) container(ref string, start bool, cmd ...string) string {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.t.Context(), time.Minute)
	defer cancel()
	created, err := e.c.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config:     &container.Config{Image: ref, Cmd: cmd, Labels: map[string]string{converge.LabelProject: e.name}},
		HostConfig: &container.HostConfig{NetworkMode: "none", Init: new(true)},
	})
	if err != nil {
		e.t.Fatalf("create container of %s: %v", ref, err)
	}
	if start {
		if _, err := e.c.ContainerStart(ctx, created.ID, client.ContainerStartOptions{}); err != nil {
			e.t.Fatalf("start container of %s: %v", ref, err)
		}
	}
	return created.ID
}

// run runs cmd in a container of ref and returns its exit code.
func (e *env) run(ref string, cmd ...string) int64 {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.t.Context(), time.Minute)
	defer cancel()
	id := e.container(ref, false, cmd...)
	wait := e.c.ContainerWait(ctx, id, client.ContainerWaitOptions{Condition: container.WaitConditionNextExit})
	if _, err := e.c.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		e.t.Fatalf("start container of %s: %v", ref, err)
	}
	select {
	case res := <-wait.Result:
		return res.StatusCode
	case err := <-wait.Error:
		e.t.Fatalf("wait for container of %s: %v", ref, err)
	}
	return -1
}

// exists reports whether the engine has the image ref (a reference or ID).
func (e *env) exists(ref string) bool {
	e.t.Helper()
	_, err := e.c.ImageInspect(e.t.Context(), ref)
	if err != nil && !cerrdefs.IsNotFound(err) {
		e.t.Fatalf("inspect %s: %v", ref, err)
	}
	return err == nil
}

func has(list []string, s string) bool { return slices.Contains(list, s) }
