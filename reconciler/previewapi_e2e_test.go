package reconciler_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"hawser.dev/hawser/reconciler"
	"hawser.dev/hawser/reconciler/preview"
)

func TestWakePreviewStartsASleepingPreviewAtOnce(t *testing.T) {
	h, addr := previewHarness(t, "feat/nap")
	h.previews.Idle, h.previews.WakeTimeout = time.Second, time.Minute
	h.start()
	h.push("feat/nap", previewed("rested"))
	h.mustReconcile()
	slug := preview.Slug("feat/nap")
	name := preview.ProjectName(h.project, slug)
	time.Sleep(1500 * time.Millisecond)
	h.mustReconcile()
	if n := h.runningIn(name); n != 0 {
		t.Fatalf("%d containers of the idle preview still run", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := h.rec.WakePreview(ctx, slug); err != nil {
		t.Fatal(err)
	}
	if h.runningIn(name) == 0 {
		t.Fatal("the preview did not wake")
	}
	st, err := h.rec.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Previews) != 1 || st.Previews[0].State != "running" {
		t.Errorf("previews = %+v", st.Previews)
	}
	if code, body := h.fetch(addr, slug+"."+h.project+".preview.localhost", "/"); code != 200 || body != "rested" {
		t.Errorf("the woken preview answers %d %q", code, body)
	}
	// Being woken counts as a request: the next tick leaves it awake.
	h.mustReconcile()
	if h.runningIn(name) == 0 {
		t.Error("the preview fell asleep again at once")
	}
	if err := h.rec.WakePreview(ctx, "nothing-like-this"); !errors.Is(err, reconciler.ErrUnknownPreview) {
		t.Errorf("waking an unknown preview: %v", err)
	}
}

func TestDestroyedPreviewOfALiveBranchComesBackAfresh(t *testing.T) {
	h, addr := previewHarness(t, "feat/gone")
	h.push("feat/gone", previewed("first"))
	h.mustReconcile()
	slug := preview.Slug("feat/gone")
	name := preview.ProjectName(h.project, slug)
	host := slug + "." + h.project + ".preview.localhost"
	if code, body := h.fetch(addr, host, "/"); code != 200 || body != "first" {
		t.Fatalf("the preview answers %d %q", code, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rec, err := h.rec.DestroyPreview(ctx, slug)
	if err != nil || rec.Branch != "feat/gone" {
		t.Fatalf("destroy: %+v, %v", rec, err)
	}
	if n := h.projectContainers(name); n != 0 {
		t.Fatalf("%d containers of the destroyed preview are left", n)
	}
	if code, body := h.fetch(addr, host, "/"); code == 200 {
		t.Fatalf("the destroyed preview still answers %q", body)
	}
	if st, err := h.rec.Status(ctx); err != nil || len(st.Previews) != 0 {
		t.Fatalf("previews = %+v, %v", st.Previews, err)
	}
	h.mustReconcile()
	deadline := time.Now().Add(time.Minute)
	for code, body := h.fetch(addr, host, "/"); code != 200 || body != "first"; code, body = h.fetch(addr, host, "/") {
		if time.Now().After(deadline) {
			t.Fatalf("the preview of the live branch did not come back: %d %q", code, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, err := h.rec.DestroyPreview(ctx, "nothing-like-this"); !errors.Is(err, reconciler.ErrUnknownPreview) {
		t.Errorf("destroying an unknown preview: %v", err)
	}
}
