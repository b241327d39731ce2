package reconciler

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/moby/moby/api/types/container"

	"hawser.dev/hawser/proxy"
	"hawser.dev/hawser/reconciler/converge"
	"hawser.dev/hawser/reconciler/preview"
)

// Router is the front end's view of the daemon's routes.
type Router interface {
	// Set replaces the routes of one owner (a project) and installs them.
	Set(owner string, routes []proxy.Route) error
	// SetSecondary does the same for an owner whose routes yield hosts a
	// primary owner has: a preview.
	SetSecondary(owner string, routes []proxy.Route) error
	// Drain waits until no request is in flight to upstream, or ctx ends.
	Drain(ctx context.Context, upstream string) error
	// ServeHTTP serves a request through the installed routes.
	ServeHTTP(w http.ResponseWriter, r *http.Request)
}

// Hosts says at which host names a project's routed services are served.
type Hosts struct {
	// Domain is the primary service's host; the others are served at
	// <service>.<Domain>. It is "localhost" without a domain.
	Domain string
	// Primary names the service served at Domain itself; empty means the
	// only routed service, if there is one.
	Primary string
	// Slug, for a preview, puts the primary service at <slug>.<Domain> and
	// the others at <service>-<slug>.<Domain>.
	Slug string
}

// hostOf is the host name of one routed service.
func (h Hosts) hostOf(d *converge.Desired, service string) string {
	if h.Slug != "" {
		if service == h.primary(d) {
			return preview.Host(h.Slug, h.Domain)
		}
		return preview.Host(preview.ServiceLabel(service, h.Slug), h.Domain)
	}
	if host := d.Services[service].Routing.Host; host != "" {
		return host
	}
	if service == h.primary(d) {
		return h.Domain
	}
	return service + "." + h.Domain
}

func (h Hosts) primary(d *converge.Desired) string {
	if h.Primary != "" {
		return h.Primary
	}
	var routed []string
	for name, s := range d.Services {
		if s.Routed {
			routed = append(routed, name)
		}
	}
	if len(routed) == 1 {
		return routed[0]
	}
	return ""
}

// routes builds the project's routes from its running containers.
func (r *Reconciler) routes(d *converge.Desired, actual []container.Summary) []proxy.Route {
	var routes []proxy.Route
	for _, name := range d.Order {
		s := d.Services[name]
		if !s.Routed {
			continue
		}
		route := proxy.Route{Host: r.project.Hosts.hostOf(d, name), Service: name, Touch: r.project.Touch, Auth: r.project.Auth}
		for _, c := range actual {
			if c.Labels[converge.LabelService] != name || c.State != container.StateRunning || converge.InTransition(c) {
				continue
			}
			if up := r.converger.Upstream(c, s.Routing.Port); up != "" {
				route.Upstreams = append(route.Upstreams, up)
			}
		}
		if len(route.Upstreams) == 0 {
			route.Unavailable = "the service is not running"
		}
		routes = append(routes, route)
	}
	return routes
}

// refreshRoutes installs the routes of the running containers: after every
// deployment, whatever its result, the containers are the truth. It may run
// after the reconcile's context ended, so it has its own deadline.
func (r *Reconciler) refreshRoutes(ctx context.Context) error {
	if r.router == nil || r.applied.desired == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	actual, err := converge.List(ctx, r.docker, r.project.Name)
	if err != nil {
		return err
	}
	return r.installRoutes(r.routes(r.applied.desired, actual))
}

func (r *Reconciler) installRoutes(routes []proxy.Route) error {
	r.traffic.mu.Lock()
	defer r.traffic.mu.Unlock()
	if err := r.router.Set(r.project.Name, routes); err != nil {
		return fmt.Errorf("install routes: %w", err)
	}
	r.traffic.routes = routes
	return nil
}

// routesChanged reports whether the containers call for other routes than
// the installed ones, as after an engine restart gave a container another
// published port.
func (r *Reconciler) routesChanged(routes []proxy.Route) bool {
	r.traffic.mu.Lock()
	defer r.traffic.mu.Unlock()
	return !slices.EqualFunc(routes, r.traffic.routes, func(a, b proxy.Route) bool {
		return a.Host == b.Host && a.Unavailable == b.Unavailable && slices.Equal(a.Upstreams, b.Upstreams)
	})
}

// traffic moves a routed service's requests during a blue-green update by
// editing the installed routes.
type traffic struct {
	r      *Reconciler
	mu     sync.Mutex
	routes []proxy.Route
}

var _ converge.Traffic = (*traffic)(nil)

func (t *traffic) Switch(_ context.Context, service, from, to string) error {
	t.mu.Lock()
	routes := slices.Clone(t.routes)
	found := false
	for i, route := range routes {
		if route.Service != service {
			continue
		}
		found = true
		ups := slices.DeleteFunc(slices.Clone(route.Upstreams), func(u string) bool { return u == from || u == to })
		if to != "" {
			ups = append(ups, to)
		}
		routes[i].Upstreams, routes[i].Unavailable = ups, ""
		if len(ups) == 0 {
			routes[i].Unavailable = "the service is not running"
		}
	}
	t.mu.Unlock()
	if !found {
		return nil // a service that became routed with this deployment: refreshRoutes adds it
	}
	return t.r.installRoutes(routes)
}

func (t *traffic) Drain(ctx context.Context, upstream string) error {
	return t.r.router.Drain(ctx, upstream)
}

// secondary is the router of a preview: its routes never take a host of
// production's.
type secondary struct{ Router }

func (s secondary) Set(owner string, routes []proxy.Route) error {
	return s.Router.SetSecondary(owner, routes)
}
