package source

import (
	"errors"
	"os"
	"testing"
)

// heads is what ls-remote says of the remote's branches.
func (r *testRemote) heads(production string, branches ...string) Refs {
	refs := Refs{Default: production, Branches: map[string]string{}}
	for _, b := range append(branches, production) {
		refs.Branches[b] = r.git("rev-parse", "refs/heads/"+b)
	}
	return refs
}

func TestResolveFindsARecentCommitOfAWatchedBranchByItsPrefix(t *testing.T) {
	ctx := testContext(t)
	remote := newRemote(t)
	first := remote.commit(map[string]string{"v": "1"})
	remote.commit(map[string]string{"v": "2"})
	remote.git("checkout", "-q", "-b", "feat/x")
	onFeature := remote.commit(map[string]string{"v": "feature"})
	remote.git("checkout", "-q", "-b", "unwatched")
	unwatched := remote.commit(map[string]string{"v": "secret"})
	remote.git("checkout", "-q", "main")
	repo := newRepo(t, remote.dir, Auth{})
	watched := remote.heads("main", "feat/x")

	// first is on both branches: the production branch holds it.
	for _, want := range []struct{ commit, branch string }{{first, "main"}, {onFeature, "feat/x"}} {
		commit, branch, err := repo.Resolve(ctx, want.commit[:12], watched)
		if err != nil || commit != want.commit || branch != want.branch {
			t.Fatalf("Resolve(%s) = %s on %q, %v; want %s on %q", want.commit[:12], commit, branch, err, want.commit, want.branch)
		}
	}
	if _, _, err := repo.Resolve(ctx, unwatched[:12], watched); !errors.Is(err, ErrNoSuchCommit) {
		t.Fatalf("a commit of an unwatched branch resolved: %v", err)
	}
	for _, bad := range []string{"0123456789a", "../../etc/pas", "0123456789AB", first + "0"} {
		if _, _, err := repo.Resolve(ctx, bad, watched); !errors.Is(err, ErrInvalidCommit) {
			t.Errorf("Resolve(%q): %v, want ErrInvalidCommit", bad, err)
		}
	}
}

func TestResolveFetchesOnlyWhenAHeadMovedAndLooksOnlyAtRecentCommits(t *testing.T) {
	ctx := testContext(t)
	remote := newRemote(t)
	old := remote.commit(map[string]string{"v": "0"})
	for i := range RecentCommits {
		remote.commit(map[string]string{"v": string(rune('a' + i%26))})
	}
	repo := newRepo(t, remote.dir, Auth{})
	if _, _, err := repo.Resolve(ctx, old[:12], remote.heads("main")); !errors.Is(err, ErrNoSuchCommit) {
		t.Fatalf("a commit %d behind the head resolved: %v", RecentCommits, err)
	}
	// With the heads in the cache, a lookup reads no remote: a removed
	// remote is not missed.
	latest := remote.commit(map[string]string{"v": "new"})
	heads := remote.heads("main")
	if commit, _, err := repo.Resolve(ctx, latest[:12], heads); err != nil || commit != latest {
		t.Fatalf("a new head: %s, %v", commit, err)
	}
	if err := os.RemoveAll(remote.dir); err != nil {
		t.Fatal(err)
	}
	if _, _, err := repo.Resolve(ctx, "0000000000aa", heads); !errors.Is(err, ErrNoSuchCommit) {
		t.Fatalf("an unknown prefix with the heads cached: %v, want ErrNoSuchCommit without a fetch", err)
	}
	if _, err := os.Stat(repo.cacheDir); err == nil {
		t.Error("Resolve wrote into the shallow checkout cache")
	}
}
