package reconciler_test

import (
	"context"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"hawser.dev/hawser/reconciler/converge"
	"hawser.dev/hawser/reconciler/dockertest"
	"hawser.dev/hawser/reconciler/store"
)

// examplesDir is the repository's examples/, seen from this package.
const examplesDir = "../examples"

// deployedExamples are the examples the tests of this file deploy: those
// that run offline.
var deployedExamples = []string{"hello", "web-and-worker"}

// undeployedExamples are the other examples, each with the reason it is not
// deployed here. cmd/hawser validates every example.
var undeployedExamples = map[string]string{
	"with-database": "its images, postgres:16 and postgrest/postgrest, come from Docker Hub, which tests cannot reach",
}

// exampleBase is the base image the examples build FROM; the tests build
// them FROM dockertest's local stand-in instead, so that no build asks a
// registry for it.
const exampleBase = "busybox:1.36"

func TestEveryExampleIsDeployedOrSaysWhyNot(t *testing.T) {
	entries, err := os.ReadDir(examplesDir)
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		found[e.Name()] = true
		if !slices.Contains(deployedExamples, e.Name()) && undeployedExamples[e.Name()] == "" {
			t.Errorf("examples/%s is neither deployed by a test of this file nor listed with the reason it cannot be", e.Name())
		}
	}
	for _, name := range append(slices.Clone(deployedExamples), slices.Collect(maps.Keys(undeployedExamples))...) {
		if !found[name] {
			t.Errorf("examples/%s is listed here but does not exist", name)
		}
	}
}

// deployExample commits the example's directory, as it is on disk, to the
// root of the harness's repository and deploys it with env as the host's
// configuration, behind a front end whose address it returns. When the test
// ends, nothing of the project may be left.
func deployExample(t *testing.T, name string, env map[string]string) (*harness, string) {
	t.Helper()
	var project, addr string
	// Registered before the harness's cleanups, so it runs after them.
	docker := dockertest.Client(t)
	t.Cleanup(func() {
		if project != "" {
			assertNothingLabelled(t, docker, converge.LabelProject+"="+project)
		}
	})
	h := newHarnessWith(t, nil, func(h *harness) {
		project = h.project
		h.front, addr = frontEnd(t)
		maps.Copy(h.env, env)
		dir := filepath.Join(examplesDir, name)
		if err := os.CopyFS(h.repo.Dir, os.DirFS(dir)); err != nil {
			t.Fatal(err)
		}
		h.repo.Commit("example "+name, offlineDockerfiles(t, dir))
	})
	h.mustReconcile()
	return h, addr
}

// offlineDockerfiles returns the Dockerfiles of the example in dir, by path
// relative to it, rewritten to build FROM dockertest.BusyboxImage instead of
// exampleBase. Any other base image fails the test: the build would try to
// pull it.
func offlineDockerfiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.Name() != "Dockerfile" {
			return err
		}
		content, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		rewritten := strings.ReplaceAll(string(content), "FROM "+exampleBase+"\n", "FROM "+dockertest.BusyboxImage+"\n")
		for i, line := range strings.Split(rewritten, "\n") {
			if strings.HasPrefix(strings.ToUpper(line), "FROM ") && line != "FROM "+dockertest.BusyboxImage {
				t.Fatalf("%s:%d: %s: an offline example builds FROM %s only", path, i+1, line, exampleBase)
			}
		}
		files[rel] = rewritten
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("the example has no Dockerfile: an offline example builds its images")
	}
	return files
}

