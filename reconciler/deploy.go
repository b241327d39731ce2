package reconciler

import (
	"context"
	"errors"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/moby/api/types/container"

	"hawser.dev/hawser/reconciler/compose"
	"hawser.dev/hawser/reconciler/converge"
	"hawser.dev/hawser/reconciler/images"
	"hawser.dev/hawser/reconciler/source"
	"hawser.dev/hawser/reconciler/store"
)

// deploy brings the project to commit: checkout, load, images, plan, apply.
// On failure the stable checkout path goes back to the running commit, so
// the containers that keep running see their own files.
func (r *Reconciler) deploy(ctx context.Context, t Trigger, branch, commit string, env map[string]string, cfgDigest string) (string, error) {
	return r.record(t, branch, commit, cfgDigest, func(dep *store.Deployment) (changed bool, err error) {
		previous := r.applied.commit
		if previous == "" {
			var cerr error
			if previous, cerr = r.source.Current(); cerr != nil {
				r.log.Debug("no checkout to return to on failure", "err", cerr)
			}
		}
		defer func() {
			if err != nil && previous != "" && previous != commit {
				if _, aerr := r.source.Activate(previous); aerr != nil {
					r.log.Error("restore checkout of the running commit", "err", aerr)
				}
			}
		}()
		if commit != r.applied.commit {
			clear(r.bases) // a new commit's build may pull its bases
		}
		dep.Updated = t.updates.digests
		desired, err := r.prepare(ctx, dep, branch, commit, env, t.updates.follow)
		if err != nil {
			return true, err
		}
		desired.Updated = t.updates.digests
		actual, err := converge.List(ctx, r.docker, r.project.Name)
		if err != nil {
			return true, err
		}
		if changed, err = r.apply(ctx, dep, desired, actual, t.Recreate); err != nil {
			return true, err
		}
		r.applied = applied{commit: commit, config: cfgDigest, desired: desired}
		if err := r.rememberUpdates(desired.Project, t.updates); err != nil {
			return true, err
		}
		if err := r.source.Prune(r.project.KeepCheckouts, inUse(commit, actual)...); err != nil {
			r.log.Warn("prune checkouts", "err", err)
		}
		if changed && r.project.PruneImages {
			r.pruneImages(ctx, dep)
		}
		return changed, nil
	})
}

// inUse lists the commits whose checkouts containers may still mount.
func inUse(commit string, actual []container.Summary) []string {
	commits := []string{commit}
	for _, c := range actual {
		if cm := c.Labels[converge.LabelCommit]; cm != "" && !slices.Contains(commits, cm) {
			commits = append(commits, cm)
		}
	}
	return commits
}

// runningCommit is the commit the project's running containers came from.
func runningCommit(actual []container.Summary) string {
	for _, c := range actual {
		if c.State == container.StateRunning && c.Labels[converge.LabelCommit] != "" {
			return c.Labels[converge.LabelCommit]
		}
	}
	return ""
}

// prepare checks out the commit, loads the project and gets its images.
func (r *Reconciler) prepare(ctx context.Context, dep *store.Deployment, branch, commit string, env, follow map[string]string) (*converge.Desired, error) {
	p, co, err := load(ctx, r.source, r.project, branch, commit, env)
	dep.Subject = co.Subject
	if err != nil {
		return nil, err
	}
	imgs, err := r.ensureImages(ctx, dep, p, commit, follow)
	if err != nil {
		return nil, err
	}
	return converge.NewDesired(ctx, p, imgs, commit, co.Current)
}

// load checks out a commit and loads its compose project; it also returns
// the checkout, whose stable path the project was loaded from.
func load(ctx context.Context, src Source, p Project, branch, commit string, env map[string]string) (*types.Project, source.Checkout, error) {
	co, err := src.Checkout(ctx, branch, commit)
	if err != nil {
		return nil, co, err
	}
	proj, err := compose.Load(ctx, compose.Source{
		Dir: filepath.Join(co.Current, p.Path), Files: p.ComposeFiles,
		Name: p.Name, Profiles: p.Profiles, Env: env,
	})
	if err == nil && p.Transform != nil {
		err = p.Transform(proj, co.Current)
	}
	return proj, co, err
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
	refs, err := src.LsRemote(ctx)
	if err != nil {
		return Validated{}, err
	}
	branch, commit, err := head(refs, p.Branch)
	if err != nil {
		return Validated{}, err
	}
	env, err := p.Env()
	if err != nil {
		return Validated{}, err
	}
	proj, _, err := load(ctx, src, p, branch, commit, env)
	return Validated{Branch: branch, Commit: commit, Project: proj}, err
}

