package proxy

import (
	"context"
	"maps"
	"net/http"
	"slices"
	"sync"
)

// Routes keeps the routes of several owners (the projects and previews of
// one daemon) and installs their union as one table, so no owner's swap
// drops another's hosts.
type Routes struct {
	proxy  *Proxy
	mu     sync.Mutex
	owners map[string][]Route
}

// NewRoutes returns an empty set of routes for p.
func NewRoutes(p *Proxy) *Routes {
	return &Routes{proxy: p, owners: map[string][]Route{}}
}

// Set replaces the routes of one owner and installs the new union. The
// union is validated whole first: on an error (a host claimed twice, say)
// nothing changes and the old table keeps serving.
func (r *Routes) Set(owner string, routes []Route) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	next := maps.Clone(r.owners)
	next[owner] = slices.Clone(routes)
	var all []Route
	for _, o := range slices.Sorted(maps.Keys(next)) {
		all = append(all, next[o]...)
	}
	t, err := NewTable(all)
	if err != nil {
		return err
	}
	old := r.proxy.Table()
	r.owners = next
	r.proxy.Swap(t)
	for _, host := range old.Hosts() {
		if !t.Has(host) {
			r.proxy.ForgetHost(host)
		}
	}
	return nil
}

// Drain waits until no request is in flight to upstream, or ctx ends.
func (r *Routes) Drain(ctx context.Context, upstream string) error {
	return r.proxy.Drain(ctx, upstream)
}

// ServeHTTP serves a request through the installed routes, for a route's
// Handler that answers once its upstream is back.
func (r *Routes) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.proxy.Handler().ServeHTTP(w, req)
}
