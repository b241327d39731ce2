package reconciler

import (
	"context"
	"maps"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"hawser.dev/hawser/proxy"
	"hawser.dev/hawser/reconciler/converge"
	"hawser.dev/hawser/reconciler/store"
)

// Preview states, the values of hawser_previews' label.
const (
	previewRunning  = "running"
	previewSleeping = "sleeping"
	previewFailed   = "failed"
)

// nap is a preview's sleep: when it was last used, whether it sleeps, and
// the wake in progress.
type nap struct {
	lastSeen atomic.Int64 // unix nanoseconds

	mu     sync.Mutex
	asleep bool
	waking chan struct{} // closed when the wake in progress ends
}

func (n *nap) touch() { n.lastSeen.Store(time.Now().UnixNano()) }

func (n *nap) idle() time.Duration {
	return time.Since(time.Unix(0, n.lastSeen.Load()))
}

func (n *nap) sleeping() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.asleep
}

// sleepPreview stops an idle preview's containers and routes its hosts to
// a handler that wakes it. The store remembers it asleep, with its hosts,
// so a restart keeps it asleep and still wakes it on request.
func (r *Reconciler) sleepPreview(ctx context.Context, st *previewState) error {
	rec := st.rec
	rec.run.Lock()
	defer rec.run.Unlock()
	if rec.applied.desired == nil {
		return nil
	}
	actual, err := converge.List(ctx, rec.docker, rec.project.Name)
	if err != nil {
		return err
	}
	rec.traffic.mu.Lock()
	hosts := make(map[string]string, len(rec.traffic.routes))
	for _, rt := range rec.traffic.routes {
		hosts[rt.Host] = rt.Service
	}
	rec.traffic.mu.Unlock()
	// Asleep before its wake routes are in: a request through them must
	// find it asleep. Until they are in, it is awake.
	st.nap.mu.Lock()
	st.nap.asleep = true
	st.nap.mu.Unlock()
	err = r.store.UpdatePreview(r.project.Name, st.slug, func(p *store.PreviewRecord) { p.Asleep, p.Hosts = true, hosts })
	if err == nil {
		err = rec.router.Set(rec.project.Name, r.wakeRoutes(st, hosts))
	}
	if err != nil {
		st.nap.mu.Lock()
		st.nap.asleep = false
		st.nap.mu.Unlock()
		return err
	}
	r.log.Info("preview asleep", "branch", st.branch, "idle", st.nap.idle().Round(time.Second))
	return rec.converger.StopAll(ctx, rec.applied.desired, actual)
}

// wakeRoutes answer a sleeping preview's hosts (host to service) with its
// wake handler.
func (r *Reconciler) wakeRoutes(st *previewState, hosts map[string]string) []proxy.Route {
	routes := make([]proxy.Route, 0, len(hosts))
	for _, host := range slices.Sorted(maps.Keys(hosts)) {
		routes = append(routes, proxy.Route{Host: host, Service: hosts[host], Handler: r.wakeHandler(st), Touch: st.nap.touch, Auth: r.project.Previews.Auth})
	}
	return routes
}

// wakeHandler answers requests for a sleeping preview: it starts the
// preview, gives browsers a page that reloads itself meanwhile, and holds
// other clients until the preview serves or the wake timeout passes.
func (r *Reconciler) wakeHandler(st *previewState) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		done := r.wakePreview(st)
		if proxy.AcceptsHTML(req) {
			proxy.Unavailable(w, req, "This preview is starting; the page reloads by itself.", 2*time.Second)
			return
		}
		timer := time.NewTimer(r.project.Previews.WakeTimeout)
		defer timer.Stop()
		select {
		case <-done:
			if !st.nap.sleeping() {
				r.router.ServeHTTP(w, req)
				return
			}
			proxy.Unavailable(w, req, "This preview could not start.", 30*time.Second)
		case <-timer.C:
			proxy.Unavailable(w, req, "This preview is starting.", 5*time.Second)
		case <-req.Context().Done():
		}
	})
}

// wakePreview starts waking a sleeping preview, once however many requests
// ask, and returns a channel closed when the wake has ended.
func (r *Reconciler) wakePreview(st *previewState) <-chan struct{} {
	st.nap.mu.Lock()
	defer st.nap.mu.Unlock()
	if st.nap.waking != nil {
		return st.nap.waking
	}
	done := make(chan struct{})
	if !st.nap.asleep {
		close(done)
		return done
	}
	st.nap.waking = done
	go func() {
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), r.project.Previews.WakeTimeout+time.Minute)
		defer cancel()
		err := st.rec.wakeUp(ctx)
		if err == nil {
			err = r.store.UpdatePreview(r.project.Name, st.slug, func(p *store.PreviewRecord) { p.Asleep, p.Hosts = false, nil })
		}
		st.nap.mu.Lock()
		st.nap.asleep, st.nap.waking = err != nil, nil
		st.nap.mu.Unlock()
		st.nap.touch()
		close(done)
		if err != nil {
			r.log.Error("preview did not wake", "branch", st.branch, "err", err)
			return
		}
		r.metrics.previewWake.Observe(time.Since(start).Seconds())
		r.log.Info("preview awake", "branch", st.branch, "took", time.Since(start).Round(time.Millisecond))
	}()
	return done
}

// wakeUp starts a preview's stopped containers and installs its routes
// again. A preview asleep since before a restart is first reconciled,
// which loads what it runs and keeps its stopped containers as they are.
func (r *Reconciler) wakeUp(ctx context.Context) error {
	r.run.Lock()
	loaded := r.applied.desired != nil
	r.run.Unlock()
	if !loaded {
		if err := r.reconcileProduction(ctx, TriggerStartup); err != nil {
			return err
		}
	}
	r.run.Lock()
	defer r.run.Unlock()
	if r.retired {
		return errRetired
	}
	if r.applied.desired == nil {
		return nil // nothing deployed yet: the next reconcile starts it
	}
	actual, err := converge.List(ctx, r.docker, r.project.Name)
	if err != nil {
		return err
	}
	if err := r.converger.StartStopped(ctx, r.applied.desired, actual); err != nil {
		return err
	}
	if err := r.refreshRoutes(ctx); err != nil {
		r.routed = false // the sleeping routes are still installed
		return err
	}
	r.routed = true
	return nil
}
