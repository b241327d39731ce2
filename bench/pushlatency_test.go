package bench

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/robfig/cron/v3"

	"hawser.dev/hawser/proxy/proxytest"
	"hawser.dev/hawser/reconciler"
	"hawser.dev/hawser/reconciler/converge"
	"hawser.dev/hawser/reconciler/dockertest"
	"hawser.dev/hawser/reconciler/gittest"
	"hawser.dev/hawser/reconciler/source"
	"hawser.dev/hawser/reconciler/webhook"
)

// The daemon's settings this benchmark mirrors: cmd/hawser's webhookWindow
// and settle, and the defaults of HAWSER_SCHEDULE, HAWSER_HEALTH_TIMEOUT and
// HAWSER_DRAIN_TIMEOUT.
const (
	webhookWindow = 250 * time.Millisecond
	serveSettle   = time.Second
	pollPeriod    = time.Minute
	healthTimeout = 60 * time.Second
	drainTimeout  = 30 * time.Second
)

// pageEvery is how often the benchmark asks for the page, through the front
// end and, for the baseline, from the container itself.
const pageEvery = 20 * time.Millisecond

// pushSecret signs the benchmark's webhooks.
const pushSecret = "the-push-latency-benchmark-secret"

// BenchmarkPushToServing measures the time from a push of an image-only
// change (the image is already on the host: no pull, no build) to the front
// end serving the new container's page, when hawser hears of the push by
// its webhook and when it only polls every minute. Its baseline, measured
// in the same loop, is the container's own start and health time: the same
// service created and started by hand, and its published port asked every
// 20 ms until it answers with the new container's page.
//
// The poll waits a random part of a minute before each commit, so the
// commit falls at a random point of the schedule, as a real push does.
//
//	go test -run '^$' -bench 'PushToServing/webhook' -benchtime 5x -count 3 ./bench/
//	go test -run '^$' -bench 'PushToServing/poll-1m' -benchtime 5x -timeout 30m ./bench/
func BenchmarkPushToServing(b *testing.B) {
	b.Run("webhook", func(b *testing.B) {
		p := deployPushProject(b)
		p.measure(b, 0, p.serveWebhooks(b))
	})
	b.Run("poll-1m", func(b *testing.B) {
		p := deployPushProject(b)
		b.Cleanup(p.rec.Schedule(cron.Every(pollPeriod), nil, 0))
		p.measure(b, pollPeriod, func(string) {})
	})
}

// pushSample is one push: from the commit to the front end serving the new
// container, and to the ls-remote of the reconcile that deployed it.
type pushSample struct {
	serving, heard time.Duration
	// failed counts the front end's answers other than 200 meanwhile.
	failed int
}

// measure pushes in the benchmark loop, telling hawser of each push with
// notify after a random wait of up to phase, and starts the service by hand
// in the same loop, in alternating order.
func (p *pushProject) measure(b *testing.B, phase time.Duration, notify func(commit string)) {
	var pushes []pushSample
	var byHand []time.Duration
	for i := 0; b.Loop(); i++ {
		measures := []func(){
			func() {
				if phase > 0 {
					time.Sleep(rand.N(phase))
				}
				pushes = append(pushes, p.push(b, notify, i == 0))
			},
			func() { byHand = append(byHand, p.startByHand(b)) },
		}
		if i%2 == 1 {
			slices.Reverse(measures)
		}
		for _, m := range measures {
			m()
		}
	}
	reportPushes(b, pushes, byHand)
}

