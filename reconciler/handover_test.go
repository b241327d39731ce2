package reconciler

import (
	"context"
	"errors"
	"testing"
	"time"
)

// returnsWithin runs f and reports whether it returned within d.
func returnsWithin(d time.Duration, f func()) (done <-chan struct{}, in bool) {
	c := make(chan struct{})
	go func() {
		f()
		close(c)
	}()
	select {
	case <-c:
		return c, true
	case <-time.After(d):
		return c, false
	}
}

func TestQuiesceWaitsForTheDeploymentInProgressAndHoldsOffTheNext(t *testing.T) {
	r := &Reconciler{}
	r.run.Lock() // a reconcile in progress
	var resume func()
	done, in := returnsWithin(300*time.Millisecond, func() {
		var err error
		if resume, err = r.Quiesce(context.Background()); err != nil {
			t.Error(err)
		}
	})
	if in {
		t.Fatal("Quiesce returned while a reconcile ran")
	}
	r.run.Unlock()
	<-done
	if r.run.TryLock() {
		t.Fatal("a reconcile could start after Quiesce")
	}
	resume()
	resume() // a second call changes nothing
	if !r.run.TryLock() {
		t.Fatal("reconciles stay held after resume")
	}
}

func TestQuiesceWaitsForPreviewWork(t *testing.T) {
	r := &Reconciler{}
	r.pv.busy = map[string]bool{"feature-x": true}
	var resume func()
	done, in := returnsWithin(300*time.Millisecond, func() { resume, _ = r.Quiesce(context.Background()) })
	if in {
		t.Fatal("Quiesce returned while a preview was being deployed")
	}
	r.pv.mu.Lock()
	delete(r.pv.busy, "feature-x")
	r.pv.mu.Unlock()
	<-done
	resume()
}

func TestQuiesceGivesUpWithItsContextAndHoldsNothing(t *testing.T) {
	r := &Reconciler{}
	r.run.Lock()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := r.Quiesce(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want the deadline", err)
	}
	r.run.Unlock()
	// The lock Quiesce asked for is let go as soon as it comes.
	_, in := returnsWithin(time.Second, func() {
		r.run.Lock()
		r.run.Unlock()
	})
	if !in {
		t.Fatal("the reconcile lock stayed taken after Quiesce gave up")
	}
}
