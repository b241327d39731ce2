// Package bench holds hawser's benchmarks: the idle tick and the latency
// from a push to serving here, resident memory and recreate overhead in
// scripts next to it. README.md says how to run each and what it measured.
package bench

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"hawser.dev/hawser/reconciler"
	"hawser.dev/hawser/reconciler/converge"
	"hawser.dev/hawser/reconciler/dockertest"
	"hawser.dev/hawser/reconciler/gittest"
	"hawser.dev/hawser/reconciler/registrytest"
	"hawser.dev/hawser/reconciler/source"
	"hawser.dev/hawser/registry"
)

// BenchmarkIdleTick measures one reconcile of a deployed project whose repo
// and configuration did not change: the cheap path of every scheduled poll.
// It fails when a tick does anything but one ls-remote and one container
// list, since that is what makes the path cheap. Its baseline, "floor", makes
// just those two calls on the same project, without the reconciler.
//
// The project "followed" runs its image from a registry on 127.0.0.1 under
// the default update policy (digest), and adds "registry-check": the tick
// `hawser serve` runs when HAWSER_REGISTRY_SCHEDULE is empty, which also asks
// the registry about every service's image.
//
//	go test -run '^$' -bench IdleTick -benchtime 200x ./bench/
func BenchmarkIdleTick(b *testing.B) {
	cases := []struct {
		services int
		followed bool
	}{{1, false}, {50, false}, {50, true}}
	for _, c := range cases {
		name := fmt.Sprintf("services=%d", c.services)
		if c.followed {
			name += ",followed"
		}
		b.Run(name, func(b *testing.B) {
			p := deployBenchProject(b, c.services, c.followed)
			b.Run("reconcile", func(b *testing.B) { p.measure(b, p.tick(reconciler.TriggerSchedule)) })
			b.Run("floor", func(b *testing.B) { p.measure(b, p.floor) })
			if c.followed {
				poll := reconciler.TriggerSchedule
				poll.Images = true // as Reconciler.Schedule polls without a registry schedule
				b.Run("registry-check", func(b *testing.B) { p.measure(b, p.tick(poll)) })
			}
		})
	}
}

// measure runs tick in a benchmark loop, checking that each one stays on the
// cheap path, and reports the calls and CPU time per tick.
func (p *benchProject) measure(b *testing.B, tick func(context.Context) error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	first := p.calls.Snapshot()
	registryBefore := p.registryRequests()
	b.ReportAllocs()
	self, children := cpuTime(b, syscall.RUSAGE_SELF), cpuTime(b, syscall.RUSAGE_CHILDREN)
	for b.Loop() {
		before := p.calls.Snapshot()
		if err := tick(ctx); err != nil {
			b.Fatalf("idle tick: %v", err)
		}
		if err := p.calls.Snapshot().Since(before).Cheap(); err != nil {
			b.Fatalf("idle tick left the cheap path: %v", err)
		}
	}
	selfCPU, childCPU := cpuTime(b, syscall.RUSAGE_SELF)-self, cpuTime(b, syscall.RUSAGE_CHILDREN)-children
	total := p.calls.Snapshot().Since(first)
	perOp := func(v float64) float64 { return v / float64(b.N) }
	b.ReportMetric(perOp(float64(total.DockerTotal())), "docker-calls/op")
	b.ReportMetric(perOp(float64(total.Docker[dockertest.ContainerList])), "container-lists/op")
	b.ReportMetric(perOp(float64(total.Inspects())), "inspects/op")
	b.ReportMetric(perOp(float64(total.LsRemotes)), "git-calls/op")
	b.ReportMetric(perOp(float64(selfCPU.Microseconds())/1000), "cpu-ms/op")
	b.ReportMetric(perOp(float64(childCPU.Microseconds())/1000), "child-cpu-ms/op")
	b.Logf("%d ticks; docker requests by path: %s", b.N, total.Breakdown())
	if p.registry != nil {
		requests := p.registry.Requests()[registryBefore:]
		b.ReportMetric(perOp(float64(len(requests))), "registry-calls/op")
		b.Logf("registry requests by path: %s", countStrings(requests))
	}
}

