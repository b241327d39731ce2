package source

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPruneKeepsNewestInUseAndCurrent(t *testing.T) {
	ctx := testContext(t)
	remote := newRemote(t)
	repo := newRepo(t, remote.dir, Auth{})
	var commits []string
	for i := range 6 {
		c := remote.commit(map[string]string{"n": strings.Repeat("x", i)})
		if _, err := repo.Checkout(ctx, "main", c); err != nil {
			t.Fatal(err)
		}
		commits = append(commits, c)
	}
	// Oldest first: c0 .. c5. Current is the old c1, as after a rollback.
	if _, err := repo.Activate(commits[1]); err != nil {
		t.Fatal(err)
	}
	base := time.Now().Add(-time.Hour)
	for i, c := range commits {
		at := base.Add(time.Duration(i) * time.Minute)
		if err := os.Chtimes(filepath.Join(repo.checkoutsDir, c), at, at); err != nil {
			t.Fatal(err)
		}
	}
	leftover := filepath.Join(repo.checkoutsDir, tmpPrefix+"crashed")
	if err := os.Mkdir(leftover, 0o755); err != nil {
		t.Fatal(err)
	}

	if err := repo.Prune(2, filepath.Join(repo.checkoutsDir, commits[0]), commits[2]); err != nil {
		t.Fatal(err)
	}

	kept := map[string]bool{commits[0]: true, commits[1]: true, commits[2]: true, commits[4]: true, commits[5]: true}
	for i, c := range commits {
		_, err := os.Stat(filepath.Join(repo.checkoutsDir, c))
		if exists := err == nil; exists != kept[c] {
			t.Errorf("c%d exists=%v, want %v", i, exists, kept[c])
		}
	}
	if _, err := os.Stat(leftover); err == nil {
		t.Error("Prune left a crashed export behind")
	}
	if got := readFile(t, filepath.Join(repo.checkoutsDir, "current", "n")); got != "x" {
		t.Errorf("current/n = %q after prune, want c1's content", got)
	}
	refs := runGit(t, "", "--git-dir", repo.cacheDir, "for-each-ref", "--format=%(refname)", commitRefsPrefix)
	if strings.Contains(refs, commits[3]) || !strings.Contains(refs, commits[5]) {
		t.Errorf("cache refs after prune:\n%s\nwant c5 kept and c3 dropped", refs)
	}
}
