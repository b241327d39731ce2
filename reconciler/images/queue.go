package images

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"
)

// Priority orders the builds waiting in a Queue.
type Priority int

const (
	// Production builds are admitted before any preview build.
	Production Priority = iota
	// Preview builds wait while a production build waits.
	Preview
	priorities // the number of priorities
)

// Queue bounds how many builds run at once on a Docker host, admitting
// production builds before preview builds and each priority in the order it
// asked. Images that share a Queue also share their builds in progress: a
// build asked for while the same one runs waits for it instead of running
// again.
type Queue struct {
	mu      sync.Mutex
	slots   int
	busy    int
	waiting [priorities]list.List // of *waiter, oldest first

	builds singleflight.Group

	queued     prometheus.Gauge
	inProgress prometheus.Gauge
}

// waiter is one Acquire waiting for a slot; admitted is closed when it gets
// one.
type waiter struct {
	admitted chan struct{}
}

// NewQueue returns a Queue that runs at most slots builds at once (at least
// one) and registers its gauges hawser_build_queue_length and
// hawser_builds_in_progress with reg, unless reg is nil.
func NewQueue(slots int, reg prometheus.Registerer) *Queue {
	q := &Queue{
		slots: max(slots, 1),
		queued: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hawser_build_queue_length",
			Help: "Image builds waiting for a build slot.",
		}),
		inProgress: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hawser_builds_in_progress",
			Help: "Image builds holding a build slot.",
		}),
	}
	if reg != nil {
		reg.MustRegister(q.queued, q.inProgress)
	}
	return q
}

// Acquire waits for a build slot, behind every waiter of the same or a more
// urgent priority. A waiter whose ctx ends leaves the queue without a slot
// and gets ctx's error. Each successful Acquire must be followed by one
// Release.
func (q *Queue) Acquire(ctx context.Context, p Priority) error {
	if p < Production || p >= priorities {
		p = Preview
	}
	q.mu.Lock()
	if q.busy < q.slots {
		q.admitLocked()
		q.mu.Unlock()
		return nil
	}
	w := &waiter{admitted: make(chan struct{})}
	elem := q.waiting[p].PushBack(w)
	q.queued.Inc()
	q.mu.Unlock()

	select {
	case <-w.admitted:
		return nil
	case <-ctx.Done():
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	select {
	case <-w.admitted:
		// Admitted while leaving: hand the slot on rather than lose it.
		q.releaseLocked()
	default:
		q.waiting[p].Remove(elem)
		q.queued.Dec()
	}
	return ctx.Err()
}

// Release gives back a slot that Acquire gave, admitting the next waiter.
func (q *Queue) Release() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.releaseLocked()
}

func (q *Queue) releaseLocked() {
	q.busy--
	q.inProgress.Dec()
	for p := range q.waiting {
		if front := q.waiting[p].Front(); front != nil {
			q.waiting[p].Remove(front)
			q.queued.Dec()
			q.admitLocked()
			close(front.Value.(*waiter).admitted)
			return
		}
	}
}

func (q *Queue) admitLocked() {
	q.busy++
	q.inProgress.Inc()
}

// WithQueue makes builds wait for a slot in q with priority p, and share
// builds in progress with every Images using q. Without it builds start at
// once, and only builds of the same Images are shared.
func WithQueue(q *Queue, p Priority) Option {
	return func(i *Images) {
		if q != nil {
			i.queue, i.priority, i.builds = q, p, &q.builds
		}
	}
}

// sharedBuild returns the result of build, run unless a build with the same
// key is already in progress among the Images sharing i's builds: then it
// waits for that one. Only the caller whose build ran sees Built. When the
// caller that ran it leaves and cancels it, a caller still waiting runs it
// again for itself.
func (i *Images) sharedBuild(ctx context.Context, key string, build func() (Image, error)) (Image, error) {
	for {
		ran := false
		done := i.builds.DoChan(key, func() (any, error) {
			ran = true
			return i.inSlot(ctx, build)
		})
		var res singleflight.Result
		select {
		case <-ctx.Done():
			return Image{}, ctx.Err()
		case res = <-done:
		}
		if res.Err != nil && !ran && ctx.Err() == nil && isCancel(res.Err) {
			continue
		}
		img, _ := res.Val.(Image)
		if !ran {
			img.Built, img.BuildDuration = false, 0
		}
		return img, res.Err
	}
}

// inSlot runs build once the queue, if any, admits it.
func (i *Images) inSlot(ctx context.Context, build func() (Image, error)) (Image, error) {
	if i.queue == nil {
		return build()
	}
	if err := i.queue.Acquire(ctx, i.priority); err != nil {
		return Image{}, fmt.Errorf("wait for a build slot: %w", err)
	}
	defer i.queue.Release()
	return build()
}

func isCancel(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}
