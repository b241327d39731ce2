package reconciler

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"hawser.dev/hawser/reconciler/store"
)

// Pause stops automatic updates: new commits and images wait until Resume.
// The running version is still kept in step.
func (r *Reconciler) Pause() error {
	pin, err := r.store.Pin(r.project.Name)
	if err != nil {
		return err
	}
	if pin.Paused {
		return nil
	}
	return r.setPin(store.Pin{Paused: true, Since: time.Now()})
}

// Resume lifts a pause or a rollback's pin and reconciles at once, so the
// head of the branch is deployed again.
func (r *Reconciler) Resume() error {
	if err := r.setPin(store.Pin{}); err != nil {
		return err
	}
	r.Request(Trigger{Name: "resume", Images: true})
	return nil
}

// ErrUnknownTarget says a rollback target names no succeeded deployment or
// commit of the project's history.
var ErrUnknownTarget = errors.New("no such deployment or deployed commit in the history")

// Rollback pins the project to an earlier deployment that succeeded, named
// by its ID or by its commit (or the start of it), and deploys it now with
// its images. Automatic updates stay paused until Resume.
func (r *Reconciler) Rollback(target string) (string, error) {
	d, err := r.resolve(target)
	if err != nil {
		return "", err
	}
	if err := r.setPin(store.Pin{Paused: true, Commit: d.Commit, Since: time.Now(), Images: d.ImageIDs}); err != nil {
		return "", err
	}
	r.Request(Trigger{Name: "rollback", Force: true})
	return d.Commit, nil
}

var hexRe = regexp.MustCompile(`^[0-9a-f]{4,64}$`)

// resolve finds the deployment a rollback target names: a succeeded
// deployment by ID, or the newest succeeded deployment of a commit.
func (r *Reconciler) resolve(target string) (store.Deployment, error) {
	target = strings.ToLower(strings.TrimSpace(target))
	d, err := r.store.Deployment(r.project.Name, strings.TrimPrefix(target, "#"))
	switch {
	case err == nil && d.Result != store.ResultSucceeded:
		return store.Deployment{}, fmt.Errorf("deployment #%s %s: roll back to one that succeeded", d.ID, d.Result)
	case err == nil:
		return d, nil
	case !errors.Is(err, store.ErrNotFound):
		return store.Deployment{}, err
	case !hexRe.MatchString(target):
		return store.Deployment{}, fmt.Errorf("%q: %w", target, ErrUnknownTarget)
	}
	list, err := r.store.List(r.project.Name, historyScan*20)
	if err != nil {
		return store.Deployment{}, err
	}
	var found []store.Deployment
	for _, d := range list {
		if strings.HasPrefix(d.Commit, target) && d.Result == store.ResultSucceeded &&
			!slices.ContainsFunc(found, func(f store.Deployment) bool { return f.Commit == d.Commit }) {
			found = append(found, d)
		}
	}
	switch len(found) {
	case 0:
		return store.Deployment{}, fmt.Errorf("%q: %w", target, ErrUnknownTarget)
	case 1:
		return found[0], nil
	}
	return store.Deployment{}, fmt.Errorf("%q is the start of %d deployed commits: give more of it", target, len(found))
}

func (r *Reconciler) setPin(p store.Pin) error {
	if err := r.store.SetPin(r.project.Name, p); err != nil {
		return err
	}
	r.setStatus(func(s *Status) { s.Paused, s.PinnedCommit = p.Paused, p.Commit })
	return nil
}

// target is the commit to run: the head of the branch, or what a pause or
// pin holds it at ("" when paused and nothing has been deployed by this
// process yet: the running version is adopted).
func (r *Reconciler) target(head string) (string, bool, error) {
	pin, err := r.store.Pin(r.project.Name)
	if err != nil {
		return "", false, err
	}
	r.setStatus(func(s *Status) { s.Paused, s.PinnedCommit = pin.Paused, pin.Commit })
	switch {
	case !pin.Paused:
		return head, false, nil
	case pin.Commit != "":
		return pin.Commit, true, nil
	}
	return r.applied.commit, true, nil
}

// History returns up to limit deployments, newest first, without their
// logs.
func (r *Reconciler) History(limit int) ([]store.Deployment, error) {
	list, err := r.store.List(r.project.Name, limit)
	for i := range list {
		list[i].Logs = ""
	}
	return list, err
}

// Deployment returns one deployment with the log lines of what failed.
func (r *Reconciler) Deployment(id string) (store.Deployment, error) {
	return r.store.Deployment(r.project.Name, id)
}
