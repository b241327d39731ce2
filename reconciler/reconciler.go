// Package reconciler keeps one compose project on the local Docker engine in
// step with a git branch and the host's configuration. Each reconcile runs
// the same ordered steps: source, checkout, load, images, plan, apply,
// record. A tick where nothing changed stops after one ls-remote and one
// container list.
package reconciler

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/compose-spec/compose-go/v2/types"

	"hawser.dev/hawser/proxy"
	"hawser.dev/hawser/reconciler/converge"
	"hawser.dev/hawser/reconciler/images"
	"hawser.dev/hawser/reconciler/source"
	"hawser.dev/hawser/reconciler/store"
)

// Source is the git side of a project.
type Source interface {
	LsRemote(ctx context.Context) (source.Refs, error)
	Checkout(ctx context.Context, branch, commit string) (source.Checkout, error)
	Activate(commit string) (string, error)
	Current() (string, error)
	Prune(keep int, inUse ...string) error
}

// Images gets the image of each service for a commit, and the updates of
// followed images.
type Images interface {
	Ensure(ctx context.Context, p *types.Project, svc types.ServiceConfig, commit string) (images.Image, error)
	Pull(ctx context.Context, ref string) (images.Image, error)
	Rebuild(ctx context.Context, p *types.Project, svc types.ServiceConfig, commit string) (images.Image, error)
	Inspect(ctx context.Context, ref string) (images.Image, error)
	Prune(ctx context.Context, project string, candidates, keep []string) ([]string, error)
}

// Project says what one reconciler keeps in step.
type Project struct {
	// Name is the compose project name.
	Name string
	// Branch is the watched branch; empty means the remote's default branch.
	Branch string
	// Path is the directory of the compose files inside the repository.
	Path string
	// ComposeFiles are the compose files relative to Path; empty means
	// compose's default names.
	ComposeFiles []string
	Profiles     []string
	// Env returns the host's configuration for the project's interpolation.
	// It is called on every tick, so it should be cheap when nothing changed.
	Env func() (map[string]string, error)
	// KeepCheckouts is how many old checkouts to keep for rollback.
	KeepCheckouts int
	// PruneImages removes images no container and no kept deployment uses
	// after a successful deployment.
	PruneImages bool
	// Hosts names the hosts of routed services.
	Hosts Hosts
	// Transform, when set, changes the loaded project before it is
	// deployed; previews use it to isolate their copy. root is the stable
	// checkout path.
	Transform func(p *types.Project, root string) error
	// Previews, with branches, gives matching branches previews.
	Previews Previews
	// Touch, when set, is told of every request to the project's routes.
	Touch func()
	// Auth, when set, protects every route of the project.
	Auth *proxy.BasicAuth
}

// Deps are the reconciler's collaborators, wired by main.
type Deps struct {
	Source Source
	Images Images
	// Registry checks followed images; nil turns image updates off.
	Registry Registry
	// Router is the front end; nil leaves services unrouted. New makes the
	// converger move traffic through it.
	Router    Router
	Converger *converge.Converger
	Store     *store.Store
	Metrics   *Metrics
	Log       *slog.Logger
	// Disk measures volumes for Previews; nil leaves their sizes at zero.
	Disk DiskUsage
}

// Reconciler owns one project. Its methods are safe for concurrent use;
// reconciles never overlap.
type Reconciler struct {
	project   Project
	source    Source
	images    Images
	registry  Registry
	router    Router
	traffic   *traffic
	docker    converge.Docker
	converger *converge.Converger
	store     *store.Store
	disk      DiskUsage
	sizes     struct {
		mu    sync.Mutex
		at    time.Time
		bytes map[string]int64 // by compose project
	}
	metrics *Metrics
	log     *slog.Logger

	// run serialises reconciles; the fields below it are only touched by a
	// reconcile, under run.
	run     sync.Mutex
	applied applied
	watched string
	bases   map[string][]string // base image ref -> its local repo digests
	routed  bool                // routes were installed since the start
	retired bool                // a preview's, torn down: it does nothing more

	pv previewSet

	// wake tells Run that pending holds a request.
	wake chan struct{}

	mu      sync.Mutex // guards pending, batch and status
	pending *Trigger
	batch   *Trigger // requests waiting for RequestBatched's window
	status  Status

	logs logBook // what the deployment in progress and the last few did
}

