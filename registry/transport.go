package registry

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
)

// Timeouts of the one transport every check shares. A check as a whole is
// bounded by Options.Timeout; these keep a single stuck connection from
// eating all of it.
const (
	dialTimeout           = 10 * time.Second
	tlsHandshakeTimeout   = 10 * time.Second
	responseHeaderTimeout = 20 * time.Second
	idleConnTimeout       = 90 * time.Second
)

// newHTTPTransport returns the transport shared by all checks. Certificates
// are always verified, against rootCAs or the system pool when nil.
func newHTTPTransport(rootCAs *x509.CertPool) *http.Transport {
	return &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   dialTimeout,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		TLSClientConfig:       &tls.Config{RootCAs: rootCAs, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   tlsHandshakeTimeout,
		ResponseHeaderTimeout: responseHeaderTimeout,
		IdleConnTimeout:       idleConnTimeout,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   4,
		ExpectContinueTimeout: time.Second,
	}
}

// ParseInsecure parses HAWSER_INSECURE_REGISTRIES: comma-separated
// host[:port] entries of registries that may be spoken to over plain HTTP.
// An entry without a port allows any port of that host.
func ParseInsecure(value string) ([]string, error) {
	var hosts []string
	for _, entry := range strings.Split(value, ",") {
		entry = strings.ToLower(strings.TrimSpace(entry))
		if entry == "" {
			continue
		}
		if strings.Contains(entry, "://") || strings.Contains(entry, "/") {
			return nil, fmt.Errorf("HAWSER_INSECURE_REGISTRIES entry %q: want host[:port], without scheme or path", entry)
		}
		if _, err := name.NewRegistry(entry, name.StrictValidation); err != nil {
			return nil, fmt.Errorf("HAWSER_INSECURE_REGISTRIES entry %q: %w", entry, err)
		}
		hosts = append(hosts, entry)
	}
	return hosts, nil
}

// plainHTTP decides which registries may be spoken to without TLS: loopback
// ones, and those the operator listed.
type plainHTTP struct {
	listed []string
}

// allowed reports whether hostport (host[:port] as in a URL) may use plain
// HTTP.
func (p plainHTTP) allowed(hostport string) bool {
	hostport = strings.ToLower(hostport)
	host := hostOnly(hostport)
	if isLoopback(host) {
		return true
	}
	for _, l := range p.listed {
		if l == hostport || l == host {
			return true
		}
	}
	return false
}

func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return strings.Trim(hostport, "[]")
}

func isLoopback(host string) bool {
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// httpGuard refuses plain-HTTP requests to registries that must use TLS.
// go-containerregistry falls back to HTTP on its own for private (RFC 1918)
// addresses; this is where hawser's stricter rule is enforced, for registry
// and token server alike, before any byte (or credential) leaves the host.
type httpGuard struct {
	policy plainHTTP
	inner  http.RoundTripper
}

// RoundTrip implements http.RoundTripper.
func (g httpGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" && !g.policy.allowed(req.URL.Host) {
		closeBody(req)
		return nil, fmt.Errorf("refusing plain HTTP to %s: not a loopback registry and not in HAWSER_INSECURE_REGISTRIES", req.URL.Host)
	}
	return g.inner.RoundTrip(req)
}

// closeBody closes a request's body when a RoundTripper answers without
// sending it, as the http.RoundTripper contract asks.
func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close() // nothing was sent, so a failed close loses nothing
	}
}
