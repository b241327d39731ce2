package images_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"hawser.dev/hawser/reconciler/images"
)

const (
	queueLength = "hawser_build_queue_length"
	inProgress  = "hawser_builds_in_progress"
)

// gauge reads the gauge name from reg.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name && len(f.GetMetric()) == 1 {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no gauge %s", name)
	return 0
}

// awaitGauge waits until the gauge name in reg is want.
func awaitGauge(t *testing.T, reg *prometheus.Registry, name string, want float64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for gauge(t, reg, name) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v, want %v", name, gauge(t, reg, name), want)
		}
		time.Sleep(time.Millisecond)
	}
}

// admissions runs waiters against q and reports their names as each is
// admitted.
type admissions struct {
	t     *testing.T
	q     *images.Queue
	order chan string
	wg    sync.WaitGroup
}

func newAdmissions(t *testing.T, q *images.Queue) *admissions {
	a := &admissions{t: t, q: q, order: make(chan string, 10)}
	t.Cleanup(a.wg.Wait)
	return a
}

// wait starts a waiter; one still waiting when the test ends gives up then,
// so a test that fails does not hang.
func (a *admissions) wait(name string, p images.Priority) {
	ctx := a.t.Context()
	a.wg.Go(func() {
		if err := a.q.Acquire(ctx, p); err != nil {
			if ctx.Err() == nil {
				a.t.Errorf("%s: %v", name, err)
			}
			return
		}
		a.order <- name
	})
}

// next is the name of the next waiter admitted.
func (a *admissions) next() string {
	a.t.Helper()
	select {
	case name := <-a.order:
		return name
	case <-time.After(5 * time.Second):
		a.t.Fatal("no waiter admitted")
		return ""
	}
}

func TestProductionWaiterIsAdmittedBeforeEarlierPreviewWaiters(t *testing.T) {
	reg := prometheus.NewRegistry()
	q := images.NewQueue(1, reg)
	if err := q.Acquire(bounded(t), images.Preview); err != nil {
		t.Fatal(err)
	}
	a := newAdmissions(t, q)
	a.wait("preview-1", images.Preview)
	awaitGauge(t, reg, queueLength, 1)
	a.wait("preview-2", images.Preview)
	awaitGauge(t, reg, queueLength, 2)
	a.wait("production", images.Production)
	awaitGauge(t, reg, queueLength, 3)

	for _, want := range []string{"production", "preview-1", "preview-2"} {
		q.Release()
		if got := a.next(); got != want {
			t.Fatalf("admitted %s, want %s", got, want)
		}
		if n := gauge(t, reg, inProgress); n != 1 {
			t.Errorf("%s = %v with one slot taken, want 1", inProgress, n)
		}
	}
	q.Release()
	if l, n := gauge(t, reg, queueLength), gauge(t, reg, inProgress); l != 0 || n != 0 {
		t.Errorf("after the last release: queue %v, in progress %v; want 0, 0", l, n)
	}
}

func TestFreeSlotsAdmitAtOnceUpToTheLimit(t *testing.T) {
	reg := prometheus.NewRegistry()
	q := images.NewQueue(2, reg)
	for range 2 {
		if err := q.Acquire(bounded(t), images.Preview); err != nil {
			t.Fatal(err)
		}
	}
	if n := gauge(t, reg, inProgress); n != 2 {
		t.Errorf("%s = %v, want 2", inProgress, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := q.Acquire(ctx, images.Production); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("third acquire with two slots = %v, want it to wait until its deadline", err)
	}
	q.Release()
	q.Release()
}

func TestCancelledWaiterLeavesTheQueueWithoutASlot(t *testing.T) {
	reg := prometheus.NewRegistry()
	q := images.NewQueue(1, reg)
	if err := q.Acquire(bounded(t), images.Production); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- q.Acquire(ctx, images.Production) }()
	awaitGauge(t, reg, queueLength, 1)
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled acquire = %v, want context.Canceled", err)
	}
	if l := gauge(t, reg, queueLength); l != 0 {
		t.Errorf("%s = %v after the waiter left, want 0", queueLength, l)
	}

	// The slot goes to the next waiter, not to the one that left.
	a := newAdmissions(t, q)
	a.wait("next", images.Preview)
	awaitGauge(t, reg, queueLength, 1)
	q.Release()
	if got := a.next(); got != "next" {
		t.Fatalf("admitted %s, want next", got)
	}
	q.Release()
	if n := gauge(t, reg, inProgress); n != 0 {
		t.Errorf("%s = %v after all releases, want 0", inProgress, n)
	}
}

