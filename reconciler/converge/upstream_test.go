package converge

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"hawser.dev/hawser/reconciler/compose"
	"hawser.dev/hawser/reconciler/dockertest"
)

// switches records the traffic moves of an Apply.
type switches struct {
	mu    sync.Mutex
	moves [][2]string
}

func (s *switches) Switch(_ context.Context, _, from, to string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.moves = append(s.moves, [2]string{from, to})
	return nil
}

func (s *switches) Drain(context.Context, string) error { return nil }

func TestRoutedServiceOnTheUpstreamNetworkIsReachedByNameNotPublished(t *testing.T) {
	docker := dockertest.Client(t)
	dockertest.Busybox(t, docker)
	project := fmt.Sprintf("hawser-upstream-%d", time.Now().UnixNano()%1e9)
	front := project + "_front"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := docker.NetworkCreate(ctx, front, client.NetworkCreateOptions{Labels: map[string]string{LabelProject: project}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dockertest.RemoveLabelled(t, docker, LabelProject+"="+project) })

	dir := t.TempDir()
	compose_ := `
services:
  web:
    image: ` + dockertest.BusyboxImage + `
    init: true
    command: ["httpd", "-f", "-p", "8080", "-h", "/tmp"]
    labels:
      dev.hawser.http.port: "8080"
`
	if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(compose_), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := compose.Load(ctx, compose.Source{Dir: dir, Name: project})
	if err != nil {
		t.Fatal(err)
	}
	img, err := docker.ImageInspect(ctx, dockertest.BusyboxImage)
	if err != nil {
		t.Fatal(err)
	}
	d, err := NewDesired(ctx, p, map[string]Image{"web": {Ref: dockertest.BusyboxImage, ID: img.ID}}, "c1", dir)
	if err != nil {
		t.Fatal(err)
	}
	moves := &switches{}
	c := &Converger{
		Docker: docker, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), HealthTimeout: 20 * time.Second,
		Traffic: moves, UpstreamNetwork: front,
	}
	// The HTTP probe would have to reach the container on that network,
	// which only a hawser inside a container can: the test stands in for it.
	c.probeWith(func(context.Context, string, string) bool { return true })
	if err := c.Apply(ctx, d, NewPlan(d, nil), Deployment{ID: "1", Commit: "c1"}); err != nil {
		t.Fatal(err)
	}
	list, err := List(ctx, docker, project)
	if err != nil || len(list) != 1 {
		t.Fatalf("containers: %v, %v", list, err)
	}
	ct, err := docker.ContainerInspect(ctx, list[0].ID, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ct.Container.NetworkSettings.Networks[front]; !ok {
		t.Fatalf("not on the upstream network: %v", ct.Container.NetworkSettings.Networks)
	}
	if len(list[0].Ports) != 0 && list[0].Ports[0].PublicPort != 0 {
		t.Fatalf("published a port: %+v", list[0].Ports)
	}
	want := "http://" + list[0].ID[:12] + ":8080"
	if len(moves.moves) != 1 || moves.moves[0][1] != want {
		t.Fatalf("traffic moves = %v, want one to %s", moves.moves, want)
	}
}
