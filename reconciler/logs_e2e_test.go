package reconciler_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"hawser.dev/hawser/reconciler"
	"hawser.dev/hawser/reconciler/store"
)

// logLines reads the whole log of a deployment that has ended.
func logLines(t *testing.T, rec *reconciler.Reconciler, id string) []string {
	t.Helper()
	l, err := rec.DeploymentLog(id)
	if err != nil {
		t.Fatal(err)
	}
	p := l.Read(0)
	if p.Result == "" {
		t.Fatalf("deployment %s still runs", id)
	}
	return p.Lines
}

// assertLines checks that each of want is in lines, in that order.
func assertLines(t *testing.T, lines []string, want ...string) {
	t.Helper()
	at := 0
	for _, w := range want {
		i := slices.IndexFunc(lines[at:], func(l string) bool { return strings.Contains(l, w) })
		if i < 0 {
			t.Errorf("log lacks %q after line %d:\n%s", w, at, strings.Join(lines, "\n"))
			return
		}
		at += i + 1
	}
}

func TestDeploymentLogShowsTheBuildTheReasonsAndTheResultAlsoAfterARestart(t *testing.T) {
	const marker = "hawser-build-says-hello"
	h := newHarness(t, builtAndWorker("FROM hawser-test/busybox:1.36\nRUN echo "+marker+"\n"))
	h.mustReconcile()
	d := h.lastDeployment()
	want := []string{
		"deployment #" + d.ID + " of " + reconciler.ShortCommit(d.Commit),
		"built " + h.project + "-web:", "build output of web", "web | " + marker,
		"using hawser-test/busybox:1.36",
		"recreating web: missing", "recreating worker: missing", "deployment succeeded in ",
	}
	lines := logLines(t, h.rec, d.ID)
	assertLines(t, lines, want...)
	for _, ready := range []string{"web ready", "worker ready"} {
		assertLines(t, lines, "recreating worker: missing", ready, "deployment succeeded in ")
	}

	// A restarted hawser makes the log from the record and the build log.
	h.start()
	assertLines(t, logLines(t, h.rec, d.ID), "deployment #"+d.ID, "web | "+marker, "recreating web: missing", "deployment succeeded in ")
	if _, err := h.rec.DeploymentLog("999"); err == nil {
		t.Error("an unknown deployment has a log")
	}
}

func TestDeploymentLogOfAContainerThatDoesNotStartHasItsLastLines(t *testing.T) {
	h := newHarness(t, webAndWorker(`["sleep", "3600"]`, ""))
	h.mustReconcile()
	h.repo.Commit("break it", webAndWorker(`["sh", "-c", "echo worker cannot start; exit 3"]`, ""))
	if err := h.reconcile(); err == nil {
		t.Fatal("a container that exits at once was deployed")
	}
	d := h.lastDeployment()
	if d.Result != store.ResultRolledBack {
		t.Fatalf("deployment = %+v", d)
	}
	lines := logLines(t, h.rec, d.ID)
	assertLines(t, lines, `service "worker" did not start: exited with code 3`)
	assertLines(t, lines, "recreating worker: config changed",
		`deployment rolled back after`,
		"last lines of the container that did not start:", "worker cannot start")
}

func TestALiveLogFollowsTheDeploymentUntilItEnds(t *testing.T) {
	h := newHarness(t, slowToBeHealthy("3"))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- h.rec.Reconcile(ctx, reconciler.TriggerSync) }()
	var running store.Deployment
	for ok := false; !ok; running, ok = h.rec.Deploying() {
		if ctx.Err() != nil {
			t.Fatal("no deployment started")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if running.Result != "running" || running.ID == "" {
		t.Fatalf("deploying = %+v", running)
	}
	l, err := h.rec.DeploymentLog(running.ID)
	if err != nil {
		t.Fatal(err)
	}
	p := l.Read(0)
	if p.Result != "" {
		t.Fatalf("the deployment ended before the healthcheck passed: %+v", p)
	}
	seen := p.Lines
	for p.Result == "" {
		select {
		case <-p.More:
		case <-ctx.Done():
			t.Fatal("the log did not end")
		}
		p = l.Read(p.Next)
		seen = append(seen, p.Lines...)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if p.Result != store.ResultSucceeded {
		t.Errorf("result %q", p.Result)
	}
	assertLines(t, seen, "deployment #"+running.ID, "recreating web: missing", "web ready", "deployment succeeded")
	if _, ok := h.rec.Deploying(); ok {
		t.Error("a deployment is still in progress")
	}
}

// slowToBeHealthy is a project whose web service turns healthy only after
// seconds, so its deployment can be watched while it runs.
func slowToBeHealthy(seconds string) map[string]string {
	return map[string]string{"compose.yaml": `
services:
  web:
    image: hawser-test/busybox:1.36
    init: true
    command: ["sh", "-c", "sleep ` + seconds + `; touch /tmp/ready; exec sleep 3600"]
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ready"]
      interval: 500ms
      start_period: 1m
`}
}
