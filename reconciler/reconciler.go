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
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/moby/api/types/container"

	"hawser.dev/hawser/reconciler/compose"
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
	Prune(keep int, inUse ...string) error
}

// Images gets the image of each service for a commit.
type Images interface {
	Ensure(ctx context.Context, p *types.Project, svc types.ServiceConfig, commit string) (images.Image, error)
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
}

// Reconciler owns one project. Its methods are safe for concurrent use;
// reconciles never overlap.
type Reconciler struct {
	project   Project
	source    Source
	images    Images
	docker    converge.Docker
	converger *converge.Converger
	store     *store.Store
	metrics   *Metrics
	log       *slog.Logger

	// run serialises reconciles.
	run sync.Mutex
	// applied is the state the running containers were created from; only
	// touched by reconcile, under run.
	applied applied
	// requests carries reconcile requests to Run; it holds one, so bursts
	// coalesce.
	requests chan trigger

	mu     sync.Mutex
	status Status
}

type applied struct {
	commit  string
	config  string
	desired *converge.Desired
}

// Deps are the reconciler's collaborators, wired by main.
type Deps struct {
	Source    Source
	Images    Images
	Docker    converge.Docker
	Converger *converge.Converger
	Store     *store.Store
	Metrics   *Metrics
	Log       *slog.Logger
}

// New returns a reconciler for one project.
func New(p Project, d Deps) *Reconciler {
	return &Reconciler{
		project: p, source: d.Source, images: d.Images, docker: d.Docker, converger: d.Converger,
		store: d.Store, metrics: d.Metrics, log: d.Log.With("project", p.Name),
		requests: make(chan trigger, 1),
		status:   Status{Project: p.Name},
	}
}

// trigger says why a reconcile runs; a forced one retries a failed commit.
type trigger struct {
	name  string
	force bool
}

// Triggers of a reconcile.
var (
	TriggerSchedule = trigger{name: "schedule"}
	TriggerStartup  = trigger{name: "startup"}
	TriggerSync     = trigger{name: "sync", force: true}
)

// Request asks Run for a reconcile as soon as the current one ends; requests
// made meanwhile coalesce into one. A forced request retries a failed commit.
func (r *Reconciler) Request(t trigger) {
	select {
	case r.requests <- t:
	default:
		if t.force { // make sure the coalesced request keeps the force
			select {
			case old := <-r.requests:
				old.force = true
				r.requests <- old
			default:
				r.requests <- t
			}
		}
	}
}

// Run serves reconcile requests until ctx ends.
func (r *Reconciler) Run(ctx context.Context, timeout time.Duration) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case t := <-r.requests:
			rctx, cancel := context.WithTimeout(ctx, timeout)
			err := r.Reconcile(rctx, t)
			cancel()
			if err != nil {
				r.log.Error("reconcile failed", "trigger", t.name, "err", err)
			}
		}
	}
}

// Reconcile runs one reconcile now.
func (r *Reconciler) Reconcile(ctx context.Context, t trigger) (err error) {
	r.run.Lock()
	defer r.run.Unlock()
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
	return err
}

func (r *Reconciler) reconcile(ctx context.Context, t trigger) (string, error) {
	env, err := r.project.Env()
	if err != nil {
		return "", err
	}
	cfgDigest := configDigest(r.project, env)
	branch, commit, err := r.watch(ctx)
	if err != nil {
		return "", err
	}
	if !t.force && commit == r.applied.commit && cfgDigest == r.applied.config {
		return r.checkDrift(ctx, branch)
	}
	if !t.force && r.failedBefore(commit, cfgDigest) {
		return resultSkipped, nil
	}
	return r.deploy(ctx, t, branch, commit, env, cfgDigest)
}

// watch is the cheap check: one ls-remote.
func (r *Reconciler) watch(ctx context.Context) (branch, commit string, err error) {
	branch, commit, err = head(ctx, r.source, r.project.Branch)
	if err != nil {
		return "", "", err
	}
	if r.status.WatchedCommit != commit {
		r.metrics.observeCommit(branch, commit)
	}
	r.setStatus(func(s *Status) { s.Branch, s.WatchedCommit = branch, commit })
	return branch, commit, nil
}

