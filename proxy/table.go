package proxy

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Route sends the requests for one host name to one service.
type Route struct {
	// Host is the lowercase DNS name clients ask for, without port.
	Host string
	// Service names the service in logs and pages; it is never an address.
	Service string
	// Upstreams are the replicas, as http://127.0.0.1:<port> (a port the
	// container publishes on loopback) or http://<name>:<port> (the container
	// on a network hawser shares). Requests go round-robin over the replicas
	// that have not just refused a connection.
	Upstreams []string
	// Unavailable, when not empty, answers every request with 503, this
	// reason (shown to visitors, so keep it free of internals) and RetryAfter.
	Unavailable string
	// RetryAfter is the Retry-After of the 503 page; zero means five seconds.
	RetryAfter time.Duration
	// Handler, when set, serves the route instead of the proxy: the seam for
	// pages such as a preview's "starting" page that wakes its containers.
	Handler http.Handler
	// Touch, when set, is called on every request for the route, so the
	// owner knows when it was last used.
	Touch func()
	// Auth, when set, answers 401 to requests without its credentials,
	// before Touch, Handler, Unavailable or forwarding: a stranger neither
	// wakes a sleeping preview nor keeps it awake.
	Auth *BasicAuth
}

// Table is a validated, immutable set of routes, swapped whole into a Proxy.
type Table struct {
	routes map[string]*route
}

// route is a Route with its upstream URLs parsed once, at validation.
type route struct {
	Route
	targets []*url.URL
	// next spreads requests round-robin; it lives in the table, so a new
	// table starts its rotation afresh.
	next atomic.Uint32
}

// NewTable validates the routes and builds a table from them. Every problem
// is reported, each naming its host.
func NewTable(routes []Route) (*Table, error) {
	t := &Table{routes: make(map[string]*route, len(routes))}
	var errs []error
	for i, r := range routes {
		rt, err := newRoute(r)
		if err != nil {
			errs = append(errs, fmt.Errorf("route %d (%q): %w", i, r.Host, err))
			continue
		}
		if _, dup := t.routes[r.Host]; dup {
			errs = append(errs, fmt.Errorf("route %d (%q): host is routed twice", i, r.Host))
			continue
		}
		t.routes[r.Host] = rt
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return t, nil
}

// Hosts lists the routed host names, in no particular order.
func (t *Table) Hosts() []string {
	return slices.Collect(maps.Keys(t.routes))
}

// Has reports whether host (as a client sends it: any case, maybe a port)
// is routed.
func (t *Table) Has(host string) bool {
	return t.lookup(canonicalHost(host)) != nil
}

func (t *Table) lookup(host string) *route {
	if t == nil {
		return nil
	}
	return t.routes[host]
}

func newRoute(r Route) (*route, error) {
	if err := validateHost(r.Host); err != nil {
		return nil, err
	}
	if r.Service == "" {
		return nil, errors.New("service name is empty")
	}
	if r.RetryAfter < 0 {
		return nil, errors.New("negative RetryAfter")
	}
	if len(r.Upstreams) == 0 && r.Unavailable == "" && r.Handler == nil {
		return nil, errors.New("no upstream, and neither Unavailable nor Handler is set")
	}
	rt := &route{Route: r}
	for _, u := range r.Upstreams {
		target, err := parseUpstream(u)
		if err != nil {
			return nil, err
		}
		rt.targets = append(rt.targets, target)
	}
	return rt, nil
}

// validateHost accepts a lowercase DNS name (RFC 1123 labels) without port,
// trailing dot or wildcard: the form canonicalHost gives a request's Host.
func validateHost(host string) error {
	if host == "" {
		return errors.New("host is empty")
	}
	if len(host) > 253 {
		return errors.New("host is longer than 253 characters")
	}
	if host != strings.ToLower(host) {
		return errors.New("host must be lowercase")
	}
	for label := range strings.SplitSeq(host, ".") {
		if err := validateLabel(label); err != nil {
			return fmt.Errorf("host is not a DNS name: %w", err)
		}
	}
	return nil
}

func validateLabel(label string) error {
	if label == "" || len(label) > 63 {
		return fmt.Errorf("label %q must have 1 to 63 characters", label)
	}
	if label[0] == '-' || label[len(label)-1] == '-' {
		return fmt.Errorf("label %q starts or ends with '-'", label)
	}
	for _, c := range label {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return fmt.Errorf("label %q has the character %q", label, c)
		}
	}
	return nil
}

// parseUpstream accepts http://127.0.0.1:<port> (or another loopback
// address) and http://<name>:<port>, nothing else: other IP literals would
// be container addresses that change on restart and bypass published ports.
func parseUpstream(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("upstream %q: %w", raw, err)
	}
	if u.Scheme != "http" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("upstream %q: want http://<host>:<port> and nothing more", raw)
	}
	host, port := u.Hostname(), u.Port()
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return nil, fmt.Errorf("upstream %q: port must be 1 to 65535", raw)
	}
	if ip := net.ParseIP(host); ip != nil && !ip.IsLoopback() {
		return nil, fmt.Errorf("upstream %q: use 127.0.0.1 or the container's name, not an IP address", raw)
	}
	if net.ParseIP(host) == nil {
		if err := validateHost(host); err != nil {
			return nil, fmt.Errorf("upstream %q: %w", raw, err)
		}
	}
	return &url.URL{Scheme: "http", Host: u.Host}, nil
}

// canonicalUpstream is the key in-flight counts are kept under, so that
// "http://127.0.0.1:80/" and "http://127.0.0.1:80" are the same upstream.
func canonicalUpstream(raw string) string {
	u, err := parseUpstream(raw)
	if err != nil {
		return raw
	}
	return u.String()
}

// canonicalHost turns a request's Host into a table key: no port, no
// trailing dot, lowercase.
func canonicalHost(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return strings.ToLower(strings.TrimSuffix(host, "."))
}
