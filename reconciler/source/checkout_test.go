package source

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestCheckoutExportsFilesExecBitsAndSymlinksWithoutGit(t *testing.T) {
	remote := newRemote(t)
	remote.commit(map[string]string{
		"compose.yaml":      "services: {}\n",
		"bin/run.sh":        "#!/bin/sh\n",
		"config/app.conf":   "x=1\n",
		"link-to-conf":      "->config/app.conf",
		"dangling-absolute": "->/nonexistent/elsewhere",
	})
	remote.git("update-index", "--chmod=+x", "bin/run.sh")
	remote.git("commit", "-q", "-m", "exec")
	head := remote.git("rev-parse", "HEAD")
	repo := newRepo(t, "file://"+remote.dir, Auth{})

	co, err := repo.Checkout(testContext(t), "main", head)
	if err != nil {
		t.Fatal(err)
	}
	if co.Dir != filepath.Join(repo.checkoutsDir, head) || co.Current != filepath.Join(repo.checkoutsDir, "current") {
		t.Fatalf("checkout = %+v", co)
	}
	if got := readFile(t, filepath.Join(co.Current, "compose.yaml")); got != "services: {}\n" {
		t.Fatalf("compose.yaml = %q", got)
	}
	assertMode(t, filepath.Join(co.Dir, "bin/run.sh"), 0o755)
	assertMode(t, filepath.Join(co.Dir, "config/app.conf"), 0o644)
	for link, want := range map[string]string{"link-to-conf": "config/app.conf", "dangling-absolute": "/nonexistent/elsewhere"} {
		if got, err := os.Readlink(filepath.Join(co.Dir, link)); err != nil || got != want {
			t.Fatalf("readlink %s = %q, %v; want %q", link, got, err, want)
		}
	}
	if got := readFile(t, filepath.Join(co.Dir, "link-to-conf")); got != "x=1\n" {
		t.Fatalf("symlink content = %q", got)
	}
	if _, err := os.Lstat(filepath.Join(co.Dir, ".git")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("checkout has .git (err=%v)", err)
	}
	assertEntries(t, co.Dir, []string{"bin", "compose.yaml", "config", "dangling-absolute", "link-to-conf"})
}

func assertMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	info, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Mode().Perm(); got != want {
		t.Fatalf("mode of %s = %v, want %v", path, got, want)
	}
}

func assertEntries(t *testing.T, dir string, want []string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	sort.Strings(got)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("entries of %s = %v, want %v", dir, got, want)
	}
}

func TestCurrentSwitchesAtomicallyBetweenCommits(t *testing.T) {
	ctx := testContext(t)
	remote := newRemote(t)
	c1 := remote.commit(map[string]string{"version": "one"})
	repo := newRepo(t, "file://"+remote.dir, Auth{})
	co1, err := repo.Checkout(ctx, "main", c1)
	if err != nil {
		t.Fatal(err)
	}
	c2 := remote.commit(map[string]string{"version": "two"})
	co2, err := repo.Checkout(ctx, "main", c2)
	if err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(co2.Current, "version")); got != "two" {
		t.Fatalf("current/version = %q after checkout of c2", got)
	}
	if got := readFile(t, filepath.Join(co1.Dir, "version")); got != "one" {
		t.Fatalf("c1's directory changed: %q", got)
	}
	if target, _ := os.Readlink(co2.Current); target != c2 {
		t.Fatalf("current -> %q, want relative link %q", target, c2)
	}

	// A reader polling through "current" while it flips must never miss it.
	var misses atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := os.ReadFile(filepath.Join(co2.Current, "version")); err != nil {
				misses.Add(1)
			}
		}
	})
	for i := range 200 {
		commit := []string{c1, c2}[i%2]
		if _, err := repo.Activate(commit); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if misses.Load() != 0 {
		t.Fatalf("reader found no current checkout %d times while it was switched", misses.Load())
	}
	if cur, err := repo.Current(); err != nil || cur != c2 {
		t.Fatalf("Current() = %q, %v; want %s", cur, err, c2)
	}
	assertNoLeftovers(t, repo.checkoutsDir)
}

func assertNoLeftovers(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Fatalf("temporary %s left in %s", e.Name(), dir)
		}
	}
}

func TestCheckoutOfExportedCommitNeedsNoRemote(t *testing.T) {
	ctx := testContext(t)
	remote := newRemote(t)
	c1 := remote.commit(map[string]string{"a": "1"})
	repo := newRepo(t, "file://"+remote.dir, Auth{})
	if _, err := repo.Checkout(ctx, "main", c1); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, repo.cacheDir)
	if err := os.RemoveAll(remote.dir); err != nil {
		t.Fatal(err)
	}
	co, err := repo.Checkout(ctx, "main", c1)
	if err != nil {
		t.Fatalf("checkout of an exported commit contacted the vanished remote: %v", err)
	}
	if got := readFile(t, filepath.Join(co.Current, "a")); got != "1" {
		t.Fatalf("current/a = %q", got)
	}
	if after := snapshot(t, repo.cacheDir); after != before {
		t.Fatalf("cache changed without a new commit:\nbefore %s\nafter  %s", before, after)
	}
}