// head asks the remote where the watched branch points.
func head(ctx context.Context, src Source, branch string) (string, string, error) {
	refs, err := src.LsRemote(ctx)
	if err != nil {
		return "", "", err
	}
	if branch == "" {
		branch = refs.Default
	}
	commit, ok := refs.Branches[branch]
	if !ok {
		return "", "", fmt.Errorf("branch %q not found on the remote", branch)
	}
	return branch, commit, nil
}

// load checks out a commit and loads its compose project.
func load(ctx context.Context, src Source, p Project, branch, commit string, env map[string]string) (*types.Project, error) {
	co, err := src.Checkout(ctx, branch, commit)
	if err != nil {
		return nil, err
	}
	return compose.Load(ctx, compose.Source{
		Dir: filepath.Join(co.Current, p.Path), Files: p.ComposeFiles,
		Name: p.Name, Profiles: p.Profiles, Env: env,
	})
}

// Validated is what Validate found.
type Validated struct {
	Branch  string
	Commit  string
	Project *types.Project
}

// Validate loads the compose project of the watched commit without touching
// Docker, for `hawser validate`.
func Validate(ctx context.Context, src Source, p Project) (Validated, error) {
	branch, commit, err := head(ctx, src, p.Branch)
	if err != nil {
		return Validated{}, err
	}
	env, err := p.Env()
	if err != nil {
		return Validated{}, err
	}
	proj, err := load(ctx, src, p, branch, commit, env)
	return Validated{Branch: branch, Commit: commit, Project: proj}, err
}

// checkDrift compares the running containers with the applied state, by
// their labels, and repairs what differs.
func (r *Reconciler) checkDrift(ctx context.Context, branch string) (string, error) {
	actual, err := converge.List(ctx, r.docker, r.project.Name)
	if err != nil {
		return "", err
	}
	plan := converge.NewPlan(r.applied.desired, actual)
	if plan.Empty() {
		return resultUnchanged, nil
	}
	return r.record(trigger{name: "drift"}, branch, r.applied.commit, r.applied.config, func(dep *store.Deployment) (bool, error) {
		return r.apply(ctx, dep, r.applied.desired, actual)
	})
}

// failedBefore reports whether the last deployment tried this commit with
// this configuration and failed: such a commit waits for a new commit, a
// configuration change or a manual sync.
func (r *Reconciler) failedBefore(commit, cfgDigest string) bool {
	last, err := r.store.Last(r.project.Name)
	if err != nil {
		return false
	}
	return last.Result == store.ResultFailed && last.Commit == commit && last.ConfigDigest == cfgDigest
}

func (r *Reconciler) deploy(ctx context.Context, t trigger, branch, commit string, env map[string]string, cfgDigest string) (string, error) {
	return r.record(t, branch, commit, cfgDigest, func(dep *store.Deployment) (bool, error) {
		desired, err := r.prepare(ctx, dep, branch, commit, env)
		if err != nil {
			return true, err
		}
		actual, err := converge.List(ctx, r.docker, r.project.Name)
		if err != nil {
			return true, err
		}
		changed, err := r.apply(ctx, dep, desired, actual)
		if err != nil {
			return true, err
		}
		r.applied = applied{commit: commit, config: cfgDigest, desired: desired}
		if err := r.source.Prune(r.project.KeepCheckouts, commit); err != nil {
			r.log.Warn("prune checkouts", "err", err)
		}
		return changed, nil
	})
}

// prepare checks out the commit, loads the project and gets its images. On
// failure the stable checkout path goes back to the running commit.
func (r *Reconciler) prepare(ctx context.Context, dep *store.Deployment, branch, commit string, env map[string]string) (d *converge.Desired, err error) {
	defer func() {
		if err != nil && r.applied.commit != "" {
			if _, aerr := r.source.Activate(r.applied.commit); aerr != nil {
				r.log.Error("restore checkout of the running commit", "err", aerr)
			}
		}
	}()
	p, err := load(ctx, r.source, r.project, branch, commit, env)
	if err != nil {
		return nil, err
	}
	imgs, err := r.ensureImages(ctx, dep, p, commit)
	if err != nil {
		return nil, err
	}
	return converge.NewDesired(ctx, p, imgs, commit)
}