// assertNothingLabelled fails the test for every container, volume, network
// and image that still carries the label.
func assertNothingLabelled(t *testing.T, docker *client.Client, label string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	filters := client.Filters{}.Add("label", label)
	var left []string
	cs, err := docker.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: filters})
	for _, c := range cs.Items {
		left = append(left, "container "+c.ID)
	}
	vs, err2 := docker.VolumeList(ctx, client.VolumeListOptions{Filters: filters})
	for _, v := range vs.Items {
		left = append(left, "volume "+v.Name)
	}
	ns, err3 := docker.NetworkList(ctx, client.NetworkListOptions{Filters: filters})
	for _, n := range ns.Items {
		left = append(left, "network "+n.Name)
	}
	is, err4 := docker.ImageList(ctx, client.ImageListOptions{Filters: filters})
	for _, i := range is.Items {
		left = append(left, "image "+i.ID)
	}
	for _, err := range []error{err, err2, err3, err4} {
		if err != nil {
			t.Errorf("list what is left of %s: %v", label, err)
		}
	}
	if len(left) > 0 {
		t.Errorf("left behind with %s: %v", label, left)
	}
}

func TestHelloExampleServesItsPageAndTheGreetingFromEnv(t *testing.T) {
	h, addr := deployExample(t, "hello", map[string]string{"GREETING": "Hello from the e2e test"})
	host := h.project + ".localhost"
	if status, page := h.fetch(addr, host, "/"); status != 200 || !strings.Contains(page, "It works.") {
		t.Errorf("GET /: %d %q", status, page)
	}
	if status, greeting := h.fetch(addr, host, "/greeting.txt"); status != 200 || greeting != "Hello from the e2e test" {
		t.Errorf("GET /greeting.txt: %d %q", status, greeting)
	}
}

// updateCount reads the worker's count off the web-and-worker page.
var updateCount = regexp.MustCompile(`Update (\d+), written by the worker`)

// workerPage waits until the web-and-worker page served through the front
// end contains want, and returns the count it shows.
func workerPage(h *harness, addr, want string) int {
	h.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		status, page := h.fetch(addr, h.project+".localhost", "/")
		if m := updateCount.FindStringSubmatch(page); status == 200 && m != nil && strings.Contains(page, want) {
			n, _ := strconv.Atoi(m[1])
			return n
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("the page never showed %q; last: %d %q", want, status, page)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestWebAndWorkerExampleServesWhatTheWorkerWrites(t *testing.T) {
	h, addr := deployExample(t, "web-and-worker", map[string]string{"GREETING": "Hello from the e2e test", "WORKER_INTERVAL": "1"})
	first := workerPage(h, addr, "<h1>Hello from the e2e test</h1>")
	workerPage(h, addr, "Update "+strconv.Itoa(first+1)+",") // the worker keeps writing

	// GREETING is the worker's: a change recreates the worker only, which
	// stops at once and carries on counting from the volume.
	before := h.ids()
	h.env["GREETING"] = "Bonjour"
	start := time.Now()
	h.mustReconcile()
	if took := time.Since(start); took >= 10*time.Second {
		t.Errorf("recreating the worker took %s: it waited out the stop grace period instead of stopping on SIGTERM", took)
	}
	after := h.ids()
	if after["web"] != before["web"] || after["worker"] == before["worker"] {
		t.Fatalf("a change to GREETING: web %s -> %s, worker %s -> %s; want the worker recreated only", before["web"], after["web"], before["worker"], after["worker"])
	}
	if n := workerPage(h, addr, "<h1>Bonjour</h1>"); n <= first+1 {
		t.Errorf("the recreated worker counts from %d, not on from %d: its count is not kept in the volume", n, first+1)
	}

	// A bad interval stops the new worker at once; the old one is put back.
	h.env["WORKER_INTERVAL"] = "soon"
	if err := h.reconcile(); err == nil {
		t.Fatal("a worker with WORKER_INTERVAL=soon deployed")
	}
	if d := h.lastDeployment(); d.Result != store.ResultRolledBack || !strings.Contains(d.Logs, "WORKER_INTERVAL=soon: want a whole number of seconds") {
		t.Errorf("deployment = %s, logs %q", d.Result, d.Logs)
	}
	assertRunning(t, h.containers(), "web", "worker")
	if h.ids()["worker"] != after["worker"] {
		t.Error("the previous worker was not put back")
	}
}