// countStrings lists each distinct string with how often it occurs.
func countStrings(list []string) string {
	counts := map[string]int{}
	for _, s := range list {
		counts[s]++
	}
	var parts []string
	for _, s := range slices.Sorted(maps.Keys(counts)) {
		parts = append(parts, fmt.Sprintf("%s=%d", s, counts[s]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// tick is one reconcile with trigger t.
func (p *benchProject) tick(t reconciler.Trigger) func(context.Context) error {
	return func(ctx context.Context) error { return p.rec.Reconcile(ctx, t) }
}

// registryRequests is how many requests the project's registry has had.
func (p *benchProject) registryRequests() int {
	if p.registry == nil {
		return 0
	}
	return len(p.registry.Requests())
}

// floor is the least an idle tick can do: ask git and list the containers.
func (p *benchProject) floor(ctx context.Context) error {
	if _, err := p.src.LsRemote(ctx); err != nil {
		return err
	}
	_, err := converge.List(ctx, p.docker, p.project)
	return err
}

// benchProject is a deployed project and the reconciler that keeps it.
type benchProject struct {
	project string
	rec     *reconciler.Reconciler
	src     reconciler.Source
	docker  *client.Client
	calls   *dockertest.Calls
	// registry serves the services' image when they follow one, else nil.
	registry *registrytest.Registry
}

// deployBenchProject deploys a project of n idle busybox services through a
// reconciler wired as `hawser serve` wires it, with every Docker request and
// every ls-remote counted. Followed services run an image pulled from a
// registry on 127.0.0.1, which the reconciler checks; the others run the
// local hawser-test/busybox:1.36 and the reconciler has no registry. The containers and
// the pulled image are removed when b ends.
func deployBenchProject(b *testing.B, n int, followed bool) *benchProject {
	b.Helper()
	calls := &dockertest.Calls{}
	docker := dockertest.CountingClient(b, calls.Docker)
	p := &benchProject{calls: calls, docker: docker}
	image := dockertest.Busybox(b, docker)
	if followed {
		p.registry = registrytest.Start(b)
		p.registry.PushBusybox(b, "bench/busybox", "1", "bench")
		dockertest.Cleanup(b, docker, b.Name()) // the pulled image, after the containers
		image = p.registry.Ref("bench/busybox", "1")
	}
	p.project = fmt.Sprintf("hawser-bench-%d-%d", n, time.Now().UnixNano()%1e9)
	b.Cleanup(func() { dockertest.RemoveLabelled(b, docker, converge.LabelProject+"="+p.project) })

	repo := gittest.New(b)
	repo.Commit("bench project", map[string]string{"compose.yaml": benchCompose(n, image)})
	deps := serveDeps(b, docker, repo.Dir)
	p.src = &countingSource{Source: deps.Source, calls: calls}
	deps.Source = p.src
	// A short settle only shortens the first deploy; idle ticks never wait.
	deps.Converger = &converge.Converger{Docker: docker, Log: deps.Log, HealthTimeout: 20 * time.Second, Settle: 100 * time.Millisecond}
	if followed {
		checker, err := registry.New(registry.Options{Log: deps.Log})
		if err != nil {
			b.Fatal(err)
		}
		deps.Registry = checker
	}
	env := map[string]string{}
	p.rec = reconciler.New(reconciler.Project{
		Name: p.project, Path: ".", KeepCheckouts: 3,
		Env: func() (map[string]string, error) { return env, nil },
	}, deps)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := p.rec.Reconcile(ctx, reconciler.TriggerStartup); err != nil {
		b.Fatalf("first deploy: %v", err)
	}
	assertAllRunning(b, ctx, docker, p.project, n)
	return p
}

// benchCompose is a project of n services that only sleep.
func benchCompose(n int, image string) string {
	var sb strings.Builder
	sb.WriteString("services:\n")
	for i := range n {
		fmt.Fprintf(&sb, "  s%02d:\n    image: %s\n    init: true\n    command: [\"sleep\", \"3600\"]\n", i+1, image)
	}
	return sb.String()
}

func assertAllRunning(b *testing.B, ctx context.Context, docker *client.Client, project string, n int) {
	b.Helper()
	list, err := converge.List(ctx, docker, project)
	if err != nil {
		b.Fatal(err)
	}
	running := 0
	for _, c := range list {
		if c.State == container.StateRunning {
			running++
		}
	}
	if running != n {
		b.Fatalf("%d of %d services running after the first deploy", running, n)
	}
}

// countingSource counts the git operations of the reconciler's source.
type countingSource struct {
	reconciler.Source
	calls *dockertest.Calls
}

func (s *countingSource) LsRemote(ctx context.Context) (source.Refs, error) {
	s.calls.LsRemote()
	return s.Source.LsRemote(ctx)
}

func (s *countingSource) Checkout(ctx context.Context, branch, commit string) (source.Checkout, error) {
	s.calls.Checkout()
	return s.Source.Checkout(ctx, branch, commit)
}

// cpuTime is the user plus system CPU time of the process (RUSAGE_SELF) or
// of its waited-for children (RUSAGE_CHILDREN), such as the git processes
// go-git runs for a file:// remote.
func cpuTime(b *testing.B, who int) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(who, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// The benchmark's guard must catch a tick that leaves the cheap path, or it
// could not fail.
func TestCheapPathRejectsInspectsAndExtraLists(t *testing.T) {
	tick := func(lsRemotes int, paths ...string) dockertest.Counts {
		c := &dockertest.Calls{}
		for range lsRemotes {
			c.LsRemote()
		}
		for _, p := range paths {
			method, path, _ := strings.Cut(p, " ")
			c.Docker(method, path)
		}
		return c.Snapshot().Since(dockertest.Counts{})
	}
	if err := tick(1, "GET /v1.41/containers/json").Cheap(); err != nil {
		t.Errorf("cheap tick rejected: %v", err)
	}
	for name, c := range map[string]dockertest.Counts{
		"inspect":       tick(1, "GET /v1.41/containers/json", "GET /v1.41/containers/3f2a9c/json"),
		"image inspect": tick(1, "GET /v1.41/containers/json", "GET /v1.41/images/hawser-test/busybox:1.36/json"),
		"two lists":     tick(1, "GET /v1.41/containers/json", "GET /v1.41/containers/json"),
		"no list":       tick(1),
		"two ls-remote": tick(2, "GET /v1.41/containers/json"),
		"a checkout":    func() dockertest.Counts { c := tick(1, "GET /v1.41/containers/json"); c.Checkouts = 1; return c }(),
	} {
		if err := c.Cheap(); err == nil {
			t.Errorf("%s: accepted as a cheap tick", name)
		}
	}
}
