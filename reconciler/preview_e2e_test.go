package reconciler_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"golang.org/x/crypto/bcrypt"

	"hawser.dev/hawser/proxy"
	"hawser.dev/hawser/proxy/proxytest"
	"hawser.dev/hawser/reconciler"
	"hawser.dev/hawser/reconciler/converge"
	"hawser.dev/hawser/reconciler/dockertest"
	"hawser.dev/hawser/reconciler/preview"
)

// previewed is a project whose web service serves its VERSION and the
// SECRET it was given from a named volume, behind the front end.
func previewed(version string) map[string]string {
	return map[string]string{"compose.yaml": `
services:
  web:
    image: hawser-test/busybox:1.36
    init: true
    command: ["sh", "-c", "echo ` + version + ` > /www/index.html; echo \"$$SECRET|$$PUBLIC\" > /www/env; exec httpd -f -p 8080 -h /www"]
    labels:
      dev.hawser.http.port: "8080"
    environment:
      SECRET: ${SECRET:-none}
      PUBLIC: ${PUBLIC_NAME:-none}
    volumes: [data:/www]
volumes:
  data:
`}
}

// previewHarness runs a project with previews of feat/* and fix_* branches
// behind a real front end, and removes every preview's objects at the end.
func previewHarness(t *testing.T, branches ...string) (*harness, string) {
	t.Helper()
	var addr string
	h := newHarnessWith(t, previewed("production"), func(h *harness) {
		h.onDemand, h.front, addr = proxytest.Serve(t)
		h.env["SECRET"], h.env["PUBLIC_NAME"] = "prod-secret", "shop"
		h.previews = reconciler.Previews{
			Branches: []string{"feat/*", "feat_*", "Feat.*"},
			Domain:   h.project + ".preview.localhost",
			Inherit:  []string{"PUBLIC_*"},
		}
	})
	docker := dockertest.Client(t)
	for _, b := range branches {
		name := preview.ProjectName(h.project, preview.Slug(b))
		t.Cleanup(func() { dockertest.RemoveLabelled(t, docker, converge.LabelProject+"="+name) })
	}
	return h, addr
}

// push commits files to a branch and goes back to main.
func (h *harness) push(branch string, files map[string]string) string {
	h.t.Helper()
	h.repo.Git("checkout", "-q", "-B", branch)
	commit := h.repo.Commit("on "+branch, files)
	h.repo.Git("checkout", "-q", "main")
	return commit
}

func (h *harness) fetch(addr, host, path string) (int, string) {
	h.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	req.Host = host
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		h.t.Fatalf("GET %s%s: %v", host, path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(body))
}

func (h *harness) projectContainers(project string) int {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	list, err := converge.List(ctx, h.docker, project)
	if err != nil {
		h.t.Fatal(err)
	}
	return len(list)
}

