package reconciler_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"hawser.dev/hawser/reconciler"
	"hawser.dev/hawser/reconciler/dockertest"
	"hawser.dev/hawser/reconciler/registrytest"
	"hawser.dev/hawser/registry"
)

// registryTick runs a reconcile that checks the registries.
func (h *harness) registryTick() {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := h.rec.Reconcile(ctx, reconciler.TriggerRegistry); err != nil {
		h.t.Fatalf("registry tick: %v", err)
	}
}

// followed is a project of one service following a tag and one that does
// not use the registry at all.
func followed(image, labels string) map[string]string {
	return map[string]string{"compose.yaml": `
services:
  app:
    image: ` + image + `
    init: true
    command: ["sleep", "3600"]
` + labels + `
  worker:
    image: hawser-test/busybox:1.36
    init: true
    command: ["sleep", "3600"]
`}
}

// followedApp pushes team/app:stable (marker "v1", or good) to a new
// registry and deploys a project whose app follows that tag.
func followedApp(t *testing.T, marker, labels string, configure func(*harness)) (*registrytest.Registry, string, *harness) {
	t.Helper()
	reg := registrytest.Start(t)
	ref := reg.Ref("team/app", "stable")
	reg.PushBusybox(t, "team/app", "stable", marker)
	h := newHarnessWith(t, followed(ref, labels), configure)
	h.removeImageAtEnd(ref)
	h.mustReconcile()
	return reg, ref, h
}

// removeImageAtEnd removes a pulled image when the test ends.
func (h *harness) removeImageAtEnd(refs ...string) {
	h.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, ref := range refs {
			h.docker.ImageRemove(ctx, ref, client.ImageRemoveOptions{Force: true, PruneChildren: true})
		}
	})
}

func (h *harness) imageDigests(service string) []string {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := h.docker.ImageInspect(ctx, h.containers()[service].ImageID)
	if err != nil {
		h.t.Fatal(err)
	}
	return res.RepoDigests
}

func TestNewDigestOfAFollowedTagRecreatesOnlyThatService(t *testing.T) {
	reg, ref, h := followedApp(t, "v1", "", func(*harness) {})
	before := h.ids()

	// Nothing pushed: no pull and no recreate, one HEAD per tick.
	heads, gets := reg.Count("HEAD", "/manifests/stable"), reg.Count("GET", "/manifests/stable")
	for range 5 {
		h.registryTick()
	}
	if got := reg.Count("HEAD", "/manifests/stable") - heads; got != 5 {
		t.Errorf("%d HEAD requests in 5 ticks, want 5", got)
	}
	if got := reg.Count("GET", "/manifests/stable") - gets; got != 0 {
		t.Errorf("%d manifest GETs (pulls) with nothing pushed", got)
	}
	if after := h.ids(); after["app"] != before["app"] {
		t.Fatal("app recreated with nothing pushed")
	}

	v2 := reg.PushBusybox(t, "team/app", "stable", "v2")
	h.registryTick()
	after := h.ids()
	if after["app"] == before["app"] || after["worker"] != before["worker"] {
		t.Fatalf("want exactly app recreated: before %v after %v", before, after)
	}
	if !slicesContain(h.imageDigests("app"), reg.RepoDigest("team/app", v2)) {
		t.Errorf("app does not run the pushed v2 %s: %v", v2, h.imageDigests("app"))
	}
	if got := h.lastDeployment().Services["app"]; len(got) != 1 || !strings.HasPrefix(got[0], "image updated: "+ref+"@"+v2) {
		t.Errorf("reason = %v", got)
	}
	if got := h.metric("hawser_image_updates_total", map[string]string{"service": "app"}); got != 1 {
		t.Errorf("hawser_image_updates_total{service=app} = %v", got)
	}
	st, err := h.rec.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Images) != 1 || st.Images[0].Service != "app" || st.Images[0].Remote != v2 || st.Images[0].Policy != "digest" {
		t.Errorf("status images = %+v", st.Images)
	}
	// A restart does not pull again.
	gets = reg.Count("GET", "/manifests/stable")
	h.start()
	h.mustReconcile()
	h.registryTick()
	if got := reg.Count("GET", "/manifests/stable") - gets; got != 0 || h.ids()["app"] != after["app"] {
		t.Errorf("after a restart: %d pulls, app %s (was %s)", got, h.ids()["app"], after["app"])
	}
}