func TestQueueWithoutRegistererHasNoMetrics(t *testing.T) {
	q := images.NewQueue(1, nil)
	if err := q.Acquire(bounded(t), images.Production); err != nil {
		t.Fatal(err)
	}
	q.Release()
}

func TestBuildWaitsForASlot(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	q := images.NewQueue(1, nil)
	if err := q.Acquire(bounded(t), images.Production); err != nil {
		t.Fatal(err)
	}
	defer q.Release()
	i := images.New(e.docker, e.logDir, slog.New(slog.NewTextHandler(t.Output(), nil)), images.WithQueue(q, images.Preview))
	p := e.project(buildProject(e.name))
	svc, err := p.GetService("web")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err = i.Ensure(ctx, p, svc, commit)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ensure with no free slot = %v, want it to wait until its deadline", err)
	}
	if n := e.docker.builds.Load(); n != 0 {
		t.Errorf("%d builds reached the engine with no free slot, want 0", n)
	}
}

func TestConcurrentEnsuresOfTheSameCommitBuildOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	files := buildProject(e.name)
	// Long enough that both calls are asked for while the build runs.
	files["Dockerfile"] += "RUN sleep 1\n"
	p := e.project(files)
	svc, err := p.GetService("web")
	if err != nil {
		t.Fatal(err)
	}
	q := images.NewQueue(2, nil)
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	// Two Images sharing the queue, as production and a preview reconciler do.
	shared := []*images.Images{
		images.New(e.docker, e.logDir, log, images.WithQueue(q, images.Production)),
		images.New(e.docker, e.logDir, log, images.WithQueue(q, images.Preview)),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var got [2]images.Image
	var wg sync.WaitGroup
	for n, i := range shared {
		wg.Go(func() {
			img, err := i.Ensure(ctx, p, svc, commit)
			if err != nil {
				t.Errorf("ensure %d: %v", n, err)
			}
			got[n] = img
		})
	}
	wg.Wait()
	if n := e.docker.builds.Load(); n != 1 {
		t.Errorf("%d builds, want 1", n)
	}
	if got[0].ID == "" || got[0].ID != got[1].ID || got[0].Ref != got[1].Ref {
		t.Errorf("images %+v and %+v, want the same one", got[0], got[1])
	}
	if got[0].Built == got[1].Built {
		t.Errorf("built flags %v and %v, want exactly one call to report the build", got[0].Built, got[1].Built)
	}
}

func TestWaiterForABuildWhoseCallerLeftRunsItItself(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.project(buildProject(e.name))
	svc, err := p.GetService("web")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	q := images.NewQueue(1, reg)
	if err := q.Acquire(bounded(t), images.Production); err != nil {
		t.Fatal(err)
	}
	i := images.New(e.docker, e.logDir, slog.New(slog.NewTextHandler(t.Output(), nil)), images.WithQueue(q, images.Preview))

	// The first caller starts the build, which waits for the slot, and
	// gives up; the second joined it meanwhile.
	leaving, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	left := make(chan error, 1)
	go func() { _, err := i.Ensure(leaving, p, svc, commit); left <- err }()
	awaitGauge(t, reg, queueLength, 1)
	staying := make(chan error, 1)
	var img images.Image
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		var err error
		img, err = i.Ensure(ctx, p, svc, commit)
		staying <- err
	}()
	if err := <-left; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("leaving caller = %v, want its deadline", err)
	}
	awaitGauge(t, reg, queueLength, 1)
	q.Release()
	if err := <-staying; err != nil {
		t.Fatalf("staying caller: %v", err)
	}
	if !img.Built || e.docker.builds.Load() != 1 {
		t.Errorf("image %+v after %d builds, want the staying caller's own build", img, e.docker.builds.Load())
	}
}

// bounded is a context that ends the test's wait instead of hanging it
// when the queue never admits.
func bounded(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}
