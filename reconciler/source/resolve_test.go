package source

import (
	"errors"
	"os"
	"testing"
)

func TestResolveFindsACommitOfAWatchedBranchByItsPrefix(t *testing.T) {
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
	watched := []string{"main", "feat/x"}

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

func TestResolveFetchesNewCommitsButNotForEveryUnknownPrefix(t *testing.T) {
	ctx := testContext(t)
	remote := newRemote(t)
	remote.commit(map[string]string{"v": "1"})
	repo := newRepo(t, remote.dir, Auth{})
	if _, _, err := repo.Resolve(ctx, "0000000000aa", []string{"main"}); !errors.Is(err, ErrNoSuchCommit) {
		t.Fatalf("unknown prefix: %v", err)
	}
	later := remote.commit(map[string]string{"v": "2"})
	// Within refetchAfter of the last fetch, an unknown prefix is answered
	// from the cache alone; the clock is moved instead of waiting.
	if _, _, err := repo.Resolve(ctx, later[:12], []string{"main"}); !errors.Is(err, ErrNoSuchCommit) {
		t.Fatalf("a second fetch within %v: %v", refetchAfter, err)
	}
	repo.historyFetched = repo.historyFetched.Add(-refetchAfter)
	if commit, _, err := repo.Resolve(ctx, later[:12], []string{"main"}); err != nil || commit != later {
		t.Fatalf("new commit after the interval: %s, %v", commit, err)
	}
	if _, err := os.Stat(repo.cacheDir); err == nil {
		t.Error("Resolve wrote into the shallow checkout cache")
	}
}
