package reconciler

import (
	"context"
	"sync"
	"time"
)

// Quiesce waits until no deployment runs, production's or a preview's, and
// keeps production's reconciles from starting until resume is called: it is
// how hawser hands over to a newer version of itself between deployments
// rather than in the middle of one. Requests made meanwhile stay pending.
// When ctx ends first, nothing is held and the error says so.
func (r *Reconciler) Quiesce(ctx context.Context) (resume func(), err error) {
	if err := lockWithin(ctx, &r.run); err != nil {
		return nil, err
	}
	if err := r.previewsIdle(ctx); err != nil {
		r.run.Unlock()
		return nil, err
	}
	return sync.OnceFunc(r.run.Unlock), nil
}

// lockWithin locks mu, unless ctx ends first.
func lockWithin(ctx context.Context, mu *sync.Mutex) error {
	locked := make(chan struct{})
	go func() {
		mu.Lock()
		close(locked)
	}()
	select {
	case <-locked:
		return nil
	case <-ctx.Done():
		// The lock still comes; it is not ours to keep.
		go func() {
			<-locked
			mu.Unlock()
		}()
		return ctx.Err()
	}
}

// previewsIdle waits until no preview has work in progress. Previews start
// only after a production reconcile, which the caller holds off; but Run
// starts a pass right after the reconcile it just finished, so the first
// look comes a moment later, once such a pass has launched its work.
func (r *Reconciler) previewsIdle(ctx context.Context) error {
	for {
		t := time.NewTimer(claimWait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		r.pv.mu.Lock()
		idle := len(r.pv.busy) == 0
		r.pv.mu.Unlock()
		if idle {
			return nil
		}
	}
}