func (r *Reconciler) ensureImages(ctx context.Context, dep *store.Deployment, p *types.Project, commit string) (map[string]converge.Image, error) {
	imgs := make(map[string]converge.Image, len(p.Services))
	for _, name := range slices.Sorted(maps.Keys(p.Services)) {
		img, err := r.images.Ensure(ctx, p, p.Services[name], commit)
		if be := (*images.BuildError)(nil); errors.As(err, &be) {
			dep.BuildLogs[name] = be.Log
		}
		if err != nil {
			return nil, err
		}
		if img.Log != "" {
			dep.BuildLogs[name] = img.Log
		}
		if img.Built {
			r.metrics.buildDuration.WithLabelValues(name).Observe(img.BuildDuration.Seconds())
		}
		imgs[name] = converge.Image{Ref: img.Ref, ID: img.ID}
		dep.Images[name] = img.Ref
	}
	return imgs, nil
}

// apply plans against the running containers and applies the plan.
func (r *Reconciler) apply(ctx context.Context, dep *store.Deployment, d *converge.Desired, actual []container.Summary) (bool, error) {
	plan := converge.NewPlan(d, actual)
	if len(plan.Aside) > 0 {
		if err := r.converger.Recover(ctx, actual); err != nil {
			return true, err
		}
		var err error
		if actual, err = converge.List(ctx, r.docker, r.project.Name); err != nil {
			return true, err
		}
		plan = converge.NewPlan(d, actual)
	}
	if plan.Empty() {
		return false, nil
	}
	for _, sp := range plan.Services {
		for _, rep := range sp.Replace {
			dep.Services[sp.Name] = append(dep.Services[sp.Name], rep.Reason.String())
		}
	}
	start := time.Now()
	err := r.converger.Apply(ctx, d, plan, converge.Deployment{ID: dep.ID, Commit: d.Commit})
	r.metrics.deployDuration.Observe(time.Since(start).Seconds())
	if err != nil {
		return true, err
	}
	for _, sp := range plan.Services {
		for _, rep := range sp.Replace {
			r.metrics.recreations.WithLabelValues(sp.Name, rep.Reason.Kind).Inc()
		}
	}
	return true, nil
}

// record runs one deployment and writes it to the store when it changed
// something or failed. It returns the reconcile's result.
func (r *Reconciler) record(t trigger, branch, commit, cfgDigest string, deploy func(*store.Deployment) (bool, error)) (string, error) {
	id, err := r.store.NextID(r.project.Name)
	if err != nil {
		return "", err
	}
	dep := store.Deployment{
		ID: id, Project: r.project.Name, Branch: branch, Commit: commit, Trigger: t.name,
		Started: time.Now(), ConfigDigest: cfgDigest,
		Services: map[string][]string{}, Images: map[string]string{}, BuildLogs: map[string]string{},
	}
	log := r.log.With("deployment", id, "commit", short(commit), "trigger", t.name)
	log.Info("deploying")
	changed, err := deploy(&dep)
	dep.Ended = time.Now()
	if err == nil && !changed {
		log.Info("nothing to change")
		r.setStatus(func(s *Status) { s.RunningCommit = commit })
		return resultUnchanged, nil
	}
	dep.Result = store.ResultSucceeded
	if err != nil {
		dep.Result, dep.Reason = store.ResultFailed, err.Error()
		log.Error("deployment failed; the previous version keeps running", "err", err)
	} else {
		log.Info("deployed", "recreated", len(dep.Services), "took", dep.Ended.Sub(dep.Started).Round(time.Millisecond))
	}
	if serr := r.store.Save(dep); serr != nil {
		err = errors.Join(err, serr)
	}
	r.setStatus(func(s *Status) {
		s.LastDeployment = &dep
		if dep.Result == store.ResultSucceeded {
			s.RunningCommit = commit
		}
	})
	return resultDeployed, err
}

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

func short(commit string) string {
	return commit[:min(12, len(commit))]
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
