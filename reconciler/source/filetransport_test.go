package source

import (
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/go-git/go-git/v5/plumbing/transport/client"
)

// Not parallel: it changes PATH and go-git's process-wide transports, and
// puts both back before the next test starts.
func TestFileRemoteWorksWithoutGitOnPath(t *testing.T) {
	remote := newRemote(t)
	first := remote.commit(map[string]string{"compose.yaml": "one"})
	remote.git("checkout", "-q", "-b", "next")
	second := remote.commit(map[string]string{"compose.yaml": "two", "more": "x"})

	stock := client.Protocols["file"]
	t.Cleanup(func() { client.InstallProtocol("file", stock) })
	t.Setenv("PATH", t.TempDir())
	if _, err := exec.LookPath("git"); err == nil {
		t.Fatal("git is still on PATH")
	}
	serveFileInProcessWithoutGit()

	repo := newRepo(t, remote.dir, Auth{})
	refs, err := repo.LsRemote(testContext(t))
	if err != nil || refs.Branches["main"] != first || refs.Branches["next"] != second {
		t.Fatalf("ls-remote = %+v, %v", refs, err)
	}
	// The second fetch has a cache to start from: it sends what it has.
	for _, c := range []struct{ branch, commit, content string }{{"main", first, "one"}, {"next", second, "two"}} {
		co, err := repo.Checkout(testContext(t), c.branch, c.commit)
		if err != nil {
			t.Fatalf("checkout %s: %v", c.branch, err)
		}
		if got := readFile(t, filepath.Join(co.Current, "compose.yaml")); got != c.content {
			t.Fatalf("%s: compose.yaml = %q, want %q", c.branch, got, c.content)
		}
	}
}
