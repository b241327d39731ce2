package source

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// currentLink is the stable name that always points at the active commit;
// compose resolves relative paths through it, so config hashes do not
// change with every commit.
const currentLink = "current"

// Reference names inside the cache. None contains a branch name, so a
// hostile branch name never becomes a file path.
const (
	fetchHeadRef     = plumbing.ReferenceName("refs/hawser/fetch-head")
	commitRefsPrefix = "refs/hawser/commits/"
)

var commitPattern = regexp.MustCompile(`^(?:[0-9a-f]{40}|[0-9a-f]{64})$`)

// Checkout makes commit, the head of branch, the active checkout: it
// exports the commit (see Export) and repoints "current" at it (see
// Activate). Use it for rollback too; a commit still on disk or in the
// cache needs no fetch.
func (r *Repo) Checkout(ctx context.Context, branch, commit string) (Checkout, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	dir, err := r.export(ctx, branch, commit)
	if err != nil {
		return Checkout{}, err
	}
	if err := r.activate(commit); err != nil {
		return Checkout{}, err
	}
	return Checkout{Commit: commit, Dir: dir, Current: r.currentPath(), Subject: r.subject(commit)}, nil
}

// subject reads the first line of a commit's message from the cache.
func (r *Repo) subject(commit string) string {
	cache, err := r.openCache()
	if err != nil {
		return ""
	}
	hash, err := goGitHash(commit)
	if err != nil {
		return ""
	}
	c, err := object.GetCommit(cache.Storer, hash)
	if err != nil {
		return ""
	}
	subject, _, _ := strings.Cut(strings.TrimSpace(c.Message), "\n")
	return subject
}

// Activate atomically repoints "current" at an exported commit and returns
// the path of "current".
func (r *Repo) Activate(commit string) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.activate(commit); err != nil {
		return "", err
	}
	return r.currentPath(), nil
}

// Current returns the commit "current" points at, or "" if there is none.
func (r *Repo) Current() (string, error) {
	target, err := os.Readlink(r.currentPath())
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("git source: read %s: %w", r.currentPath(), err)
	}
	commit := filepath.Base(target)
	if !commitPattern.MatchString(commit) {
		return "", fmt.Errorf("git source: %s points at %q, not a commit", r.currentPath(), target)
	}
	return commit, nil
}

func (r *Repo) currentPath() string { return filepath.Join(r.checkoutsDir, currentLink) }

func (r *Repo) export(ctx context.Context, branch, commit string) (string, error) {
	if err := validateCommit(commit); err != nil {
		return "", err
	}
	dir := filepath.Join(r.checkoutsDir, commit)
	if _, err := os.Lstat(dir); err == nil {
		return dir, nil
	}
	cache, err := r.openCache()
	if err != nil {
		return "", err
	}
	hash, err := goGitHash(commit)
	if err != nil {
		return "", err
	}
	if !hasCommit(cache, hash) {
		if err := r.fetch(ctx, cache, branch, hash); err != nil {
			return "", r.scrub(err)
		}
	}
	start := time.Now()
	if err := exportTree(ctx, cache, hash, r.checkoutsDir, dir); err != nil {
		return "", err
	}
	r.log.InfoContext(ctx, "exported commit", "commit", commit, "dir", dir, "duration", time.Since(start))
	return dir, nil
}

// activate replaces the "current" symlink in one rename, so a reader sees
// either the old or the new commit, never a missing link. The link is
// relative so the checkouts directory can be mounted elsewhere.
func (r *Repo) activate(commit string) error {
	if err := validateCommit(commit); err != nil {
		return err
	}
	dir := filepath.Join(r.checkoutsDir, commit)
	if _, err := os.Stat(dir); err != nil {
		return fmt.Errorf("git source: activate %s: %w", commit, err)
	}
	tmp := filepath.Join(r.checkoutsDir, ".current-"+rand.Text())
	if err := os.Symlink(commit, tmp); err != nil {
		return fmt.Errorf("git source: activate %s: %w", commit, err)
	}
	if err := os.Rename(tmp, r.currentPath()); err != nil {
		return errors.Join(fmt.Errorf("git source: activate %s: %w", commit, err), os.Remove(tmp))
	}
	// Prune keeps the most recently used commits: mark this one as used.
	now := time.Now()
	if err := os.Chtimes(dir, now, now); err != nil {
		return fmt.Errorf("git source: activate %s: %w", commit, err)
	}
	return syncDir(r.checkoutsDir)
}

// openCache opens the bare cache repository, creating it on first use.
func (r *Repo) openCache() (*git.Repository, error) {
	repo, err := git.PlainOpen(r.cacheDir)
	if errors.Is(err, git.ErrRepositoryNotExists) {
		repo, err = git.PlainInit(r.cacheDir, true)
	}
	if err != nil {
		return nil, fmt.Errorf("git source: open cache %s: %w", r.cacheDir, err)
	}
	return repo, nil
}

