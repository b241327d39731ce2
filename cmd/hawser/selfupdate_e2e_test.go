package main

import (
	"archive/tar"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/go-archive"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"hawser.dev/hawser/reconciler/dockertest"
	"hawser.dev/hawser/reconciler/gittest"
	"hawser.dev/hawser/reconciler/registrytest"
	"hawser.dev/hawser/reconciler/store"
)

// hawser in a container follows the tag its container was created from. A
// new image under that tag takes over between deployments, keeping the
// state volume and the deployed services as they are. A new image that does
// not come up is removed, the old hawser runs again, and that digest is not
// tried a second time.
func TestHawserInAContainerUpdatesItselfAndRollsBackAFailedUpdate(t *testing.T) {
	docker := dockertest.Client(t)
	dockertest.Busybox(t, docker)
	id := "hawser-self-" + strings.ToLower(rand.Text()[:10])
	project := strings.ReplaceAll(id, "-", "")
	reg := registrytest.Start(t)
	t.Cleanup(func() {
		if t.Failed() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			t.Logf("hawser's log:\n%s", (&hawserContainer{t: t, docker: docker, id: id}).log(ctx))
			cancel()
		}
		// Every hawser container (old, new, handover) and the state volume,
		// then the project it deployed.
		dockertest.RemoveLabelled(t, docker, dockertest.Label+"="+id)
		dockertest.RemoveLabelled(t, docker, "com.docker.compose.project="+project)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	v1 := buildDeploymentImage(ctx, t, docker, id, "hawser-test/hawser:"+id+"-v1", "VERSION=v1")
	v2 := buildDeploymentImage(ctx, t, docker, id, "hawser-test/hawser:"+id+"-v2", "VERSION=v2")
	edge := reg.Ref("hawser", "edge")
	push(ctx, t, docker, v1, edge)
	if _, err := docker.VolumeCreate(ctx, client.VolumeCreateOptions{Name: id, Labels: map[string]string{dockertest.Label: id}}); err != nil {
		t.Fatal(err)
	}
	repo := gittest.New(t)
	repo.Commit("a service", map[string]string{"compose.yaml": sleeper})
	admin := freeAddr(t)
	config := writeEnv(t, "HAWSER_REPO=/repo", "HAWSER_PATH=.", "HAWSER_PROJECT="+project, "HAWSER_STATE_DIR=/state",
		"HAWSER_HTTP_ADDR="+freeAddr(t), "HAWSER_ADMIN_ADDR="+admin,
		"HAWSER_SCHEDULE=@every 1h", "HAWSER_REGISTRY_SCHEDULE=@every 2s")
	shareWithContainer(t, repo.Dir, config)
	opts := hawserOptions(t, id, edge, repo.Dir, filepath.Dir(config))
	// The registry listens on the host's loopback, where the engine pushes
	// and pulls. hawser asks it for digests at the same address, which only
	// the host's network reaches: so its container shares that network,
	// listens on loopback ports of its own and publishes none.
	opts.HostConfig.NetworkMode = network.NetworkHost
	opts.HostConfig.PortBindings, opts.Config.ExposedPorts = nil, nil
	startHawser(ctx, t, docker, opts)
	first := waitForDeployment(t, admin)
	service := onlyContainer(ctx, t, docker, "com.docker.compose.project="+project)
	old := inspectContainer(ctx, t, docker, id)

	// v2 under the tag. The engine's own tag goes back to v1, so that
	// hawser has to pull v2.
	push(ctx, t, docker, v2, edge)
	tagImage(ctx, t, docker, v1, edge)
	waitFor(t, func() bool { return lastAttempt(ctx, t, docker, id).Result == resultHandedOver })
	waitForVersion(ctx, t, docker, id, admin, imageID(ctx, t, docker, v2), "v2")
	if _, err := docker.ContainerInspect(ctx, old.ID, client.ContainerInspectOptions{}); !cerrdefs.IsNotFound(err) {
		t.Errorf("the old hawser container is still there: %v", err)
	}
	if got := waitForOnlyContainer(ctx, t, docker, dockertest.Label+"="+id); got.Names[0] != "/"+id {
		t.Errorf("hawser's container is %v, want it under its own name", got.Names)
	}
	if got := onlyContainer(ctx, t, docker, "com.docker.compose.project="+project); got.ID != service.ID || got.State != container.StateRunning {
		t.Errorf("the deployed service was touched: %s %s, was %s", got.ID, got.State, service.ID)
	}
	if !slices.ContainsFunc(deployments(t, admin), func(d store.Deployment) bool { return d.ID == first.ID }) {
		t.Errorf("the new hawser's history lacks deployment %s: the state was lost", first.ID)
	}

	// A v3 that cannot start: hawser's command line is wrong in it.
	broken := buildImage(ctx, t, docker, id, "hawser-test/hawser:"+id+"-broken",
		dockerfile(t, "FROM "+v2+"\nCMD [\"no-such-command\"]\n"))
	digest := push(ctx, t, docker, broken, edge)
	tagImage(ctx, t, docker, v2, edge)
	running := inspectContainer(ctx, t, docker, id)
	waitFor(t, func() bool {
		a := lastAttempt(ctx, t, docker, id)
		return a.Digest == digest && a.Result == resultRolledBack
	})
	waitForVersion(ctx, t, docker, id, admin, running.Image, "v2")
	again := inspectContainer(ctx, t, docker, id)
	if again.ID != running.ID {
		t.Errorf("after the rollback hawser runs as %s, want the container it ran as, %s", again.ID, running.ID)
	}
	waitForOnlyContainer(ctx, t, docker, dockertest.Label+"="+id)
	// Three checks later, the failed digest has not been tried again.
	time.Sleep(6 * time.Second)
	if now := inspectContainer(ctx, t, docker, id); now.State.StartedAt != again.State.StartedAt {
		t.Errorf("hawser restarted at %s after the rollback: the failed digest was tried again", now.State.StartedAt)
	}
	if a := lastAttempt(ctx, t, docker, id); a.Digest != digest || a.Result != resultRolledBack {
		t.Errorf("the attempt is now %+v", a)
	}
}

// anonymousAuth is the X-Registry-Auth header of no login.
var anonymousAuth = base64.URLEncoding.EncodeToString([]byte("{}"))

// push pushes image as ref and returns the digest the registry has for it.
func push(ctx context.Context, t *testing.T, docker *client.Client, image, ref string) string {
	t.Helper()
	tagImage(ctx, t, docker, image, ref)
	res, err := docker.ImagePush(ctx, ref, client.ImagePushOptions{RegistryAuth: anonymousAuth})
	if err == nil {
		err = res.Wait(ctx)
	}
	if err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	img, err := docker.ImageInspect(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	repo, _, _ := strings.Cut(ref, ":edge")
	for _, d := range img.RepoDigests {
		if digest, ok := strings.CutPrefix(d, repo+"@"); ok {
			return digest
		}
	}
	t.Fatalf("%s has no digest of %s after the push: %v", image, repo, img.RepoDigests)
	return ""
}

func tagImage(ctx context.Context, t *testing.T, docker *client.Client, image, ref string) {
	t.Helper()
	if _, err := docker.ImageTag(ctx, client.ImageTagOptions{Source: image, Target: ref}); err != nil {
		t.Fatal(err)
	}
}

func imageID(ctx context.Context, t *testing.T, docker *client.Client, ref string) string {
	t.Helper()
	img, err := docker.ImageInspect(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	return img.ID
}

// dockerfile is a build context of nothing but a Dockerfile.
func dockerfile(t *testing.T, content string) io.Reader {
	t.Helper()
	r, err := archive.Generate("Dockerfile", content)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func inspectContainer(ctx context.Context, t *testing.T, docker *client.Client, name string) container.InspectResponse {
	t.Helper()
	res, err := docker.ContainerInspect(ctx, name, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return res.Container
}

// onlyContainer is the one container with label, failing the test if
// there are others.
func onlyContainer(ctx context.Context, t *testing.T, docker *client.Client, label string) container.Summary {
	t.Helper()
	list, err := docker.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: client.Filters{}.Add("label", label)})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 {
		var names [][]string
		for _, c := range list.Items {
			names = append(names, c.Names)
		}
		t.Fatalf("containers with %s: %v, want one", label, names)
	}
	return list.Items[0]
}

// waitForOnlyContainer waits until one container is left with label: the
// handover's is removed only after it recorded its result.
func waitForOnlyContainer(ctx context.Context, t *testing.T, docker *client.Client, label string) container.Summary {
	t.Helper()
	waitFor(t, func() bool {
		list, err := docker.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: client.Filters{}.Add("label", label)})
		return err == nil && len(list.Items) == 1
	})
	return onlyContainer(ctx, t, docker, label)
}

// waitForVersion waits until the container called name runs image, is
// healthy, and the hawser in it reports version.
func waitForVersion(ctx context.Context, t *testing.T, docker *client.Client, name, admin, image, version string) {
	t.Helper()
	waitFor(t, func() bool {
		res, err := docker.ContainerInspect(ctx, name, client.ContainerInspectOptions{})
		if err != nil || res.Container.Image != image {
			return false
		}
		health := res.Container.State.Health
		if health == nil || health.Status != container.Healthy {
			return false
		}
		metrics, err := adminGet(admin, "/metrics")
		return err == nil && slices.ContainsFunc(strings.Split(metrics, "\n"), func(l string) bool {
			return strings.HasPrefix(l, "hawser_build_info{") && strings.Contains(l, `version="`+version+`"`)
		})
	})
}

// waitForDeployment waits for the first successful deployment.
func waitForDeployment(t *testing.T, admin string) store.Deployment {
	t.Helper()
	var found store.Deployment
	waitFor(t, func() bool {
		i := slices.IndexFunc(deployments(t, admin), func(d store.Deployment) bool { return d.Result == store.ResultSucceeded })
		if i >= 0 {
			found = deployments(t, admin)[i]
		}
		return i >= 0
	})
	return found
}

// deployments is the history the daemon reports, none while it is down.
func deployments(t *testing.T, admin string) []store.Deployment {
	t.Helper()
	body, err := adminGet(admin, "/api/v1/deployments")
	if err != nil {
		return nil
	}
	var list []store.Deployment
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		t.Fatalf("deployments: %v: %s", err, body)
	}
	return list
}

// adminGet asks the admin listener, which is down during a handover.
func adminGet(admin, path string) (string, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + admin + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return string(body), err
}

// lastAttempt reads the self-update record from the state volume of the
// container called name: the zero attempt when there is none yet, or no
// such container, as in the middle of a handover.
func lastAttempt(ctx context.Context, t *testing.T, docker *client.Client, name string) attempt {
	t.Helper()
	var a attempt
	res, err := docker.CopyFromContainer(ctx, name, client.CopyFromContainerOptions{SourcePath: "/state/" + selfUpdateFile})
	if err != nil {
		t.Logf("read the attempt: %v", err)
		return a
	}
	defer res.Content.Close()
	tr := tar.NewReader(res.Content)
	if _, err := tr.Next(); err != nil {
		t.Fatal(err)
	}
	if err := json.NewDecoder(tr).Decode(&a); err != nil {
		t.Fatal(err)
	}
	return a
}