// applied is the state the running containers were created from.
type applied struct {
	commit  string
	config  string
	desired *converge.Desired
}

// New returns a reconciler for one project.
func New(p Project, d Deps) *Reconciler {
	r := &Reconciler{
		project: p, source: d.Source, images: d.Images, registry: d.Registry, router: d.Router,
		docker: d.Converger.Docker, converger: d.Converger,
		store: d.Store, disk: d.Disk, metrics: d.Metrics, log: d.Log.With("project", p.Name),
		wake:   make(chan struct{}, 1),
		status: Status{Project: p.Name},
	}
	if d.Router != nil {
		r.traffic = &traffic{r: r}
		d.Converger.Traffic = r.traffic
	}
	return r
}

// Reconcile runs one reconcile now: production's, then the previews',
// waiting for both.
func (r *Reconciler) Reconcile(ctx context.Context, t Trigger) error {
	err := r.reconcileProduction(ctx, t)
	if perr := r.startPreviews(ctx, 0).wait(); perr != nil {
		r.log.Error("previews", "err", perr)
	}
	return err
}

// reconcileProduction runs the steps for the watched branch and installs
// its routes.
func (r *Reconciler) reconcileProduction(ctx context.Context, t Trigger) (err error) {
	r.run.Lock()
	defer r.run.Unlock()
	if err := ctx.Err(); err != nil {
		return err // ended while waiting for the lock: nothing was tried
	}
	if r.retired {
		return errRetired
	}
	start := time.Now()
	result := resultUnchanged
	defer func() {
		if err != nil {
			result = resultFailed
		}
		r.metrics.reconciles.WithLabelValues(result).Inc()
		r.metrics.duration.Observe(time.Since(start).Seconds())
		if err == nil {
			r.metrics.lastSuccess.SetToCurrentTime()
		}
		r.setStatus(func(s *Status) { s.LastReconcile, s.LastResult = start, result; s.LastError = errString(err) })
	}()
	result, err = r.reconcile(ctx, t)
	// Production's routes first: previews may take long to build, and
	// production's hosts win over theirs.
	if result != resultUnchanged || !r.routed {
		if rerr := r.refreshRoutes(ctx); rerr != nil {
			r.log.Error("front end routes", "err", rerr)
		} else {
			r.routed = r.applied.desired != nil
		}
	}
	return err
}

func (r *Reconciler) reconcile(ctx context.Context, t Trigger) (string, error) {
	env, err := r.project.Env()
	if err != nil {
		return "", err
	}
	cfgDigest := configDigest(r.project, env)
	branch, head, err := r.watch(ctx)
	if err != nil {
		return "", err
	}
	commit, paused, err := r.target(head)
	if err != nil {
		return "", err
	}
	if paused {
		t.Images = false
		if commit == "" {
			return r.keepRunning(ctx, t, branch, env, cfgDigest)
		}
	}
	current := commit == r.applied.commit && cfgDigest == r.applied.config
	if current && t.Images && r.registry != nil {
		if u := r.checkImages(ctx); !u.empty() {
			t.Name, t.updates = "image update", u
			return r.deploy(ctx, t, branch, commit, env, cfgDigest)
		}
	}
	switch {
	case current && !t.Force && len(t.Recreate) == 0:
		return r.checkDrift(ctx, branch)
	case !t.Force && r.failedBefore(commit, cfgDigest):
		return r.keepRunning(ctx, t, branch, env, cfgDigest)
	}
	return r.deploy(ctx, t, branch, commit, env, cfgDigest)
}