// fetch brings want into the cache with a depth-1 fetch of branch. Only
// if the branch has moved past want does it ask for want by ID, which not
// every server allows (git's own does not by default); then it deepens the
// branch to its whole history, which holds want if want is still on it.
func (r *Repo) fetch(ctx context.Context, cache *git.Repository, branch string, want plumbing.Hash) error {
	ref := plumbing.NewBranchReferenceName(branch)
	if branch == "" || ref.Validate() != nil {
		return fmt.Errorf("%w: %q", ErrInvalidBranch, branch)
	}
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	start := time.Now()
	tipSpec := config.RefSpec("+" + ref.String() + ":" + fetchHeadRef.String())
	if err := r.fetchRefSpec(ctx, cache, tipSpec, 1); err != nil {
		return fmt.Errorf("git fetch %s branch %q: %w", r.display, branch, err)
	}
	tip, err := cache.Reference(fetchHeadRef, false)
	if err != nil {
		return fmt.Errorf("git source: read fetched head: %w", err)
	}
	if err := keepCommitRef(cache, tip.Hash()); err != nil {
		return err
	}
	r.log.InfoContext(ctx, "fetched branch", "branch", branch, "commit", tip.Hash().String(), "duration", time.Since(start))
	if tip.Hash() == want || hasCommit(cache, want) {
		return nil
	}
	byID := config.RefSpec(want.String() + ":" + commitRefsPrefix + want.String())
	idErr := r.fetchRefSpec(ctx, cache, byID, 1)
	if idErr == nil {
		return nil
	}
	if err := r.fetchRefSpec(ctx, cache, tipSpec, fullDepth); err != nil {
		return fmt.Errorf("git fetch %s history of %q: %w", r.display, branch, err)
	}
	if !hasCommit(cache, want) {
		return fmt.Errorf("%w: %s is not on %q (now at %s): %w", ErrCommitNotFound, want, branch, tip.Hash(), idErr)
	}
	r.log.InfoContext(ctx, "fetched the history of a branch for an older commit", "branch", branch, "commit", want.String())
	return keepCommitRef(cache, want)
}

// fullDepth is a depth no history reaches: a fetch with it turns a
// shallow cache's branch into a complete one.
const fullDepth = 1<<31 - 1

func (r *Repo) fetchRefSpec(ctx context.Context, cache *git.Repository, spec config.RefSpec, depth int) error {
	auth, err := r.transportAuth()
	if err != nil {
		return err
	}
	// A remote built in memory: the cache's on-disk config never holds the
	// URL, so a changed URL needs no migration.
	remote := git.NewRemote(cache.Storer, &config.RemoteConfig{Name: "origin", URLs: []string{r.url}})
	err = remote.FetchContext(ctx, &git.FetchOptions{
		RefSpecs: []config.RefSpec{spec},
		Depth:    depth,
		Auth:     auth,
		Tags:     git.NoTags,
		Force:    true,
	})
	if errors.Is(err, git.NoErrAlreadyUpToDate) {
		return nil
	}
	return err
}

// keepCommitRef names a fetched commit in the cache so that later fetches
// advertise it as already present and transfer only what is new.
func keepCommitRef(cache *git.Repository, h plumbing.Hash) error {
	ref := plumbing.NewHashReference(plumbing.ReferenceName(commitRefsPrefix+h.String()), h)
	if err := cache.Storer.SetReference(ref); err != nil {
		return fmt.Errorf("git source: record commit %s in cache: %w", h, err)
	}
	return nil
}

func hasCommit(cache *git.Repository, h plumbing.Hash) bool {
	_, err := object.GetCommit(cache.Storer, h)
	return err == nil
}

// validateCommit guards every use of a commit ID as a directory name.
func validateCommit(commit string) error {
	if !commitPattern.MatchString(commit) {
		return fmt.Errorf("%w: %q", ErrInvalidCommit, commit)
	}
	return nil
}

// goGitHash converts a validated commit ID; go-git v5 only knows SHA-1.
func goGitHash(commit string) (plumbing.Hash, error) {
	if len(commit) != 40 {
		return plumbing.ZeroHash, fmt.Errorf("git source: commit %s: SHA-256 repositories are not supported", commit)
	}
	return plumbing.NewHash(commit), nil
}

// isCommitDir reports whether a checkouts-directory entry is a commit.
func isCommitDir(name string) bool { return commitPattern.MatchString(name) }

// isLeftover reports whether an entry is a temporary a crash left behind.
func isLeftover(name string) bool {
	return strings.HasPrefix(name, tmpPrefix) || strings.HasPrefix(name, ".current-")
}