func (r *Reconciler) ensureImages(ctx context.Context, dep *store.Deployment, p *types.Project, commit string, follow map[string]string) (map[string]converge.Image, error) {
	followed, err := r.followedRefs(p, follow)
	if err != nil {
		return nil, err
	}
	pinned, err := r.pinnedImages(ctx, commit)
	if err != nil {
		return nil, err
	}
	imgs := make(map[string]converge.Image, len(p.Services))
	for _, name := range slices.Sorted(maps.Keys(p.Services)) {
		svc := p.Services[name]
		if ref, ok := followed[name]; ok {
			svc.Image = ref // a tag a semver policy moved to; the file's tag stays in the hash
		}
		r.logs.add("getting the image of " + name)
		img, err := r.images.Ensure(ctx, p, svc, commit)
		if err != nil {
			var be *images.BuildError
			if errors.As(err, &be) {
				dep.BuildLogs[name], dep.Logs = be.Log, strings.Join(be.Tail, "\n")
				r.logs.add(buildOutput(name, be.Log)...)
			}
			return nil, err
		}
		r.logs.add(gotImage(name, img)...)
		if img.Log != "" {
			dep.BuildLogs[name] = img.Log
		}
		if id := pinned[name]; id != "" {
			img.ID = id
		}
		if img.Built {
			r.metrics.buildDuration.WithLabelValues(name).Observe(img.BuildDuration.Seconds())
		}
		imgs[name] = converge.Image{Ref: img.Ref, ID: img.ID, RepoDigests: img.RepoDigests}
		dep.Images[name], dep.ImageIDs[name] = img.Ref, img.ID
	}
	return imgs, nil
}

// apply plans against the running containers and applies the plan; it
// reports whether there was anything to do.
func (r *Reconciler) apply(ctx context.Context, dep *store.Deployment, d *converge.Desired, actual []container.Summary, recreate []string) (bool, error) {
	plan := converge.NewPlan(d, actual, recreate...)
	if len(plan.Aside) > 0 {
		if err := r.converger.Recover(ctx, d, actual); err != nil {
			return true, err
		}
		var err error
		if actual, err = converge.List(ctx, r.docker, r.project.Name); err != nil {
			return true, err
		}
		plan = converge.NewPlan(d, actual, recreate...)
	}
	if plan.Empty() {
		return false, nil
	}
	for _, sp := range plan.Services {
		for _, rep := range sp.Replace {
			dep.Services[sp.Name] = append(dep.Services[sp.Name], rep.Reason.String())
		}
	}
	r.logs.add(recreations(*dep)...)
	start := time.Now()
	err := r.converger.Apply(ctx, d, plan, converge.Deployment{ID: dep.ID, Commit: d.Commit})
	r.metrics.deployDuration.Observe(time.Since(start).Seconds())
	var se *converge.StartError
	if errors.As(err, &se) {
		dep.Logs = se.Logs
	}
	if err != nil {
		return true, err
	}
	for _, sp := range plan.Services {
		for _, rep := range sp.Replace {
			r.metrics.recreations.WithLabelValues(sp.Name, rep.Reason.Kind).Inc()
		}
		if len(sp.Replace) > 0 {
			r.logs.add(sp.Name + " ready")
		}
	}
	return true, nil
}