func TestBranchPreviewLifecycle(t *testing.T) {
	h, addr := previewHarness(t, "feat/x")
	h.mustReconcile()
	prodID := h.ids()["web"]
	domain := h.project + ".preview.localhost"
	slug := preview.Slug("feat/x")
	host := slug + "." + domain
	name := preview.ProjectName(h.project, slug)

	h.push("feat/x", previewed("preview-1"))
	h.mustReconcile()
	if code, body := h.fetch(addr, host, "/"); code != 200 || body != "preview-1" {
		t.Fatalf("preview answers %d %q", code, body)
	}
	if code, body := h.fetch(addr, h.project+".localhost", "/"); code != 200 || body != "production" {
		t.Fatalf("production answers %d %q", code, body)
	}
	// Its own volume, and no production secret: only the inherited key.
	if _, body := h.fetch(addr, host, "/env"); body != "none|shop" {
		t.Errorf("preview environment = %q, want the secret withheld and PUBLIC_NAME inherited", body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := h.docker.VolumeInspect(ctx, name+"_data", client.VolumeInspectOptions{}); err != nil {
		t.Fatalf("the preview has no volume of its own: %v", err)
	}

	// A push updates it blue-green: no request fails meanwhile.
	stop := make(chan struct{})
	var l load
	wg := l.run(t, addr, host, stop)
	h.push("feat/x", previewed("preview-2"))
	h.mustReconcile()
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()
	if n := l.failed.Load(); n != 0 {
		t.Fatalf("%d of %d requests to the preview failed during its update: %v", n, n+l.ok.Load(), l.errors)
	}
	if _, body := h.fetch(addr, host, "/"); body != "preview-2" {
		t.Fatalf("after a push the preview answers %q", body)
	}

	h.repo.Git("branch", "-q", "-D", "feat/x")
	h.mustReconcile()
	if n := h.projectContainers(name); n != 0 {
		t.Fatalf("%d containers of the deleted branch's preview remain", n)
	}
	if _, err := h.docker.VolumeInspect(ctx, name+"_data", client.VolumeInspectOptions{}); err == nil {
		t.Error("the deleted preview's volume remains")
	}
	if code, _ := h.fetch(addr, host, "/"); code != http.StatusNotFound {
		t.Errorf("the deleted preview's host answers %d", code)
	}
	if _, err := os.Stat(filepath.Join(h.stateDir, "checkouts", name)); !os.IsNotExist(err) {
		t.Errorf("the deleted preview's checkouts remain: %v", err)
	}
	if h.ids()["web"] != prodID {
		t.Error("production was recreated by previews")
	}
	if _, err := h.docker.VolumeInspect(ctx, h.project+"_data", client.VolumeInspectOptions{}); err != nil {
		t.Errorf("production's volume is gone: %v", err)
	}
}

func TestBranchesThatSanitiseAlikeGetTheirOwnPreviews(t *testing.T) {
	branches := []string{"feat/x", "feat_x", "Feat.X"}
	h, addr := previewHarness(t, branches...)
	h.mustReconcile()
	for _, b := range branches {
		h.push(b, previewed("branch-"+strings.NewReplacer("/", "", "_", "", ".", "").Replace(b)))
	}
	h.mustReconcile()
	seen := map[string]bool{}
	for _, b := range branches {
		host := preview.Slug(b) + "." + h.project + ".preview.localhost"
		if seen[host] {
			t.Fatalf("two branches share host %s", host)
		}
		seen[host] = true
		want := "branch-" + strings.NewReplacer("/", "", "_", "", ".", "").Replace(b)
		if code, body := h.fetch(addr, host, "/"); code != 200 || body != want {
			t.Errorf("%s at %s answers %d %q, want %q", b, host, code, body, want)
		}
	}
}

func (h *harness) fetchAs(addr, host, accept string) (int, string, http.Header) {
	h.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
	req.Host = host
	req.Header.Set("Accept", accept)
	resp, err := (&http.Client{Timeout: 90 * time.Second}).Do(req)
	if err != nil {
		h.t.Fatalf("GET %s: %v", host, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(body)), resp.Header
}

func (h *harness) runningIn(project string) int {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	list, err := converge.List(ctx, h.docker, project)
	if err != nil {
		h.t.Fatal(err)
	}
	n := 0
	for _, c := range list {
		if c.State == "running" {
			n++
		}
	}
	return n
}

// idlePreview runs a preview of branch serving version that sleeps after
// a second without a request; it returns its host and compose project.
func idlePreview(t *testing.T, branch, version string) (h *harness, addr, host, name string) {
	t.Helper()
	h, addr = previewHarness(t, branch)
	h.previews.Idle, h.previews.WakeTimeout = time.Second, time.Minute
	h.start()
	h.push(branch, previewed(version))
	h.mustReconcile()
	slug := preview.Slug(branch)
	return h, addr, slug + "." + h.project + ".preview.localhost", preview.ProjectName(h.project, slug)
}

func TestIdlePreviewSleepsAndARequestWakesIt(t *testing.T) {
	h, addr, host, name := idlePreview(t, "feat/sleepy", "awake")
	sleep := func() {
		time.Sleep(1500 * time.Millisecond)
		h.mustReconcile()
		if n := h.runningIn(name); n != 0 {
			t.Fatalf("%d containers of the idle preview still run", n)
		}
	}
	sleep()
	if h.metric("hawser_previews", map[string]string{"state": "sleeping"}) != 1 {
		t.Error("hawser_previews{state=sleeping} is not 1")
	}
	// A client that is not a browser is held until the preview serves.
	if code, body, _ := h.fetchAs(addr, host, "*/*"); code != 200 || body != "awake" {
		t.Fatalf("woken preview answers %d %q", code, body)
	}
	if h.runningIn(name) == 0 {
		t.Fatal("the preview did not wake")
	}
	if h.histogramCount("hawser_preview_wake_seconds") == 0 {
		t.Error("the wake was not measured")
	}
	// A browser gets a page that reloads itself while the preview starts.
	sleep()
	code, body, header := h.fetchAs(addr, host, "text/html")
	if code != http.StatusServiceUnavailable || header.Get("Retry-After") == "" || !strings.Contains(body, `http-equiv="refresh"`) {
		t.Fatalf("browser during a wake: %d %q %v", code, body, header)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		if code, body, _ := h.fetchAs(addr, host, "text/html"); code == 200 && body == "awake" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the preview never served after the browser's request")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// histogramCount is the number of observations of a histogram.
func (h *harness) histogramCount(name string) uint64 {
	h.t.Helper()
	families, err := h.metrics.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name && len(f.GetMetric()) > 0 {
			return f.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	return 0
}

func TestPreviewWithoutPushForTheTTLIsTornDownUntilTheNextPush(t *testing.T) {
	h, addr := previewHarness(t, "feat/old")
	h.previews.TTL = 3 * time.Second
	h.start()
	h.push("feat/old", previewed("first"))
	h.mustReconcile()
	host := preview.Slug("feat/old") + "." + h.project + ".preview.localhost"
	name := preview.ProjectName(h.project, preview.Slug("feat/old"))
	if code, _ := h.fetch(addr, host, "/"); code != 200 {
		t.Fatalf("preview answers %d", code)
	}
	st, err := h.rec.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Previews) != 1 || st.Previews[0].Branch != "feat/old" || st.Previews[0].State != "running" ||
		st.Previews[0].URL != "http://"+host+"/" || st.Previews[0].Commit == "" {
		t.Fatalf("status previews = %+v", st.Previews)
	}
	time.Sleep(3500 * time.Millisecond)
	h.mustReconcile()
	h.mustReconcile()
	if n := h.projectContainers(name); n != 0 {
		t.Fatalf("%d containers of an expired preview remain", n)
	}
	h.push("feat/old", previewed("second"))
	h.mustReconcile()
	if code, body := h.fetch(addr, host, "/"); code != 200 || body != "second" {
		t.Fatalf("after a new push the preview answers %d %q", code, body)
	}
}

func TestAtMostMaxRunningPreviewsRunTheLeastRecentlyUsedSleep(t *testing.T) {
	h, addr := previewHarness(t, "feat/a", "feat/b")
	h.previews.MaxRunning, h.previews.WakeTimeout = 1, time.Minute
	h.start()
	h.push("feat/a", previewed("a"))
	h.mustReconcile()
	time.Sleep(50 * time.Millisecond)
	h.push("feat/b", previewed("b"))
	h.mustReconcile()
	a := preview.ProjectName(h.project, preview.Slug("feat/a"))
	b := preview.ProjectName(h.project, preview.Slug("feat/b"))
	if h.runningIn(a) != 0 || h.runningIn(b) == 0 {
		t.Fatalf("running: a %d, b %d; want only the more recent b", h.runningIn(a), h.runningIn(b))
	}
	// A request wakes a; at the next tick the cap puts b to sleep.
	if code, body, _ := h.fetchAs(addr, preview.Slug("feat/a")+"."+h.project+".preview.localhost", "*/*"); code != 200 || body != "a" {
		t.Fatalf("woken a answers %d %q", code, body)
	}
	h.mustReconcile()
	if h.runningIn(a) == 0 || h.runningIn(b) != 0 {
		t.Fatalf("after a's request: a %d, b %d running; want a", h.runningIn(a), h.runningIn(b))
	}
}

func TestBrokenPreviewShowsItsFailureAndHostileNamesExecuteNothing(t *testing.T) {
	hostile := "feat/$(touch${IFS}PWNED)`touch${IFS}PWNED2`;touch${IFS}PWNED3|&<>\"'"
	h, addr := previewHarness(t, "feat/broken", hostile)
	dir := t.TempDir()
	t.Chdir(dir)
	h.mustReconcile()
	h.push("feat/broken", map[string]string{"compose.yaml": "services: [\n"})
	h.push(hostile, previewed("hostile"))
	h.mustReconcile()
	code, body, _ := h.fetchAs(addr, preview.Slug("feat/broken")+"."+h.project+".preview.localhost", "*/*")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "failed to build or start") {
		t.Fatalf("broken preview answers %d %q", code, body)
	}
	h.mustReconcile() // hawser_previews counts at the start of a pass
	if n := h.metric("hawser_previews", map[string]string{"state": "failed"}); n != 1 {
		t.Errorf("hawser_previews{state=failed} = %v, want the broken preview", n)
	}
	host := preview.Slug(hostile) + "." + h.project + ".preview.localhost"
	if code, body := h.fetch(addr, host, "/"); code != 200 || body != "hostile" {
		t.Fatalf("preview of a hostile branch name at %s answers %d %q", host, code, body)
	}
	for _, d := range []string{dir, h.repo.Dir, h.stateDir} {
		for _, f := range []string{"PWNED", "PWNED2", "PWNED3"} {
			if _, err := os.Stat(filepath.Join(d, f)); err == nil {
				t.Fatalf("a branch name ran a command: %s exists in %s", f, d)
			}
		}
	}
}

func TestPreviewsAskForTheirCredentials(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	auth, err := proxy.ParseBasicAuth("review:" + string(hash))
	if err != nil {
		t.Fatal(err)
	}
	h, addr := previewHarness(t, "feat/private")
	h.previews.Auth = auth
	h.start()
	h.push("feat/private", previewed("private"))
	h.mustReconcile()
	host := preview.Slug("feat/private") + "." + h.project + ".preview.localhost"
	if code, _ := h.fetch(addr, host, "/"); code != http.StatusUnauthorized {
		t.Fatalf("a preview without credentials answers %d", code)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
	req.Host = host
	req.SetBasicAuth("review", "s3cret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != "private" {
		t.Fatalf("with credentials: %d %q", resp.StatusCode, body)
	}
	if code, body := h.fetch(addr, h.project+".localhost", "/"); code != 200 || body != "production" {
		t.Fatalf("production asks for credentials too: %d %q", code, body)
	}
}
