package source

import (
	"bytes"
	"io"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// gitHTTPServer serves repositories under root with git http-backend and
// demands the basic-auth password token. It records upload-pack POSTs,
// which only a fetch sends (ls-remote is a GET of info/refs).
type gitHTTPServer struct {
	*httptest.Server
	mu      sync.Mutex
	fetches []string // request bodies of fetches
}

func startGitHTTP(t *testing.T, root, token string) *gitHTTPServer {
	t.Helper()
	backend := &cgi.Handler{
		Path:       filepath.Join(runGit(t, "", "--exec-path"), "git-http-backend"),
		Env:        []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1", "GIT_CONFIG_NOSYSTEM=1"},
		InheritEnv: []string{"PATH"},
	}
	s := &gitHTTPServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if _, pass, ok := req.BasicAuth(); !ok || pass != token {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		if req.Method == http.MethodPost && strings.HasSuffix(req.URL.Path, "/git-upload-pack") {
			body, _ := io.ReadAll(req.Body)
			req.Body = io.NopCloser(bytes.NewReader(body))
			s.mu.Lock()
			s.fetches = append(s.fetches, string(body))
			s.mu.Unlock()
		}
		backend.ServeHTTP(w, req)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *gitHTTPServer) fetchBodies() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.fetches...)
}

const testToken = "tok-7f3a9c1e-not-for-logs"

func TestUnchangedHeadDoesNotFetch(t *testing.T) {
	ctx := testContext(t)
	remote := newRemote(t)
	c1 := remote.commit(map[string]string{"v": "1"})
	srv := startGitHTTP(t, filepath.Dir(remote.dir), testToken)
	repo := newRepo(t, srv.URL+"/remote", Auth{Token: testToken})

	tick := func() string {
		t.Helper()
		refs, err := repo.LsRemote(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := repo.Checkout(ctx, "main", refs.Branches["main"]); err != nil {
			t.Fatal(err)
		}
		return refs.Branches["main"]
	}
	if tick() != c1 || len(srv.fetchBodies()) != 1 {
		t.Fatalf("first tick: %d fetches, want 1", len(srv.fetchBodies()))
	}
	tick()
	tick()
	if n := len(srv.fetchBodies()); n != 1 {
		t.Fatalf("unchanged head: %d fetches in total, want still 1", n)
	}

	c2 := remote.commit(map[string]string{"v": "2"})
	if tick() != c2 {
		t.Fatal("new commit not seen")
	}
	bodies := srv.fetchBodies()
	if len(bodies) != 2 {
		t.Fatalf("new commit: %d fetches in total, want 2", len(bodies))
	}
	// Incremental: the second fetch tells the server what the cache has.
	if !strings.Contains(bodies[1], "have "+c1) || !strings.Contains(bodies[1], "deepen 1") {
		t.Fatalf("second fetch is not an incremental shallow fetch:\n%s", bodies[1])
	}
	if got := readFile(t, filepath.Join(repo.checkoutsDir, "current", "v")); got != "2" {
		t.Fatalf("current/v = %q", got)
	}
}

func TestHTTPTokenAuth(t *testing.T) {
	remote := newRemote(t)
	head := remote.commit(map[string]string{"v": "1"})
	srv := startGitHTTP(t, filepath.Dir(remote.dir), testToken)
	url := srv.URL + "/remote"

	t.Run("right token", func(t *testing.T) {
		repo := newRepo(t, url, Auth{Token: testToken})
		if _, err := repo.Checkout(testContext(t), "main", head); err != nil {
			t.Fatal(err)
		}
	})
	for name, token := range map[string]string{"wrong token": "wrong-" + testToken, "no token": ""} {
		t.Run(name, func(t *testing.T) {
			repo := newRepo(t, url, Auth{Token: token})
			_, lsErr := repo.LsRemote(testContext(t))
			_, coErr := repo.Checkout(testContext(t), "main", head)
			for _, err := range []error{lsErr, coErr} {
				if err == nil {
					t.Fatal("remote accepted a bad token")
				}
				if token != "" && strings.Contains(err.Error(), token) || strings.Contains(err.Error(), testToken) {
					t.Fatalf("error reveals the token: %v", err)
				}
				if !strings.Contains(err.Error(), "auth") {
					t.Fatalf("error does not say authentication failed: %v", err)
				}
			}
		})
	}
}

func TestErrorsNeverContainTheToken(t *testing.T) {
	// The token is also in the URL here, so the raw error would carry it.
	repo := newRepo(t, "https://127.0.0.1:1/"+testToken+".git", Auth{Token: testToken})
	_, err := repo.LsRemote(testContext(t))
	if err == nil || strings.Contains(err.Error(), testToken) || !strings.Contains(err.Error(), "REDACTED") {
		t.Fatalf("error = %v; want a failure with the token redacted", err)
	}
}
