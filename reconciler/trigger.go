package reconciler

import (
	"context"
	"slices"
	"time"
)

// Trigger says why a reconcile runs.
type Trigger struct {
	Name string
	// Force retries a commit that failed before.
	Force bool
	// Recreate names services to recreate even though nothing changed.
	Recreate []string
	// Images asks the registries about followed images.
	Images bool
	// updates are the image updates pulled for this reconcile.
	updates updates
}

// Triggers of a reconcile.
var (
	TriggerSchedule = Trigger{Name: "schedule"}
	TriggerRegistry = Trigger{Name: "registry", Images: true}
	TriggerStartup  = Trigger{Name: "startup"}
	TriggerSync     = Trigger{Name: "sync", Force: true, Images: true}
	TriggerWebhook  = Trigger{Name: "webhook"}
)

// Request asks Run for a reconcile as soon as the current one ends, without
// blocking. Requests made meanwhile coalesce into one that keeps the force
// and the services to recreate of each.
func (r *Reconciler) Request(t Trigger) {
	r.mu.Lock()
	if r.pending == nil {
		r.pending = &t
	} else {
		r.pending.merge(t)
	}
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// RequestBatched is Request for bursts, such as the webhooks of a push of
// many branches or a merge train: it waits window after the first request
// of a burst, so that all that arrive meanwhile make one reconcile rather
// than one now and one for the rest.
func (r *Reconciler) RequestBatched(t Trigger, window time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.batch != nil {
		r.batch.merge(t)
		return
	}
	r.batch = &t
	time.AfterFunc(window, func() {
		r.mu.Lock()
		batch := *r.batch
		r.batch = nil
		r.mu.Unlock()
		r.Request(batch)
	})
}

func (t *Trigger) merge(o Trigger) {
	if o.Force && !t.Force {
		t.Name, t.Force = o.Name, true
	}
	t.Images = t.Images || o.Images
	for _, s := range o.Recreate {
		if !slices.Contains(t.Recreate, s) {
			t.Recreate = append(t.Recreate, s)
		}
	}
}

func (r *Reconciler) take() (Trigger, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.pending
	r.pending = nil
	if t == nil {
		return Trigger{}, false
	}
	return *t, true
}

// Run serves reconcile requests until ctx ends; timeout bounds each one.
// Previews are updated in the background: production's next reconcile
// does not wait for their builds.
func (r *Reconciler) Run(ctx context.Context, timeout time.Duration) error {
	defer r.pv.jobs.Wait()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.wake:
		}
		t, ok := r.take()
		if !ok {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, timeout)
		err := r.reconcileProduction(rctx, t)
		cancel()
		if err != nil && ctx.Err() == nil {
			r.log.Error("reconcile failed", "trigger", t.Name, "err", err)
		}
		go r.logPreviews(r.startPreviews(ctx, timeout))
	}
}

func (r *Reconciler) logPreviews(pass *previewPass) {
	if err := pass.wait(); err != nil {
		r.log.Error("previews", "err", err)
	}
}
