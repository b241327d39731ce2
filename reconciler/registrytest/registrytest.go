// Package registrytest gives tests an image registry on 127.0.0.1:
// go-containerregistry's in-process registry, which the Docker engine pulls
// from over plain HTTP because it trusts loopback registries. Tests push
// runnable busybox images to it, count the requests it gets, make it demand
// a login, answer 429 or go away.
package registrytest

import (
	"crypto/rand"
	"encoding/json"
	"io"
	"log"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
)

// Registry is one in-process registry. Its public server, at Host, is what
// the code under test and the Docker engine talk to: it counts requests and
// applies logins and faults. Pushes go through a second, private server, so
// they are neither counted nor hindered.
type Registry struct {
	public *httptest.Server
	admin  *httptest.Server

	mu       sync.Mutex
	requests []request
	limited  []time.Duration // Retry-After of each coming 429 answer
	login    *login
}

type request struct{ method, path string }

// login is what the public server demands: basic auth on every request, or,
// with a token server, basic auth at /token for a bearer token.
type login struct {
	user, password string
	tokenServer    bool
	token          string // the bearer token issued now
}

// tokenPath is where the token server answers.
const tokenPath = "/token"

// Start serves an anonymous registry on 127.0.0.1 (a random port) until the
// test ends.
func Start(t testing.TB) *Registry {
	t.Helper()
	r := &Registry{}
	registry := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	r.admin = httptest.NewServer(registry)
	r.public = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.serve(w, req, registry)
	}))
	t.Cleanup(r.admin.Close)
	t.Cleanup(r.public.Close)
	return r
}

// StartWithAuth serves a registry that, like Docker Hub, wants a bearer
// token, which its token server at /token issues for user:password.
func StartWithAuth(t testing.TB, user, password string) *Registry {
	t.Helper()
	r := Start(t)
	r.login = &login{user: user, password: password, tokenServer: true, token: rand.Text()}
	return r
}

// StartWithBasicAuth serves a registry that wants user:password as basic
// auth on every request, with no token server.
func StartWithBasicAuth(t testing.TB, user, password string) *Registry {
	t.Helper()
	r := Start(t)
	r.login = &login{user: user, password: password}
	return r
}

// Host is the registry's "127.0.0.1:PORT", as image references name it.
func (r *Registry) Host() string {
	return strings.TrimPrefix(r.public.URL, "http://")
}

// Ref is the reference of repo:tag on this registry.
func (r *Registry) Ref(repo, tag string) string {
	return r.Host() + "/" + repo + ":" + tag
}

// RepoDigest is how the Docker engine lists digest of repo in an image's
// RepoDigests.
func (r *Registry) RepoDigest(repo, digest string) string {
	return r.Host() + "/" + repo + "@" + digest
}

// Count is how many requests with method (GET, HEAD, ...) and a path ending
// in pathSuffix (for example "/manifests/v1", or "" for all) the public
// server has had, answered or not.
func (r *Registry) Count(method, pathSuffix string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, req := range r.requests {
		if req.method == method && strings.HasSuffix(req.path, pathSuffix) {
			n++
		}
	}
	return n
}

// Requests lists the public server's requests so far as "METHOD /path", for
// test failure messages.
func (r *Registry) Requests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, len(r.requests))
	for i, req := range r.requests {
		out[i] = req.method + " " + req.path
	}
	return out
}

// RateLimit makes the next n requests answer 429 Too Many Requests with a
// Retry-After of retryAfter (rounded up to whole seconds; none when zero).
func (r *Registry) RateLimit(n int, retryAfter time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for range n {
		r.limited = append(r.limited, retryAfter)
	}
}

// ExpireTokens makes the token server issue a new token and the registry
// refuse the tokens issued before.
func (r *Registry) ExpireTokens() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.login != nil {
		r.login.token = rand.Text()
	}
}

// Stop shuts the public server down, as a registry that went away: later
// connections are refused. Pushes still work.
func (r *Registry) Stop() {
	r.public.Close()
}

// serve counts req, then answers it with a fault, a login challenge, a
// token, or the registry's answer.
func (r *Registry) serve(w http.ResponseWriter, req *http.Request, registry http.Handler) {
	r.mu.Lock()
	r.requests = append(r.requests, request{method: req.Method, path: req.URL.Path})
	limited := len(r.limited) > 0
	var retryAfter time.Duration
	if limited {
		retryAfter, r.limited = r.limited[0], r.limited[1:]
	}
	var l login
	if r.login != nil {
		l = *r.login
	}
	r.mu.Unlock()
	switch {
	case limited:
		tooManyRequests(w, retryAfter)
	case l.user == "":
		registry.ServeHTTP(w, req)
	case l.tokenServer && req.URL.Path == tokenPath:
		l.issueToken(w, req)
	case !l.allows(req):
		l.challenge(w, req)
	default:
		registry.ServeHTTP(w, req)
	}
}

func tooManyRequests(w http.ResponseWriter, retryAfter time.Duration) {
	if retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(retryAfter.Seconds()))))
	}
	writeError(w, http.StatusTooManyRequests, "TOOMANYREQUESTS", "rate limited by registrytest")
}

// allows reports whether req carries the login (or its token).
func (l login) allows(req *http.Request) bool {
	if l.tokenServer {
		return req.Header.Get("Authorization") == "Bearer "+l.token
	}
	user, password, ok := req.BasicAuth()
	return ok && user == l.user && password == l.password
}

// challenge answers 401 and says how to log in, as registries do.
func (l login) challenge(w http.ResponseWriter, req *http.Request) {
	challenge := `Basic realm="registrytest"`
	if l.tokenServer {
		challenge = `Bearer realm="http://` + req.Host + tokenPath + `",service="registrytest"`
	}
	w.Header().Set("WWW-Authenticate", challenge)
	writeError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
}

// issueToken is the token server: basic auth in, bearer token out. Docker
// reads "token", go-containerregistry either field.
func (l login) issueToken(w http.ResponseWriter, req *http.Request) {
	user, password, ok := req.BasicAuth()
	if !ok || user != l.user || password != l.password {
		writeError(w, http.StatusUnauthorized, "UNAUTHORIZED", "bad credentials")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"token": l.token, "access_token": l.token, "expires_in": 300})
}

// writeError answers with the registry API's error body.
func writeError(w http.ResponseWriter, status int, code, message string) {
	writeJSON(w, status, map[string]any{"errors": []map[string]string{{"code": code, "message": message}}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	// A client that hung up cannot be told anything more.
	_ = json.NewEncoder(w).Encode(v)
}