// watch is the cheap check: one ls-remote.
func (r *Reconciler) watch(ctx context.Context) (branch, commit string, err error) {
	refs, err := r.source.LsRemote(ctx)
	if err != nil {
		return "", "", err
	}
	branch, commit, err = head(refs, r.project.Branch)
	if err != nil {
		return "", "", err
	}
	r.pv.seen.Store(&seenRefs{refs: refs, production: branch})
	if r.watched != commit {
		r.watched = commit
		r.metrics.observeCommit(branch, commit)
	}
	r.setStatus(func(s *Status) { s.Branch, s.WatchedCommit = branch, commit })
	return branch, commit, nil
}

// head finds where the watched branch points.
func head(refs source.Refs, branch string) (string, string, error) {
	if branch == "" {
		branch = refs.Default
	}
	commit, ok := refs.Branches[branch]
	if !ok {
		return "", "", fmt.Errorf("branch %q not found on the remote", branch)
	}
	return branch, commit, nil
}

// checkDrift compares the running containers with the applied state, by
// their labels, and repairs what differs.
func (r *Reconciler) checkDrift(ctx context.Context, branch string) (string, error) {
	actual, err := converge.List(ctx, r.docker, r.project.Name)
	if err != nil {
		return "", err
	}
	if converge.NewPlan(r.applied.desired, actual).Empty() {
		if r.router != nil && r.routed {
			if routes := r.routes(r.applied.desired, actual); r.routesChanged(routes) {
				return resultUnchanged, r.installRoutes(routes)
			}
		}
		return resultUnchanged, nil
	}
	return r.record(Trigger{Name: "drift"}, branch, r.applied.commit, r.applied.config, func(dep *store.Deployment) (bool, error) {
		return r.apply(ctx, dep, r.applied.desired, actual, nil)
	})
}

// keepRunning is the tick of a head whose commit failed before: the version
// that runs is kept in step. After a restart of hawser it is adopted first,
// from the commit its containers were created from.
func (r *Reconciler) keepRunning(ctx context.Context, t Trigger, branch string, env map[string]string, cfgDigest string) (string, error) {
	if r.applied.desired != nil {
		if res, err := r.checkDrift(ctx, branch); err != nil || res != resultUnchanged {
			return res, err
		}
		return resultSkipped, nil
	}
	actual, err := converge.List(ctx, r.docker, r.project.Name)
	if err != nil {
		return "", err
	}
	running := runningCommit(actual)
	if running == "" {
		return resultSkipped, nil
	}
	if _, err := r.deploy(ctx, Trigger{Name: "adopt"}, branch, running, env, cfgDigest); err != nil {
		return "", err
	}
	return resultSkipped, nil
}

// failedBefore reports whether the newest deployment of this commit with
// this configuration failed for a reason a retry cannot fix: such a commit
// waits for a new commit, a configuration change or a manual sync.
func (r *Reconciler) failedBefore(commit, cfgDigest string) bool {
	list, err := r.store.List(r.project.Name, historyScan)
	if err != nil {
		r.log.Warn("read deployment history", "err", err)
		return false
	}
	for _, d := range list {
		if d.Commit == commit && d.ConfigDigest == cfgDigest {
			return d.Result != store.ResultSucceeded && !d.Transient
		}
	}
	return false
}

// historyScan is how many recent deployments failedBefore looks through.
const historyScan = 50

// configDigest identifies everything besides the commit that shapes the
// desired state.
func configDigest(p Project, env map[string]string) string {
	h := sha256.New()
	fmt.Fprintf(h, "%q %q %q %q\n", p.Name, p.Path, p.ComposeFiles, p.Profiles)
	for _, k := range slices.Sorted(maps.Keys(env)) {
		fmt.Fprintf(h, "%q=%q\n", k, env[k])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// errRetired is what a torn-down preview's reconciler answers.
var errRetired = errors.New("the preview was torn down")

// ShortCommit is the abbreviation of a commit ID that hawser shows.
func ShortCommit(commit string) string {
	return commit[:min(12, len(commit))]
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
