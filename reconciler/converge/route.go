package converge

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"

	"hawser.dev/hawser/reconciler/compose"
)

// Labels that route a service through hawser's front end.
const (
	// LabelHTTPPort is the container port the front end sends requests to.
	LabelHTTPPort = "dev.hawser.http.port"
	// LabelHTTPHost overrides the host name the service is served at.
	LabelHTTPHost = "dev.hawser.http.host"
	// LabelHTTPHealth is the path probed when the service has no healthcheck.
	LabelHTTPHealth = "dev.hawser.http.health"
)

// Routing says how the front end reaches a service.
type Routing struct {
	Port   uint16
	Host   string // from LabelHTTPHost; empty means the default host
	Health string // path of the HTTP probe
}

// RoutingOf reads a service's routing labels; ok is false for a service the
// front end does not route.
func RoutingOf(svc types.ServiceConfig) (r Routing, ok bool, err error) {
	v, ok := svc.Labels[LabelHTTPPort]
	if !ok {
		return Routing{}, false, nil
	}
	port, err := strconv.ParseUint(v, 10, 16)
	if err != nil || port == 0 {
		return Routing{}, false, &SpecError{Service: svc.Name, Msg: fmt.Sprintf("label %s: %q is not a port number", LabelHTTPPort, v)}
	}
	r = Routing{Port: uint16(port), Host: strings.ToLower(svc.Labels[LabelHTTPHost]), Health: svc.Labels[LabelHTTPHealth]}
	if r.Health == "" {
		r.Health = "/"
	}
	if !strings.HasPrefix(r.Health, "/") {
		return Routing{}, false, &SpecError{Service: svc.Name, Msg: fmt.Sprintf("label %s: %q must start with /", LabelHTTPHealth, r.Health)}
	}
	return r, true, nil
}

// SpecError is a mistake in a service's definition that hawser found: it
// takes a new commit to fix.
type SpecError struct {
	Service string
	Msg     string
}

func (e *SpecError) Error() string { return fmt.Sprintf("service %q: %s", e.Service, e.Msg) }

// blueGreen reports whether a routed service can run its new container next
// to the old one, and if not, why: a fixed host port or container name can
// be held by one container only.
func blueGreen(svc types.ServiceConfig) (bool, string) {
	if svc.ContainerName != "" {
		return false, "it has a container_name"
	}
	for _, p := range svc.Ports {
		if p.Published != "" {
			return false, "it publishes a fixed host port"
		}
	}
	return true, ""
}

// reachable makes a routed container reachable from the front end: on the
// upstream network when hawser runs in a container, else published.
func (c *Converger) reachable(spec *compose.ContainerSpec, port uint16) {
	if c.UpstreamNetwork == "" {
		publish(spec, port)
		return
	}
	if spec.Network != nil && spec.Network.EndpointsConfig[c.UpstreamNetwork] != nil {
		return
	}
	if _, ok := spec.Extra[c.UpstreamNetwork]; ok {
		return
	}
	if spec.Extra == nil {
		spec.Extra = map[string]*network.EndpointSettings{}
	}
	spec.Extra[c.UpstreamNetwork] = &network.EndpointSettings{}
	spec.ExtraOrder = append(spec.ExtraOrder, c.UpstreamNetwork)
}

// publish makes the routed port reachable from hawser on the host: on
// 127.0.0.1, at a port the engine picks.
func publish(spec *compose.ContainerSpec, port uint16) {
	p, _ := network.PortFrom(port, network.TCP)
	if spec.Config.ExposedPorts == nil {
		spec.Config.ExposedPorts = network.PortSet{}
	}
	spec.Config.ExposedPorts[p] = struct{}{}
	if spec.Host.PortBindings == nil {
		spec.Host.PortBindings = network.PortMap{}
	}
	if len(spec.Host.PortBindings[p]) == 0 {
		spec.Host.PortBindings[p] = []network.PortBinding{{HostIP: netip.MustParseAddr("127.0.0.1")}}
	}
}

// Upstream is the URL the front end reaches a listed container's routed
// port at: on the upstream network, by the container's short ID (the engine's
// DNS knows it, and it survives renames); otherwise at the port it publishes
// on loopback, "" when there is none.
func (c *Converger) Upstream(ct container.Summary, port uint16) string {
	if c.UpstreamNetwork != "" {
		return byID(ct.ID, port)
	}
	for _, p := range ct.Ports {
		if p.PrivatePort == port && p.PublicPort != 0 && (!p.IP.IsValid() || p.IP.IsLoopback()) {
			return fmt.Sprintf("http://127.0.0.1:%d", p.PublicPort)
		}
	}
	return ""
}

func byID(id string, port uint16) string {
	return fmt.Sprintf("http://%s:%d", id[:min(12, len(id))], port)
}

// inspectedUpstream is Upstream for an inspected container.
func (cv *Converger) inspectedUpstream(c container.InspectResponse, port uint16) string {
	if cv.UpstreamNetwork != "" {
		return byID(c.ID, port)
	}
	if c.NetworkSettings == nil {
		return ""
	}
	p, _ := network.PortFrom(port, network.TCP)
	for _, b := range c.NetworkSettings.Ports[p] {
		if b.HostPort != "" && (!b.HostIP.IsValid() || b.HostIP.IsLoopback()) {
			return "http://127.0.0.1:" + b.HostPort
		}
	}
	return ""
}

// probe asks a routed container's health path; any answer below 500 is
// healthy, as a load balancer would judge it.
func (c *Converger) probe(ctx context.Context, upstream, path string) bool {
	if c.probeOverride != nil {
		return c.probeOverride(ctx, upstream, path)
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, upstream+path, nil)
	if err != nil {
		return false
	}
	resp, err := c.prober().Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode < http.StatusInternalServerError
}

// probeWith replaces the HTTP probe, for tests where the upstream is on a
// network the test cannot reach.
func (c *Converger) probeWith(probe func(ctx context.Context, upstream, path string) bool) {
	c.probeOverride = probe
}
