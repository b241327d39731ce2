package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/go-archive"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"hawser.dev/hawser/reconciler/dockertest"
	"hawser.dev/hawser/reconciler/gittest"
)

// The image of deployment/ is built from what its Makefile stages, and the
// hawser in it deploys a routed service that it can reach only over the
// shared network: the service publishes nothing, yet its page comes through
// the front end that hawser's container publishes on the host.
func TestDeploymentImageReconcilesOverTheSharedNetwork(t *testing.T) {
	docker := dockertest.Client(t)
	dockertest.Busybox(t, docker)
	id := "hawser-deploy-" + strings.ToLower(rand.Text()[:10])
	project := strings.ReplaceAll(id, "-", "")
	var h *hawserContainer
	t.Cleanup(func() {
		// hawser first, so that it cannot recreate what goes next; the
		// project before the shared network it is attached to.
		if h != nil {
			h.remove()
		}
		dockertest.RemoveLabelled(t, docker, "com.docker.compose.project="+project)
		dockertest.RemoveLabelled(t, docker, dockertest.Label+"="+id)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	image := buildDeploymentImage(ctx, t, docker, id, "hawser-test/hawser:"+id)
	labels := map[string]string{dockertest.Label: id}
	if _, err := docker.NetworkCreate(ctx, id, client.NetworkCreateOptions{Labels: labels}); err != nil {
		t.Fatal(err)
	}
	if _, err := docker.VolumeCreate(ctx, client.VolumeCreateOptions{Name: id, Labels: labels}); err != nil {
		t.Fatal(err)
	}
	repo := gittest.New(t)
	repo.Commit("routed service", map[string]string{"compose.yaml": `
services:
  web:
    image: ` + dockertest.BusyboxImage + `
    init: true
    command: ["sh", "-c", "echo served for ` + id + ` > /www/index.html; exec httpd -f -p 8080 -h /www"]
    labels:
      dev.hawser.http.port: "8080"
`})
	// As deployment/.env.example has it, but for this test's project and network.
	config := writeEnv(t, "HAWSER_REPO=/repo", "HAWSER_PATH=.", "HAWSER_PROJECT="+project,
		"HAWSER_STATE_DIR=/state", "HAWSER_HTTP_ADDR=:8080", "HAWSER_ADMIN_ADDR=:9180",
		"HAWSER_UPSTREAM_NETWORK="+id, "HAWSER_SCHEDULE=@every 1h")
	shareWithContainer(t, repo.Dir, config)

	h = runHawser(ctx, t, docker, id, image, repo.Dir, filepath.Dir(config))
	page := pageThrough(t, "http://"+h.frontEnd(ctx)+"/", "localhost", 60*time.Second)
	if want := "served for " + id; page != want {
		t.Fatalf("front end served %q, want %q", page, want)
	}
	assertOnlyOnTheSharedNetwork(ctx, t, docker, project, id)
	h.waitHealthy()
}

// buildDeploymentImage stages the context with deployment/Makefile (and
// makeVars, such as VERSION=v2) and builds it through the API as tag, as
// `make image` does with the CLI.
func buildDeploymentImage(ctx context.Context, t *testing.T, docker *client.Client, id, tag string, makeVars ...string) string {
	t.Helper()
	dir := t.TempDir()
	deployment, err := filepath.Abs(filepath.Join("..", "..", "deployment"))
	if err != nil {
		t.Fatal(err)
	}
	stage := exec.CommandContext(ctx, "make", append([]string{"-s", "-C", deployment, "context", "CONTEXT=" + dir}, makeVars...)...)
	if out, err := stage.CombinedOutput(); err != nil {
		t.Fatalf("make context: %v\n%s", err, out)
	}
	tarball, err := archive.TarWithOptions(dir, &archive.TarOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer tarball.Close()
	return buildImage(ctx, t, docker, id, tag, tarball)
}

// buildImage builds the build context in tarball as tag, labelled with id.
func buildImage(ctx context.Context, t *testing.T, docker *client.Client, id, tag string, tarball io.Reader) string {
	t.Helper()
	res, err := docker.ImageBuild(ctx, tarball, client.ImageBuildOptions{
		Tags: []string{tag}, Labels: map[string]string{dockertest.Label: id}, Remove: true, ForceRemove: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if err := imageBuildError(res.Body); err != nil {
		t.Fatalf("build %s: %v", tag, err)
	}
	return tag
}

// imageBuildError reads an engine's build stream to its end: a failed
// build is reported inside the stream, not by ImageBuild.
func imageBuildError(stream io.Reader) error {
	dec := json.NewDecoder(stream)
	var out strings.Builder
	for {
		var m jsonstream.Message
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		out.WriteString(m.Stream)
		if m.Error != nil {
			return fmt.Errorf("%w\n%s", m.Error, out.String())
		}
	}
}

// hawserContainer is hawser running from the deployment image.
type hawserContainer struct {
	t      *testing.T
	docker *client.Client
	id     string
}

// hawserHTTPPort is the front end's port inside the container, as
// deployment/.env.example sets it.
var hawserHTTPPort, _ = network.PortFrom(8080, network.TCP)

// runHawser starts the image as deployment/compose.yaml does: the socket
// with its group, the state volume, the configuration directory at
// /config, the repository read-only at /repo, on the shared network, with
// the front end published on loopback at a port the engine picks.
func runHawser(ctx context.Context, t *testing.T, docker *client.Client, id, image, repo, config string) *hawserContainer {
	t.Helper()
	return startHawser(ctx, t, docker, hawserOptions(t, id, image, repo, config))
}

// hawserOptions are runHawser's container, for tests that change them.
func hawserOptions(t *testing.T, id, image, repo, config string) client.ContainerCreateOptions {
	t.Helper()
	const socket = "/var/run/docker.sock"
	return client.ContainerCreateOptions{
		Name: id,
		Config: &container.Config{
			Image: image, Labels: map[string]string{dockertest.Label: id},
			ExposedPorts: network.PortSet{hawserHTTPPort: {}},
			// The image's check, every second instead of every 30.
			Healthcheck: &container.HealthConfig{Interval: time.Second, StartPeriod: 30 * time.Second},
		},
		HostConfig: &container.HostConfig{
			GroupAdd:     []string{ownerGroup(t, socket)},
			NetworkMode:  container.NetworkMode(id),
			PortBindings: network.PortMap{hawserHTTPPort: {{HostIP: netip.MustParseAddr("127.0.0.1")}}},
			Mounts: []mount.Mount{
				{Type: mount.TypeBind, Source: socket, Target: socket},
				{Type: mount.TypeVolume, Source: id, Target: "/state"},
				{Type: mount.TypeBind, Source: config, Target: "/config", ReadOnly: true},
				{Type: mount.TypeBind, Source: repo, Target: "/repo", ReadOnly: true},
			},
		},
	}
}

// startHawser creates and starts hawser's container.
func startHawser(ctx context.Context, t *testing.T, docker *client.Client, opts client.ContainerCreateOptions) *hawserContainer {
	t.Helper()
	res, err := docker.ContainerCreate(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	h := &hawserContainer{t: t, docker: docker, id: res.ID}
	if _, err := docker.ContainerStart(ctx, res.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}
	return h
}

// shareWithContainer lets the container's user, who is not the test's,
// read the repository and the .env file: t.TempDir and writeEnv make what
// only the owner may read.
func shareWithContainer(t *testing.T, repo, config string) {
	t.Helper()
	for path, mode := range map[string]os.FileMode{repo: 0o755, filepath.Dir(config): 0o755, config: 0o644} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
	}
}

// ownerGroup is the group of a file, as `stat -c %g` prints it.
func ownerGroup(t *testing.T, path string) string {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("the hawser container mounts the engine's socket: %v", err)
	}
	return strconv.FormatUint(uint64(fi.Sys().(*syscall.Stat_t).Gid), 10)
}

// frontEnd is the address the front end is published at on the host.
func (h *hawserContainer) frontEnd(ctx context.Context) string {
	h.t.Helper()
	ct, err := h.docker.ContainerInspect(ctx, h.id, client.ContainerInspectOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	for _, b := range ct.Container.NetworkSettings.Ports[hawserHTTPPort] {
		if b.HostPort != "" {
			return "127.0.0.1:" + b.HostPort
		}
	}
	h.t.Fatalf("front end not published: %v", ct.Container.NetworkSettings.Ports)
	return ""
}

// waitHealthy waits for the image's own HEALTHCHECK to pass.
func (h *hawserContainer) waitHealthy() {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		ct, err := h.docker.ContainerInspect(ctx, h.id, client.ContainerInspectOptions{})
		if err != nil {
			h.t.Fatalf("health of the hawser container: %v", err)
		}
		if hc := ct.Container.Config.Healthcheck; hc == nil || !slices.Contains(hc.Test, "health") {
			h.t.Fatalf("the image's healthcheck is %+v, want hawser's health command", hc)
		}
		state := ct.Container.State.Health
		if state != nil && state.Status == container.Healthy {
			return
		}
		if ctx.Err() != nil || (state != nil && state.Status == container.Unhealthy) {
			h.t.Fatalf("the hawser container is not healthy: %s", healthLog(state))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func healthLog(state *container.Health) string {
	if state == nil {
		return "no health state"
	}
	var b strings.Builder
	b.WriteString(string(state.Status))
	for _, r := range state.Log {
		fmt.Fprintf(&b, "\n  exit %d: %s", r.ExitCode, strings.TrimSpace(r.Output))
	}
	return b.String()
}

// remove removes the container, showing its log first if the test failed.
func (h *hawserContainer) remove() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if h.t.Failed() {
		h.t.Logf("hawser's log:\n%s", h.log(ctx))
	}
	if _, err := h.docker.ContainerRemove(ctx, h.id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil {
		h.t.Errorf("cleanup hawser container: %v", err)
	}
}

func (h *hawserContainer) log(ctx context.Context) string {
	rc, err := h.docker.ContainerLogs(ctx, h.id, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Tail: "60"})
	if err != nil {
		return err.Error()
	}
	defer rc.Close()
	var out strings.Builder
	if _, err := stdcopy.StdCopy(&out, &out, rc); err != nil {
		fmt.Fprintf(&out, "(%v)", err)
	}
	return out.String()
}

// pageThrough asks url with the given Host until it answers 200, and
// returns the trimmed body.
func pageThrough(t *testing.T, url, host string, wait time.Duration) string {
	t.Helper()
	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(wait)
	last := "no answer"
	for time.Now().Before(deadline) {
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		resp, err := hc.Do(req)
		if err != nil {
			last = err.Error()
		} else {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return strings.TrimSpace(string(body))
			}
			last = resp.Status + ": " + strings.TrimSpace(string(body))
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("%s (Host %s) did not serve within %s; last: %s", url, host, wait, last)
	return ""
}

// assertOnlyOnTheSharedNetwork checks that the page cannot have come any
// other way: the service publishes no port and is on the shared network.
func assertOnlyOnTheSharedNetwork(ctx context.Context, t *testing.T, docker *client.Client, project, shared string) {
	t.Helper()
	list, err := docker.ContainerList(ctx, client.ContainerListOptions{
		Filters: client.Filters{}.Add("label", "com.docker.compose.project="+project),
	})
	if err != nil || len(list.Items) != 1 {
		t.Fatalf("containers of %s: %v, %v", project, list.Items, err)
	}
	ct := list.Items[0]
	for _, p := range ct.Ports {
		if p.PublicPort != 0 {
			t.Errorf("the service publishes %+v", p)
		}
	}
	if ct.NetworkSettings == nil || ct.NetworkSettings.Networks[shared] == nil {
		t.Errorf("the service is not on the shared network %s", shared)
	}
}