func slicesContain(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestOnlyAnotherArchitectureChangingCausesNoRecreate(t *testing.T) {
	reg := registrytest.Start(t)
	ref := reg.Ref("team/multi", "latest")
	reg.PushIndex(t, "team/multi", "latest", "amd64-1", "arm64-1")
	h := newHarness(t, followed(ref, ""))
	h.removeImageAtEnd(ref)
	h.mustReconcile()
	before := h.ids()["app"]
	reg.PushIndex(t, "team/multi", "latest", "amd64-1", "arm64-2")
	h.registryTick()
	h.registryTick()
	if h.ids()["app"] != before {
		t.Fatal("a change to the arm64 image recreated the amd64 service")
	}
	reg.PushIndex(t, "team/multi", "latest", "amd64-2", "arm64-2")
	h.registryTick()
	if h.ids()["app"] == before {
		t.Fatal("a change to the amd64 image did not recreate the service")
	}
}

func TestPolicyNoneLeavesTheServiceAlone(t *testing.T) {
	reg, _, h := followedApp(t, "v1", "    labels: {dev.hawser.update: none}", func(*harness) {})
	before := h.ids()["app"]
	heads := reg.Count("HEAD", "/manifests/stable")
	reg.PushBusybox(t, "team/app", "stable", "v2")
	h.registryTick()
	if h.ids()["app"] != before || reg.Count("HEAD", "/manifests/stable") != heads {
		t.Fatal("a service with dev.hawser.update=none was checked or recreated")
	}
}

func TestSemverPolicyMovesToTheNewestAllowedTag(t *testing.T) {
	reg := registrytest.Start(t)
	digests := reg.PushTags(t, "team/api", "1.2.3", "1.2.10", "1.3.0", "2.0.0", "2.0.0-rc1", "latest")
	ref := reg.Ref("team/api", "1.2.3")
	h := newHarness(t, followed(ref, "    labels: {dev.hawser.update: \"semver:minor\"}"))
	h.removeImageAtEnd(ref, reg.Ref("team/api", "1.3.0"))
	h.mustReconcile()
	h.registryTick()
	app := h.containers()["app"]
	if !slicesContain(h.imageDigests("app"), reg.RepoDigest("team/api", digests[2])) {
		t.Fatalf("app runs %v, want tag 1.3.0 (%s)", h.imageDigests("app"), digests[2])
	}
	st, err := h.rec.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Images) == 0 || !strings.Contains(st.Images[0].Result, "follows "+reg.Ref("team/api", "1.3.0")) {
		t.Errorf("status does not show the choice: %+v", st.Images)
	}
	// The choice survives a restart: no move back to the file's tag.
	h.start()
	h.mustReconcile()
	if got := h.containers()["app"]; got.ID != app.ID {
		t.Fatalf("restart moved app from %s to %s", app.Image, got.Image)
	}
}

func TestRateLimitedRegistryBacksOffAndRecovers(t *testing.T) {
	reg, _, h := followedApp(t, "v1", "", func(*harness) {})
	before := h.ids()["app"]
	reg.PushBusybox(t, "team/app", "stable", "v2")
	reg.RateLimit(1, 2*time.Second)
	h.registryTick() // answered 429
	requests := len(reg.Requests())
	h.registryTick() // within Retry-After: the registry is not asked
	if got := len(reg.Requests()); got != requests {
		t.Errorf("%d requests during the back-off", got-requests)
	}
	if h.ids()["app"] != before {
		t.Fatal("recreated while rate limited")
	}
	if got := h.metric("hawser_registry_rate_limited_total", map[string]string{"registry": reg.Host()}); got != 1 {
		t.Errorf("hawser_registry_rate_limited_total = %v", got)
	}
	time.Sleep(2100 * time.Millisecond)
	h.registryTick()
	if h.ids()["app"] == before {
		t.Fatal("no update after the back-off ended")
	}
}

func TestStoppedRegistryDoesNotStopTheOthers(t *testing.T) {
	up, down := registrytest.Start(t), registrytest.Start(t)
	upRef, downRef := up.Ref("team/up", "stable"), down.Ref("team/down", "stable")
	up.PushBusybox(t, "team/up", "stable", "v1")
	down.PushBusybox(t, "team/down", "stable", "v1")
	h := newHarness(t, map[string]string{"compose.yaml": `
services:
  up:
    image: ` + upRef + `
    init: true
    command: ["sleep", "3600"]
  down:
    image: ` + downRef + `
    init: true
    command: ["sleep", "3600"]
`})
	h.removeImageAtEnd(upRef, downRef)
	h.mustReconcile()
	before := h.ids()
	down.Stop()
	up.PushBusybox(t, "team/up", "stable", "v2")
	h.registryTick()
	after := h.ids()
	if after["up"] == before["up"] || after["down"] != before["down"] {
		t.Fatalf("want up updated and down untouched: %v -> %v", before, after)
	}
	assertRunning(t, h.containers(), "up", "down")
	if got := h.metric("hawser_registry_checks_total", map[string]string{"registry": down.Host(), "result": "unavailable"}); got < 1 {
		t.Errorf("unavailable checks of the stopped registry = %v", got)
	}
}

func TestBaseImageUpdateRebuildsTheBuiltService(t *testing.T) {
	reg := registrytest.Start(t)
	base := reg.Ref("team/base", "1")
	reg.PushBusybox(t, "team/base", "1", "base-v1")
	h := newHarness(t, builtAndWorker("FROM "+base+"\nRUN cat /marker > /built-from\n"))
	h.removeImageAtEnd(base)
	h.mustReconcile()
	before := h.ids()
	h.registryTick()
	if h.ids()["web"] != before["web"] {
		t.Fatal("rebuilt with an unchanged base")
	}
	reg.PushBusybox(t, "team/base", "1", "base-v2")
	h.registryTick()
	after := h.ids()
	if after["web"] == before["web"] || after["worker"] != before["worker"] {
		t.Fatalf("want exactly web rebuilt: %v -> %v", before, after)
	}
	if got := h.lastDeployment().Services["web"]; len(got) != 1 || !strings.HasPrefix(got[0], "image updated") {
		t.Errorf("reason = %v", got)
	}
}

