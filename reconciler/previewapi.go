package reconciler

import (
	"context"
	"errors"
	"fmt"
	"time"

	"hawser.dev/hawser/reconciler/store"
)

// ErrUnknownPreview says no preview of the project has the slug.
var ErrUnknownPreview = errors.New("no such preview")

// WakePreview starts a sleeping preview now, as a request to its host
// would, and waits until it serves or ctx ends. It counts as a request: the
// preview's idle time starts again. An awake preview is left as it is.
func (r *Reconciler) WakePreview(ctx context.Context, slug string) error {
	st := r.publishedPreview(slug)
	if st == nil {
		return fmt.Errorf("%q: %w", slug, ErrUnknownPreview)
	}
	st.nap.touch()
	select {
	case <-r.wakePreview(st):
	case <-ctx.Done():
		return fmt.Errorf("preview %s is still starting: %w", slug, ctx.Err())
	}
	if st.nap.sleeping() {
		return fmt.Errorf("preview %s did not start; hawser's log says why", slug)
	}
	return nil
}

// publishedPreview finds a preview among those the last reconcile
// published: reading them needs no wait for the reconcile in progress.
func (r *Reconciler) publishedPreview(slug string) *previewState {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, st := range r.status.previews {
		if st.slug == slug {
			return st
		}
	}
	return nil
}

// DestroyPreview tears a preview down as the deletion of its branch would:
// containers, networks, volumes, images, routes, checkouts and records. It
// returns the record the preview had. A branch that still matches comes
// back, built afresh, at the next poll; a per-commit preview when its host
// is asked for again. It waits for work on the preview in progress, or
// for ctx.
func (r *Reconciler) DestroyPreview(ctx context.Context, slug string) (store.PreviewRecord, error) {
	inventory, err := r.store.Previews(r.project.Name)
	if err != nil {
		return store.PreviewRecord{}, err
	}
	rec, ok := inventory[slug]
	if !ok {
		return rec, fmt.Errorf("%q: %w", slug, ErrUnknownPreview)
	}
	if err := r.claimPreview(ctx, slug); err != nil {
		return rec, fmt.Errorf("preview %s: waiting for its work in progress: %w", slug, err)
	}
	defer r.releasePreview(slug)
	return rec, r.destroyPreview(ctx, slug, nil)
}

// claimWait is how often claimPreview looks whether a preview's work ended.
const claimWait = 100 * time.Millisecond

// claimPreview marks a preview busy, as a pass does for its work, once no
// work on it runs: a pass leaves it alone meanwhile.
func (r *Reconciler) claimPreview(ctx context.Context, slug string) error {
	for {
		r.pv.mu.Lock()
		if !r.pv.busy[slug] {
			if r.pv.busy == nil {
				r.pv.busy = map[string]bool{}
			}
			r.pv.busy[slug] = true
			r.pv.jobs.Add(1)
			r.pv.mu.Unlock()
			return nil
		}
		r.pv.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(claimWait):
		}
	}
}

func (r *Reconciler) releasePreview(slug string) {
	r.pv.mu.Lock()
	delete(r.pv.busy, slug)
	r.pv.mu.Unlock()
	r.pv.jobs.Done()
}