// snapshot describes every file of dir by name, size and mtime.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		b.WriteString(p + " " + info.ModTime().Format(time.RFC3339Nano) + " " + info.Mode().String() + ";")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestRollbackToPrunedCommitExportsFromCache(t *testing.T) {
	ctx := testContext(t)
	remote := newRemote(t)
	c1 := remote.commit(map[string]string{"v": "1"})
	repo := newRepo(t, remote.dir, Auth{})
	if _, err := repo.Checkout(ctx, "main", c1); err != nil {
		t.Fatal(err)
	}
	c2 := remote.commit(map[string]string{"v": "2"})
	if _, err := repo.Checkout(ctx, "main", c2); err != nil {
		t.Fatal(err)
	}
	if err := repo.Prune(0); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(repo.checkoutsDir, c1)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("c1 not pruned: %v", err)
	}
	// main has moved on to c2, so only the cache can still provide c1.
	co, err := repo.Checkout(ctx, "main", c1)
	if err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(co.Current, "v")); got != "1" {
		t.Fatalf("rolled back current/v = %q", got)
	}
}

func TestOlderCommitOfABranchIsFetchedWithItsHistory(t *testing.T) {
	ctx := testContext(t)
	remote := newRemote(t)
	c1 := remote.commit(map[string]string{"v": "1"})
	remote.commit(map[string]string{"v": "2"})
	repo := newRepo(t, remote.dir, Auth{})
	// git's own server refuses commits by ID: only the branch's history
	// can bring c1.
	co, err := repo.Checkout(ctx, "main", c1)
	if err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(co.Current, "v")); got != "1" {
		t.Fatalf("v = %q, want 1", got)
	}
	c3 := remote.commit(map[string]string{"v": "3"})
	if co, err = repo.Checkout(ctx, "main", c3); err != nil || readFile(t, filepath.Join(co.Current, "v")) != "3" {
		t.Fatalf("checkout of the new head after deepening: %v", err)
	}
}

func TestCommitNoLongerOnTheBranchIsReported(t *testing.T) {
	remote := newRemote(t)
	remote.commit(map[string]string{"v": "1"})
	gone := remote.commit(map[string]string{"v": "2"})
	remote.git("reset", "-q", "--hard", "HEAD~1")
	remote.commit(map[string]string{"v": "3"})
	remote.git("reflog", "expire", "--expire=now", "--all")
	remote.git("gc", "-q", "--prune=now")
	repo := newRepo(t, remote.dir, Auth{})
	_, err := repo.Checkout(testContext(t), "main", gone)
	if !errors.Is(err, ErrCommitNotFound) {
		t.Fatalf("checkout of a commit force-pushed away: err = %v, want ErrCommitNotFound", err)
	}
	assertNoLeftovers(t, repo.checkoutsDir)
}

func TestHostileNamesNeverReachTheFileSystem(t *testing.T) {
	remote := newRemote(t)
	head := remote.commit(map[string]string{"a": "1"})
	repo := newRepo(t, remote.dir, Auth{})
	ctx := testContext(t)
	for _, branch := range []string{"", "../../etc", "a..b", "x/.lock/"} {
		if _, err := repo.Checkout(ctx, branch, head); !errors.Is(err, ErrInvalidBranch) {
			t.Errorf("branch %q: err = %v, want ErrInvalidBranch", branch, err)
		}
	}
	for _, commit := range []string{"", "..", "../" + head[:37], strings.ToUpper(head), head[:39], head + "0"} {
		if _, err := repo.Checkout(ctx, "main", commit); !errors.Is(err, ErrInvalidCommit) {
			t.Errorf("commit %q: err = %v, want ErrInvalidCommit", commit, err)
		}
	}
}

func TestHostileTreeCannotWriteOutsideTheCheckout(t *testing.T) {
	outside := t.TempDir()
	remote := newRemote(t)
	remote.commit(map[string]string{"a": "1"})
	blob := strings.TrimSpace(remote.gitStdin("hi\n", "hash-object", "-w", "--stdin"))
	link := strings.TrimSpace(remote.gitStdin(outside, "hash-object", "-w", "--stdin"))
	sub := strings.TrimSpace(remote.gitStdin("100644 blob "+blob+"\tpwned\n", "mktree"))
	trees := map[string]string{
		"dot-dot":      "100644 blob " + blob + "\t..\n",
		"dot-git":      "040000 tree " + sub + "\t.git\n",
		"through-link": "120000 blob " + link + "\tevil\n040000 tree " + sub + "\tevil\n",
	}
	repo := newRepo(t, remote.dir, Auth{})
	for name, entries := range trees {
		t.Run(name, func(t *testing.T) {
			tree := strings.TrimSpace(remote.gitStdin(entries, "mktree"))
			commit := remote.git("commit-tree", tree, "-m", name)
			remote.git("update-ref", "refs/heads/"+name, commit)
			_, err := repo.Checkout(testContext(t), name, commit)
			if err == nil {
				t.Fatal("hostile tree was exported")
			}
			t.Logf("refused: %v", err)
			assertEntries(t, outside, nil)
			if _, err := os.Stat(filepath.Join(repo.checkoutsDir, commit)); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("half-written checkout visible: %v", err)
			}
			assertNoLeftovers(t, repo.checkoutsDir)
		})
	}
}
