package source

import (
	"os"
	"testing"
)

func TestLsRemoteSeesNewCommitsBranchesAndDefault(t *testing.T) {
	ctx := testContext(t)
	remote := newRemote(t)
	c1 := remote.commit(map[string]string{"a": "1"})
	repo := newRepo(t, "file://"+remote.dir, Auth{})

	refs, err := repo.LsRemote(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if refs.Default != "main" || refs.Branches["main"] != c1 || len(refs.Branches) != 1 {
		t.Fatalf("first ls-remote = %+v, want main at %s", refs, c1)
	}

	c2 := remote.commit(map[string]string{"a": "2"})
	remote.git("branch", "feature/x")
	remote.git("symbolic-ref", "HEAD", "refs/heads/feature/x")
	refs, err = repo.LsRemote(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if refs.Branches["main"] != c2 || refs.Branches["feature/x"] != c2 {
		t.Fatalf("second ls-remote = %+v, want main and feature/x at %s", refs, c2)
	}
	if refs.Default != "feature/x" {
		t.Fatalf("default = %q, want the HEAD symref target feature/x", refs.Default)
	}
}

func TestLsRemoteDoesNotTouchTheCache(t *testing.T) {
	remote := newRemote(t)
	remote.commit(map[string]string{"a": "1"})
	repo := newRepo(t, "file://"+remote.dir, Auth{})
	if _, err := repo.LsRemote(testContext(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(repo.cacheDir); err == nil {
		t.Fatal("ls-remote created the cache repository; it must not fetch")
	}
}

func TestLsRemoteOfEmptyRemoteReportsNoBranches(t *testing.T) {
	remote := newRemote(t)
	refs, err := newRepo(t, remote.dir, Auth{}).LsRemote(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(refs.Branches) != 0 || refs.Default != "" {
		t.Fatalf("refs of empty remote = %+v", refs)
	}
}

func TestDefaultBranchFallsBackToMainThenMaster(t *testing.T) {
	tests := []struct {
		name     string
		branches map[string]string
		want     string
	}{
		{"main wins", map[string]string{"main": "x", "master": "y"}, "main"},
		{"master", map[string]string{"master": "y", "dev": "z"}, "master"},
		{"neither", map[string]string{"dev": "z"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := defaultBranch("", tt.branches); got != tt.want {
				t.Fatalf("defaultBranch = %q, want %q", got, tt.want)
			}
		})
	}
}