// reportPushes reports the medians of the pushes against the baseline's,
// and logs every sample.
func reportPushes(b *testing.B, pushes []pushSample, byHand []time.Duration) {
	var serving, heard, deploying []time.Duration
	failed := 0
	for _, s := range pushes {
		serving, heard, deploying = append(serving, s.serving), append(heard, s.heard), append(deploying, s.serving-s.heard)
		failed += s.failed
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	push, base := median(serving), median(byHand)
	// An iteration also starts the baseline and, polling, waits at random.
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(ms(push), "ms/push")
	b.ReportMetric(ms(base), "baseline-ms")
	b.ReportMetric(ms(push-base), "overhead-ms")
	b.ReportMetric(float64(push)/float64(base), "x-baseline")
	b.ReportMetric(ms(median(heard)), "heard-ms")
	b.ReportMetric(ms(median(deploying)), "deploy-ms")
	b.ReportMetric(ms(slices.Max(serving)), "max-ms/push")
	b.ReportMetric(float64(failed)/float64(len(pushes)), "non-200/push")
	b.Logf("push to serving: %v", roundAll(serving))
	b.Logf("of which until the reconcile's ls-remote: %v", roundAll(heard))
	b.Logf("baseline, create + start + first page by hand: %v", roundAll(byHand))
}

func median(ds []time.Duration) time.Duration {
	s := slices.Sorted(slices.Values(ds))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}

// pushProject is a deployed project of one routed service behind a real
// front end, kept by a reconciler wired as `hawser serve` wires it and
// running as it runs, with its git and Docker calls on a timeline.
type pushProject struct {
	name     string
	repo     *gittest.Repo
	rec      *reconciler.Reconciler
	conv     *converge.Converger
	log      *slog.Logger
	docker   *client.Client // the benchmark's own calls, kept off the timeline
	http     *http.Client
	front    string    // the front end's address
	tags     [2]string // two names of one image
	deployed string    // the one the project runs
	timeline *timeline
}

// deployPushProject deploys the project and starts its reconciler's Run.
// The containers, the second tag and the containers started by hand are
// removed when b ends.
func deployPushProject(b *testing.B) *pushProject {
	b.Helper()
	docker := dockertest.Client(b)
	p := &pushProject{
		name: fmt.Sprintf("hawser-push-%d", time.Now().UnixNano()%1e9), repo: gittest.New(b),
		docker: docker, http: &http.Client{Timeout: 5 * time.Second}, timeline: &timeline{},
	}
	p.tags = [2]string{dockertest.Busybox(b, docker), secondTag(b, docker)}
	p.deployed = p.tags[0]
	b.Cleanup(func() { dockertest.RemoveLabelled(b, docker, converge.LabelProject+"="+p.name) })
	dockertest.Cleanup(b, docker, b.Name())
	b.Cleanup(p.http.CloseIdleConnections)
	p.repo.Commit("deploy", map[string]string{"compose.yaml": pushCompose(p.deployed)})

	traced := dockertest.CountingClient(b, func(method, path string) { p.timeline.add(method + " " + dockertest.NormalPath(path)) })
	deps := serveDeps(b, traced, p.repo.Dir)
	deps.Source = &timedSource{Source: deps.Source, timeline: p.timeline}
	_, routes, front := proxytest.Serve(b)
	deps.Router, p.front, p.log = routes, front, deps.Log
	p.conv = &converge.Converger{Docker: traced, Log: deps.Log, HealthTimeout: healthTimeout, Settle: serveSettle, DrainTimeout: drainTimeout}
	deps.Converger = p.conv
	// Images are not pruned, unlike serve's default: the two tags are of
	// the image every other test runs.
	p.rec = reconciler.New(reconciler.Project{
		Name: p.name, Path: ".", KeepCheckouts: 5,
		Env:   func() (map[string]string, error) { return map[string]string{}, nil },
		Hosts: reconciler.Hosts{Domain: p.name + ".localhost"},
	}, deps)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := p.rec.Reconcile(ctx, reconciler.TriggerStartup); err != nil {
		b.Fatalf("first deploy: %v", err)
	}
	if _, _, err := p.waitNewPage(ctx, ""); err != nil {
		b.Fatal(err)
	}
	p.run(b)
	return p
}

// pushCompose is the project: busybox httpd serving a page with the
// container's host name, which is its short ID, so each container's page
// is its own.
func pushCompose(image string) string {
	return `services:
  web:
    image: ` + image + `
    init: true
    command: ["sh", "-c", "echo $$HOSTNAME > /www/index.html; exec httpd -f -p 8080 -h /www"]
    labels:
      dev.hawser.http.port: "8080"
`
}

// secondTag gives the busybox image a second name for the test, so that
// switching between the two is an image-only change with nothing to pull
// or build; the name is removed when b ends.
func secondTag(b *testing.B, docker *client.Client) string {
	b.Helper()
	repo, _, _ := strings.Cut(dockertest.BusyboxImage, ":")
	tag := fmt.Sprintf("%s:push-%d", repo, time.Now().UnixNano()%1e9)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := docker.ImageTag(ctx, client.ImageTagOptions{Source: dockertest.BusyboxImage, Target: tag}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := docker.ImageRemove(ctx, tag, client.ImageRemoveOptions{}); err != nil {
			b.Errorf("remove tag %s: %v", tag, err)
		}
	})
	return tag
}

// run serves reconcile requests as `hawser serve` does, until b ends.
func (p *pushProject) run(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.rec.Run(ctx, 5*time.Minute) }()
	b.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("reconciler: %v", err)
		}
	})
}