// record runs one deployment and writes it to the store when it changed
// something or failed. It returns the reconcile's result.
func (r *Reconciler) record(t Trigger, branch, commit, cfgDigest string, deploy func(*store.Deployment) (bool, error)) (string, error) {
	id, err := r.store.NextID(r.project.Name)
	if err != nil {
		return "", err
	}
	dep := store.Deployment{
		ID: id, Project: r.project.Name, Branch: branch, Commit: commit, Trigger: t.Name,
		Started: time.Now(), ConfigDigest: cfgDigest,
		Services: map[string][]string{}, Images: map[string]string{}, ImageIDs: map[string]string{}, BuildLogs: map[string]string{},
	}
	log := r.log.With("deployment", id, "commit", ShortCommit(commit), "trigger", t.Name)
	log.Info("deploying")
	r.logs.start(dep)
	// Last, so a reader that sees the log end finds the record saved.
	defer func() { r.logs.finish(dep) }()
	changed, err := deploy(&dep)
	dep.Ended = time.Now()
	if err == nil && !changed {
		log.Info("nothing to change")
		r.setStatus(func(s *Status) { s.RunningCommit, s.RunningSubject = commit, dep.Subject })
		return resultUnchanged, nil
	}
	dep.Result = store.ResultSucceeded
	var se *converge.StartError
	switch {
	case errors.As(err, &se):
		dep.Result, dep.Reason = store.ResultRolledBack, err.Error()
		r.metrics.rollbacks.Inc()
		log.Error("deployment rolled back; the previous version keeps serving", "err", err)
	case err != nil:
		dep.Result, dep.Reason, dep.Transient = store.ResultFailed, err.Error(), !terminal(err)
		log.Error("deployment failed; the previous version keeps running", "err", err, "retry", dep.Transient)
	default:
		log.Info("deployed", "recreated", len(dep.Services), "took", dep.Ended.Sub(dep.Started).Round(time.Millisecond))
	}
	r.metrics.deployments.WithLabelValues(strings.ReplaceAll(dep.Result, " ", "_")).Inc()
	if serr := r.store.Save(dep); serr != nil {
		err = errors.Join(err, serr)
	}
	r.setStatus(func(s *Status) {
		s.LastDeployment = &dep
		if dep.Result == store.ResultSucceeded {
			s.RunningCommit, s.RunningSubject = commit, dep.Subject
		}
	})
	return resultDeployed, err
}

// terminal reports an error that only a new commit or configuration can fix:
// the compose files do not load, a build fails, a container does not start.
// Anything else (the remote, a registry, the engine) may pass by itself.
func terminal(err error) bool {
	var (
		le *compose.LoadError
		ue *compose.UnsupportedError
		be *images.BuildError
		se *converge.StartError
		ce *converge.SpecError
	)
	return errors.As(err, &le) || errors.As(err, &ue) || errors.As(err, &be) || errors.As(err, &se) || errors.As(err, &ce)
}

// pruneImages removes the images of older deployments that no container
// uses, keeping those of this deployment and of the earlier successful ones
// whose checkouts are kept, for rollback.
func (r *Reconciler) pruneImages(ctx context.Context, dep *store.Deployment) {
	list, err := r.store.List(r.project.Name, historyScan)
	if err != nil {
		r.log.Warn("prune images: read history", "err", err)
		return
	}
	keep := slices.Collect(maps.Values(dep.ImageIDs))
	var candidates []string
	kept := 0
	for _, d := range list {
		if d.ID == dep.ID || d.Result != store.ResultSucceeded || len(d.ImageIDs) == 0 {
			continue
		}
		ids := slices.Collect(maps.Values(d.ImageIDs))
		if kept < max(1, r.project.KeepCheckouts-1) {
			keep = append(keep, ids...)
			kept++
			continue
		}
		candidates = append(candidates, ids...)
	}
	removed, err := r.images.Prune(ctx, r.project.Name, candidates, keep)
	if err != nil {
		r.log.Warn("prune images", "err", err)
	}
	if len(removed) > 0 {
		r.log.Info("pruned images", "images", removed)
	}
}

// pinnedImages are the images of the deployment a rollback pinned this
// commit to, those that still exist: tags may have moved on since.
func (r *Reconciler) pinnedImages(ctx context.Context, commit string) (map[string]string, error) {
	pin, err := r.store.Pin(r.project.Name)
	if err != nil || pin.Commit != commit {
		return nil, err
	}
	out := map[string]string{}
	for service, id := range pin.Images {
		if img, err := r.images.Inspect(ctx, id); err == nil && img.ID != "" {
			out[service] = img.ID
		}
	}
	return out, nil
}
