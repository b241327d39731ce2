package registry

import (
	"bytes"
	"encoding/json"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// testRegistry is go-containerregistry's in-process registry served twice on
// 127.0.0.1: the public server, which the checker under test talks to, logs
// every request, can demand a login (basic auth at /token for a bearer
// token) and can be told to answer with a fault; the admin server is how
// tests push, unseen and unhindered.
type testRegistry struct {
	t      *testing.T
	public *httptest.Server
	admin  *httptest.Server

	mu       sync.Mutex
	requests []string
	faults   []fault
	login    *Credential
	token    string // the bearer token the token server issues now
}

// fault is an answer the public server gives instead of the registry's.
type fault struct {
	status int
	header http.Header
}

func newTestRegistry(t *testing.T) *testRegistry {
	t.Helper()
	r := &testRegistry{t: t}
	handler := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	r.admin = httptest.NewServer(handler)
	r.public = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.serve(w, req, handler)
	}))
	t.Cleanup(r.admin.Close)
	t.Cleanup(r.public.Close)
	return r
}

func (r *testRegistry) serve(w http.ResponseWriter, req *http.Request, registry http.Handler) {
	r.mu.Lock()
	r.requests = append(r.requests, req.Method+" "+req.URL.Path)
	var f *fault
	if len(r.faults) > 0 {
		f, r.faults = &r.faults[0], r.faults[1:]
	}
	login, token := r.login, r.token
	r.mu.Unlock()
	switch {
	case f != nil:
		for k, v := range f.header {
			w.Header()[k] = v
		}
		w.WriteHeader(f.status)
	case login != nil && req.URL.Path == "/token":
		issueToken(w, req, *login, token)
	case login != nil && req.Header.Get("Authorization") != "Bearer "+token:
		w.Header().Set("WWW-Authenticate", `Bearer realm="http://`+req.Host+`/token",service="hawser-test"`)
		writeJSON(w, http.StatusUnauthorized, map[string]any{"errors": []map[string]string{{"code": "UNAUTHORIZED", "message": "authentication required"}}})
	default:
		registry.ServeHTTP(w, req)
	}
}

// issueToken is the token server: basic auth in, bearer token out.
func issueToken(w http.ResponseWriter, req *http.Request, login Credential, token string) {
	user, password, ok := req.BasicAuth()
	if !ok || user != login.Username || password != login.Password {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"errors": []map[string]string{{"code": "UNAUTHORIZED", "message": "bad credentials"}}})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"token": token, "expires_in": 300})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		panic(err) // a test server that cannot write is a broken test
	}
}

// requireLogin makes the public server demand user:password.
func (r *testRegistry) requireLogin(user, password string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.login = &Credential{Username: user, Password: password}
	r.token = "token-1"
}

// expireToken makes the token server issue a new token and refuse the old.
func (r *testRegistry) expireToken() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.token += "+"
}

// injectFault makes the public server's next answer status with header.
func (r *testRegistry) injectFault(status int, header http.Header) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.faults = append(r.faults, fault{status: status, header: header})
}

// host is the public server's host:port, as image references name it.
func (r *testRegistry) host() string {
	return strings.TrimPrefix(r.public.URL, "http://")
}

// ref is repoTag ("app:v1") on the public server.
func (r *testRegistry) ref(repoTag string) string { return r.host() + "/" + repoTag }

// repoDigest is what the engine lists in RepoDigests for digest of repo.
func (r *testRegistry) repoDigest(repo string, digest v1.Hash) string {
	return r.host() + "/" + repo + "@" + digest.String()
}

// requestCount is how many requests the public server has had.
func (r *testRegistry) requestCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.requests)
}

// requestsSince returns the requests after the first n.
func (r *testRegistry) requestsSince(n int) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.requests[n:]...)
}

// push writes img as repoTag through the admin server and returns its digest.
func (r *testRegistry) push(repoTag string, img v1.Image) v1.Hash {
	r.t.Helper()
	if err := remote.Write(r.adminRef(repoTag), img); err != nil {
		r.t.Fatalf("push %s: %v", repoTag, err)
	}
	return digestOf(r.t, img)
}

// pushIndex writes idx as repoTag through the admin server and returns its
// digest.
func (r *testRegistry) pushIndex(repoTag string, idx v1.ImageIndex) v1.Hash {
	r.t.Helper()
	if err := remote.WriteIndex(r.adminRef(repoTag), idx); err != nil {
		r.t.Fatalf("push index %s: %v", repoTag, err)
	}
	d, err := idx.Digest()
	if err != nil {
		r.t.Fatal(err)
	}
	return d
}

// tag points repoTag at img, already pushed to the same repository.
func (r *testRegistry) tag(repoTag string, img v1.Image) {
	r.t.Helper()
	if err := remote.Tag(r.adminRef(repoTag).(name.Tag), img); err != nil {
		r.t.Fatalf("tag %s: %v", repoTag, err)
	}
}

func (r *testRegistry) adminRef(repoTag string) name.Reference {
	r.t.Helper()
	ref, err := name.ParseReference(strings.TrimPrefix(r.admin.URL, "http://")+"/"+repoTag, name.Insecure)
	if err != nil {
		r.t.Fatal(err)
	}
	return ref
}

func randomImage(t *testing.T) v1.Image {
	t.Helper()
	img, err := random.Image(128, 1)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func digestOf(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// multiArch is a Docker manifest list of amd64 and arm64 for linux.
func multiArch(amd64, arm64 v1.Image) v1.ImageIndex {
	return mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.DockerManifestList),
		mutate.IndexAddendum{Add: amd64, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm64, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
	)
}

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// newTestChecker returns a Checker for linux/amd64 that ignores the host's
// Docker config unless opts brings a keychain.
func newTestChecker(t *testing.T, opts Options) *Checker {
	t.Helper()
	if opts.Keychain == nil {
		opts.Keychain = authn.NewMultiKeychain() // anonymous everywhere
	}
	if opts.Platform == "" {
		opts.Platform = "linux/amd64"
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// testWriter sends log lines to the test's log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
