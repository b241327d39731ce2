package reconciler_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"hawser.dev/hawser/reconciler"
	"hawser.dev/hawser/reconciler/converge"
	"hawser.dev/hawser/reconciler/dockertest"
	"hawser.dev/hawser/reconciler/preview"
)

func TestPerCommitPreviewIsBuiltOnFirstRequest(t *testing.T) {
	h, addr := previewHarness(t, "feat/c")
	h.mustReconcile()
	old := h.push("feat/c", previewed("commit-one"))
	h.repo.Git("checkout", "-q", "feat/c")
	h.repo.Commit("on feat/c", previewed("commit-two"))
	h.repo.Git("checkout", "-q", "main")
	slug := "c-" + old[:12]
	name := preview.ProjectName(h.project, slug)
	t.Cleanup(func() { dockertest.RemoveLabelled(t, h.docker, converge.LabelProject+"="+name) })
	h.mustReconcile()
	domain := h.project + ".preview.localhost"
	host := slug + "." + domain

	// The first request asks for it: a page while it builds, never a hang.
	code, body, header := h.fetchAs(addr, host, "*/*")
	if code != http.StatusServiceUnavailable || header.Get("Retry-After") == "" || !strings.Contains(body, "being built") {
		t.Fatalf("first request to %s: %d %q", host, code, body)
	}
	h.mustReconcile()
	if code, body := h.fetch(addr, host, "/"); code != 200 || body != "commit-one" {
		t.Fatalf("per-commit preview answers %d %q, want the old commit", code, body)
	}
	if _, body := h.fetch(addr, preview.Slug("feat/c")+"."+domain, "/"); body != "commit-two" {
		t.Fatalf("the branch preview answers %q, want its head", body)
	}
	st, err := h.rec.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !hasPreview(st.Previews, slug, old) {
		t.Errorf("status previews = %+v, want %s at %s", st.Previews, slug, old)
	}
	sized, err := h.rec.Previews(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range sized {
		if p.VolumeBytes <= 0 {
			t.Errorf("preview %s: its volume measures %d bytes, want the pages it wrote", p.Slug, p.VolumeBytes)
		}
	}

	// Commits no watched branch holds, and hosts of the wrong shape, are
	// not found; the host of a commit of production is.
	for _, unknown := range []string{"c-0123456789ab." + domain, "c-" + old[:11] + "." + domain, "c-" + strings.ToUpper(old[:12]) + "x." + domain, "c-" + old[:12] + ".other.localhost"} {
		if code, _ := h.fetch(addr, unknown, "/"); code != http.StatusNotFound {
			t.Errorf("%s answers %d, want 404", unknown, code)
		}
	}

	// Deleting the branch tears it down with the branch's preview.
	h.repo.Git("branch", "-q", "-D", "feat/c")
	h.mustReconcile()
	if n := h.projectContainers(name); n != 0 {
		t.Fatalf("%d containers of the per-commit preview remain after its branch was deleted", n)
	}
	if code, _ := h.fetch(addr, host, "/"); code != http.StatusNotFound {
		t.Errorf("the per-commit preview of a deleted branch answers %d", code)
	}
}

func hasPreview(list []reconciler.PreviewStatus, slug, commit string) bool {
	for _, p := range list {
		if p.Slug == slug && p.Commit == commit {
			return true
		}
	}
	return false
}

func TestPerCommitPreviewsAreAskedForAtALimitedRate(t *testing.T) {
	h, addr := previewHarness(t, "feat/r")
	h.mustReconcile()
	h.push("feat/r", previewed("r0"))
	h.repo.Git("checkout", "-q", "feat/r")
	var commits []string
	for i := range 4 {
		commits = append(commits, h.repo.Commit(fmt.Sprint("r", i+1), previewed(fmt.Sprint("r", i+1))))
	}
	h.repo.Git("checkout", "-q", "main")
	h.mustReconcile()
	host := func(c string) string { return "c-" + c[:12] + "." + h.project + ".preview.localhost" }
	for i, c := range commits[:3] {
		if _, body, _ := h.fetchAs(addr, host(c), "*/*"); !strings.Contains(body, "being built") {
			t.Fatalf("ask %d: %q", i, body)
		}
	}
	if _, body, _ := h.fetchAs(addr, host(commits[0]), "*/*"); !strings.Contains(body, "being built") {
		t.Fatalf("asking again for one asked for: %q", body)
	}
	if code, body, header := h.fetchAs(addr, host(commits[3]), "*/*"); code != http.StatusServiceUnavailable || !strings.Contains(body, "Too many") || header.Get("Retry-After") == "" {
		t.Fatalf("a fourth new one at once: %d %q", code, body)
	}
}

func TestPreviewAsleepStaysAsleepAcrossARestart(t *testing.T) {
	h, addr, host, name := idlePreview(t, "feat/nap", "napping")
	time.Sleep(1500 * time.Millisecond)
	h.mustReconcile()
	if n := h.runningIn(name); n != 0 {
		t.Fatalf("%d containers of the idle preview still run", n)
	}

	// A push while it sleeps leaves it asleep, also across the restart.
	h.push("feat/nap", previewed("napping-2"))
	h.mustReconcile()
	h.start() // hawser restarts
	h.mustReconcile()
	if n := h.runningIn(name); n != 0 {
		t.Fatalf("the restart woke the sleeping preview: %d containers run", n)
	}
	st, err := h.rec.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Previews) != 1 || st.Previews[0].State != "sleeping" {
		t.Fatalf("previews after the restart: %+v", st.Previews)
	}
	if code, body, _ := h.fetchAs(addr, host, "*/*"); code != 200 || body != "napping-2" {
		t.Fatalf("a request after the restart: %d %q, want the head pushed while it slept", code, body)
	}
	if h.runningIn(name) == 0 {
		t.Fatal("the request did not wake the preview")
	}
}

func TestProductionDeploysWhileAPreviewBuilds(t *testing.T) {
	h, addr := previewHarness(t, "feat/slow")
	h.mustReconcile()
	slow := previewed("slow")
	slow["compose.yaml"] = strings.Replace(slow["compose.yaml"], "image: hawser-test/busybox:1.36", "build: .", 1)
	slow["Dockerfile"] = "FROM hawser-test/busybox:1.36\nRUN sleep 25\n"
	h.push("feat/slow", slow)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.rec.Run(ctx, 3*time.Minute) }()
	t.Cleanup(func() { cancel(); <-done })
	h.rec.Request(reconciler.TriggerSchedule)
	previewHost := preview.Slug("feat/slow") + "." + h.project + ".preview.localhost"
	waitFor(t, "the preview's build to start", func() bool {
		_, body := h.fetch(addr, previewHost, "/")
		return strings.Contains(body, "being built")
	})

	h.repo.Commit("production moves on", previewed("production-2"))
	h.rec.Request(reconciler.TriggerSchedule)
	waitFor(t, "production to serve its new commit", func() bool {
		_, body := h.fetch(addr, h.project+".localhost", "/")
		return body == "production-2"
	})
	if _, body := h.fetch(addr, previewHost, "/"); !strings.Contains(body, "being built") {
		t.Fatalf("the preview's build ended before production deployed (%q): the test proves nothing", body)
	}
}

// waitFor polls cond for up to 20 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 20s for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