// serveWebhooks serves the project's webhook receiver on 127.0.0.1, wired
// as cmd/hawser wires it, and returns what a git host does after a push:
// send a signed GitHub push event for the commit.
func (p *pushProject) serveWebhooks(b *testing.B) func(commit string) {
	b.Helper()
	hooks, err := webhook.New(webhook.Options{
		Secret: pushSecret,
		Wanted: p.rec.Watches,
		Trigger: func(webhook.Event) {
			p.rec.RequestBatched(reconciler.TriggerWebhook, webhookWindow)
		},
		Log:        p.log.With("component", "webhook"),
		Registerer: prometheus.NewRegistry(),
	})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(hooks)
	b.Cleanup(srv.Close)
	return func(commit string) {
		if err := githubPush(srv.Client(), srv.URL+"/webhook/github", commit); err != nil {
			b.Fatal(err)
		}
		p.timeline.add("webhook accepted")
	}
}

// githubPush sends what GitHub sends for a push of commit to main, and
// wants it accepted.
func githubPush(c *http.Client, url, commit string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	body := fmt.Sprintf(`{"ref": "refs/heads/main", "after": %q, "deleted": false}`, commit)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return err
	}
	mac := hmac.New(sha256.New, []byte(pushSecret))
	mac.Write([]byte(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", commit)
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var answer struct{ Result, Message string }
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil {
		return fmt.Errorf("webhook answer %d: %w", resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusAccepted || answer.Result != "accepted" {
		return fmt.Errorf("webhook answered %d %s: %s", resp.StatusCode, answer.Result, answer.Message)
	}
	return nil
}

// push commits the other tag, tells hawser with notify and waits until the
// front end serves the new container's page; then it checks that the page
// is that of a container of the new tag, and waits for the deployment to be
// recorded so the next push starts on an idle reconciler. logTimeline logs
// what happened, by when.
func (p *pushProject) push(b *testing.B, notify func(commit string), logTimeline bool) pushSample {
	b.Helper()
	// A poll may wait a whole period before it looks.
	ctx, cancel := context.WithTimeout(context.Background(), pollPeriod+2*time.Minute)
	defer cancel()
	code, old, err := p.page(ctx)
	if err != nil || code != http.StatusOK {
		b.Fatalf("the front end answers %d %q, %v", code, old, err)
	}
	p.deployed = p.other()
	commit := p.repo.Commit("image "+p.deployed, map[string]string{"compose.yaml": pushCompose(p.deployed)})
	start := p.timeline.reset()
	notify(commit)
	page, failed, err := p.waitNewPage(ctx, old)
	if err != nil {
		b.Fatal(err)
	}
	serving := time.Since(start)
	p.timeline.add("front end serves the new page")
	if logTimeline {
		b.Logf("timeline of the first push: %s", p.timeline)
	}
	heard, ok := p.timeline.first(lsRemote)
	if !ok {
		b.Fatal("the new page is served, but no ls-remote was seen after the commit")
	}
	p.checkServedBy(b, ctx, page, commit)
	p.waitRecorded(b, ctx, commit, start)
	return pushSample{serving: serving, heard: heard, failed: failed}
}

// other is the tag the project does not run.
func (p *pushProject) other() string {
	if p.deployed == p.tags[0] {
		return p.tags[1]
	}
	return p.tags[0]
}

// checkServedBy fails b unless page is the host name of a running
// container of the project that runs the commit and the tag just pushed.
func (p *pushProject) checkServedBy(b *testing.B, ctx context.Context, page, commit string) {
	b.Helper()
	list, err := converge.List(ctx, p.docker, p.name)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range list {
		if strings.HasPrefix(c.ID, page) && c.State == container.StateRunning &&
			c.Labels[converge.LabelCommit] == commit && c.Labels[converge.LabelImageRef] == p.deployed {
			return
		}
	}
	b.Fatalf("the front end serves %q, which is no running container of commit %s and image %s", page, commit, p.deployed)
}

// waitRecorded waits until the reconcile that started after start has
// deployed commit.
func (p *pushProject) waitRecorded(b *testing.B, ctx context.Context, commit string, start time.Time) {
	b.Helper()
	for {
		st, err := p.rec.Status(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if st.LastReconcile.After(start) && st.RunningCommit == commit {
			if st.LastResult != "deployed" {
				b.Fatalf("the push of %s: %s %s", commit, st.LastResult, st.LastError)
			}
			return
		}
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			b.Fatalf("the push of %s is not recorded: %v", commit, err)
		}
	}
}

// waitNewPage asks the front end for the project's page every pageEvery
// until it answers 200 with a page other than old. It returns that page and
// how many answers meanwhile were not a 200.
func (p *pushProject) waitNewPage(ctx context.Context, old string) (string, int, error) {
	failed := 0
	for {
		code, page, err := p.page(ctx)
		if err == nil && code == http.StatusOK && page != old && page != "" {
			return page, failed, nil
		}
		if err != nil || code != http.StatusOK {
			failed++
		}
		if serr := sleepCtx(ctx, pageEvery); serr != nil {
			return "", failed, fmt.Errorf("the front end serves no new page (last answer %d %q, %v): %w", code, page, err, serr)
		}
	}
}

// page asks the front end for the project's page.
func (p *pushProject) page(ctx context.Context) (int, string, error) {
	return p.get(ctx, "http://"+p.front+"/", p.name+".localhost")
}

// get GETs url with Host host, when set, and returns the status and body.
func (p *pushProject) get(ctx context.Context, url, host string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	req.Host = host
	resp, err := p.http.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(body)), err
}

// startByHand is the baseline: the container's own start and health time.
// It creates and starts a container of the same service as the one
// running (its configuration and host configuration, labelled as the test's
// instead of the project's), then asks its port published on 127.0.0.1
// every pageEvery until it answers with its own page. It returns the time
// from the create call to that answer, and removes the container.
func (p *pushProject) startByHand(b *testing.B) time.Duration {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg, host := p.runningSpec(b, ctx)
	start := time.Now()
	created, err := p.docker.ContainerCreate(ctx, client.ContainerCreateOptions{Config: cfg, HostConfig: host})
	if err != nil {
		b.Fatal(err)
	}
	defer p.removeByHand(b, created.ID)
	if _, err := p.docker.ContainerStart(ctx, created.ID, client.ContainerStartOptions{}); err != nil {
		b.Fatal(err)
	}
	url := p.upstream(b, ctx, created.ID) + "/"
	for {
		code, page, err := p.get(ctx, url, "")
		if err == nil && code == http.StatusOK && strings.HasPrefix(created.ID, page) && page != "" {
			return time.Since(start)
		}
		if serr := sleepCtx(ctx, pageEvery); serr != nil {
			b.Fatalf("the container started by hand never served its page (last answer %d %q, %v): %v", code, page, err, serr)
		}
	}
}

// runningSpec is the configuration of the project's running container,
// for a new one: labelled as the test's, with a host name of its own.
func (p *pushProject) runningSpec(b *testing.B, ctx context.Context) (*container.Config, *container.HostConfig) {
	b.Helper()
	list, err := converge.List(ctx, p.docker, p.name)
	if err != nil || len(list) != 1 {
		b.Fatalf("the project's containers: %d, %v", len(list), err)
	}
	res, err := p.docker.ContainerInspect(ctx, list[0].ID, client.ContainerInspectOptions{})
	if err != nil {
		b.Fatal(err)
	}
	cfg := *res.Container.Config
	cfg.Hostname = ""
	cfg.Labels = map[string]string{dockertest.Label: b.Name()}
	return &cfg, res.Container.HostConfig
}

// upstream is where the front end would reach a container: its port
// published on 127.0.0.1.
func (p *pushProject) upstream(b *testing.B, ctx context.Context, id string) string {
	b.Helper()
	res, err := p.docker.ContainerList(ctx, client.ContainerListOptions{Filters: client.Filters{}.Add("id", id)})
	if err != nil || len(res.Items) != 1 {
		b.Fatalf("list container %s: %d, %v", id, len(res.Items), err)
	}
	url := p.conv.Upstream(res.Items[0], 8080)
	if url == "" {
		b.Fatalf("container %s publishes no port 8080 on 127.0.0.1", id)
	}
	return url
}

func (p *pushProject) removeByHand(b *testing.B, id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := p.docker.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true}); err != nil {
		b.Errorf("remove container %s: %v", id, err)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// lsRemote is the timeline's name for the source's ls-remote.
const lsRemote = "ls-remote"

// timedSource puts the source's ls-remotes on a timeline.
type timedSource struct {
	reconciler.Source
	timeline *timeline
}

func (s *timedSource) LsRemote(ctx context.Context) (source.Refs, error) {
	s.timeline.add(lsRemote)
	return s.Source.LsRemote(ctx)
}

// timeline is what happened since a push, by when: the reconciler's
// ls-remotes and Docker requests (when they were sent), the webhook's
// answer and the first new page.
type timeline struct {
	mu     sync.Mutex
	start  time.Time
	events []timedEvent
}

type timedEvent struct {
	at   time.Duration
	what string
}

// reset starts the timeline anew and returns when.
func (t *timeline) reset() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.start, t.events = time.Now(), nil
	return t.start
}

func (t *timeline) add(what string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.events = append(t.events, timedEvent{time.Since(t.start), what})
}

// first is when what first happened since the start.
func (t *timeline) first(what string) (time.Duration, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, e := range t.events {
		if e.what == what {
			return e.at, true
		}
	}
	return 0, false
}

func (t *timeline) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	parts := make([]string, len(t.events))
	for i, e := range t.events {
		parts[i] = fmt.Sprintf("%d ms %s", e.at.Milliseconds(), e.what)
	}
	return strings.Join(parts, " · ")
}