func TestPrivateRegistryWithTokenAuth(t *testing.T) {
	reg := registrytest.StartWithAuth(t, "bot", "s3cret-pw")
	ref := reg.Ref("team/private", "stable")
	reg.PushBusybox(t, "team/private", "stable", "v1")
	creds, err := registry.ParseCredentials(reg.Host() + "=bot:s3cret-pw")
	if err != nil {
		t.Fatal(err)
	}
	h := newHarnessWith(t, followed(ref, ""), func(h *harness) { h.registry.Auth = creds })
	h.removeImageAtEnd(ref)
	h.mustReconcile()
	before := h.ids()["app"]
	reg.PushBusybox(t, "team/private", "stable", "v2")
	h.registryTick()
	if h.ids()["app"] == before {
		t.Fatal("no update from the private registry")
	}
}

// metric returns the value of the counter or gauge with these labels.
func (h *harness) metric(name string, labels map[string]string) float64 {
	h.t.Helper()
	families, err := h.metrics.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if want, ok := labels[l.GetName()]; ok && want != l.GetValue() {
					continue next
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

func TestUpdatesPruneImagesOlderThanTheKeptDeployments(t *testing.T) {
	reg, _, h := followedApp(t, "v1", "", func(*harness) {})
	v1 := h.containers()["app"].ImageID
	reg.PushBusybox(t, "team/app", "stable", "v2")
	h.registryTick()
	v2 := h.containers()["app"].ImageID
	if !h.imageExists(v1) {
		t.Fatal("the last known-good image was pruned right after the update")
	}
	// The harness keeps 3 checkouts: the images of the 2 deployments before
	// the running one stay for rollback, older ones go.
	reg.PushBusybox(t, "team/app", "stable", "v3")
	h.registryTick()
	reg.PushBusybox(t, "team/app", "stable", "v4")
	h.registryTick()
	if v4 := h.containers()["app"].ImageID; v4 == v2 || v2 == v1 {
		t.Fatalf("images did not change: %s %s %s", v1, v2, v4)
	}
	if h.imageExists(v1) {
		t.Error("an image three deployments old and unused was not pruned")
	}
	if !h.imageExists(v2) {
		t.Error("an image kept for rollback was pruned")
	}
	if !h.imageExists(dockertest.BusyboxImage) {
		t.Error("an image a running container uses was pruned")
	}
}

func (h *harness) imageExists(ref string) bool {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := h.docker.ImageInspect(ctx, ref)
	return err == nil
}

func TestFailedImageUpdateIsRolledBackAndNotRetriedUntilTheNextDigest(t *testing.T) {
	reg, _, h := followedApp(t, "good", `    healthcheck:
      test: ["CMD", "grep", "-q", "good", "/marker"]
      interval: 500ms
      retries: 3`, func(h *harness) { h.healthTimeout = 5 * time.Second })
	good := h.containers()["app"]
	bad := reg.PushBusybox(t, "team/app", "stable", "bad")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := h.rec.Reconcile(ctx, reconciler.TriggerRegistry); err == nil {
		t.Fatal("an unhealthy image update deployed")
	}
	if d := h.lastDeployment(); d.Result != "rolled back" || d.Updated["app"] != bad {
		t.Fatalf("deployment = %+v", d)
	}
	deployments, pulls := len(h.deployments()), reg.Count("GET", "/manifests/stable")
	for range 3 {
		h.registryTick()
	}
	if got := h.containers()["app"]; got.ID != good.ID || got.ImageID != good.ImageID {
		t.Fatalf("app no longer runs the good image: %s (was %s)", got.ImageID, good.ImageID)
	}
	if len(h.deployments()) != deployments || reg.Count("GET", "/manifests/stable") != pulls {
		t.Fatal("the failed update was pulled or deployed again")
	}
	if got := h.metric("hawser_image_updates_total", map[string]string{"service": "app"}); got != 0 {
		t.Errorf("a failed update was counted: %v", got)
	}
	// Drift repair after the failure recreates from the good image, not
	// from the tag, which points at the bad one now.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel2()
	if _, err := h.docker.ContainerRemove(ctx2, good.ID, client.ContainerRemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	h.mustReconcile()
	if got := h.containers()["app"]; got.ImageID != good.ImageID || got.State != "running" {
		t.Fatalf("drift repair ran %s (%s), want the good image %s", got.ImageID, got.State, good.ImageID)
	}
	reg.PushBusybox(t, "team/app", "stable", "good again")
	h.registryTick()
	if d := h.lastDeployment(); d.Result != "succeeded" {
		t.Fatalf("the next digest: %+v", d)
	}
}
