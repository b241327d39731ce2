package proxy

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
)

// Routes keeps the routes of several owners (the projects and previews of
// one daemon) and installs their union as one table, so no owner's swap
// drops another's hosts. Primary owners (production) win a host over
// secondary ones (previews): a branch can never take a production host.
type Routes struct {
	proxy  *Proxy
	mu     sync.Mutex
	owners map[string]owned
}

type owned struct {
	routes    []Route
	secondary bool
}

// NewRoutes returns an empty set of routes for p.
func NewRoutes(p *Proxy) *Routes {
	return &Routes{proxy: p, owners: map[string]owned{}}
}

// Set replaces the routes of a primary owner and installs the new union. The
// union is validated whole first: on an error (a host two primary owners
// claim, say) nothing changes and the old table keeps serving.
func (r *Routes) Set(owner string, routes []Route) error {
	return r.set(owner, owned{routes: slices.Clone(routes)})
}

// SetSecondary replaces the routes of a secondary owner. Its routes for
// hosts a primary owner has are left out, and the error names them.
func (r *Routes) SetSecondary(owner string, routes []Route) error {
	return r.set(owner, owned{routes: slices.Clone(routes), secondary: true})
}

func (r *Routes) set(owner string, o owned) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	next := maps.Clone(r.owners)
	if len(o.routes) == 0 {
		delete(next, owner)
	} else {
		next[owner] = o
	}
	all, shadowed := union(next)
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
	if hosts := shadowed[owner]; len(hosts) > 0 {
		return fmt.Errorf("hosts %s belong to production: not routed to %s", strings.Join(hosts, ", "), owner)
	}
	return nil
}

// union lists the primary owners' routes, then the secondary owners' routes
// for hosts no primary owner has; shadowed names what was left out, by owner.
func union(owners map[string]owned) ([]Route, map[string][]string) {
	var all []Route
	primary := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(owners)) {
		if o := owners[name]; !o.secondary {
			all = append(all, o.routes...)
			for _, rt := range o.routes {
				primary[strings.ToLower(rt.Host)] = true
			}
		}
	}
	shadowed := map[string][]string{}
	for _, name := range slices.Sorted(maps.Keys(owners)) {
		o := owners[name]
		if !o.secondary {
			continue
		}
		for _, rt := range o.routes {
			if primary[strings.ToLower(rt.Host)] {
				shadowed[name] = append(shadowed[name], rt.Host)
				continue
			}
			all = append(all, rt)
		}
	}
	return all, shadowed
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
