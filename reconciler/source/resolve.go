package source

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// ErrNoSuchCommit means no watched branch holds a commit with the prefix.
var ErrNoSuchCommit = errors.New("no commit of a watched branch has this prefix")

// historyRefsPrefix names each branch's tip in the history cache by a hash
// of the branch name, so a branch name never becomes a file path.
const historyRefsPrefix = "refs/hawser/history/"

// refetchAfter spaces out the fetches that unknown prefixes cause: a
// stranger asking for made-up commits costs one fetch in this long.
const refetchAfter = 10 * time.Second

var prefixPattern = regexp.MustCompile(`^[0-9a-f]{12,40}$`)

// Resolve finds the commit whose ID starts with prefix (12 to 40 lowercase
// hex digits) among the history of branches, and the branch that holds it.
// The checkout cache is shallow, so the full history of those branches is
// kept in a bare repository of its own next to it, fetched incrementally
// when a prefix is not found there.
func (r *Repo) Resolve(ctx context.Context, prefix string, branches []string) (commit, branch string, err error) {
	if !prefixPattern.MatchString(prefix) {
		return "", "", fmt.Errorf("%w: %q is not 12 to 40 hex digits", ErrInvalidCommit, prefix)
	}
	r.historyMu.Lock()
	defer r.historyMu.Unlock()
	repo, err := r.openHistory()
	if err != nil {
		return "", "", err
	}
	if commit, branch, err = findCommit(repo, prefix, branches); err == nil || !errors.Is(err, ErrNoSuchCommit) {
		return commit, branch, err
	}
	if time.Since(r.historyFetched) < refetchAfter {
		return "", "", err
	}
	r.historyFetched = time.Now()
	if err := r.fetchHistory(ctx, repo, branches); err != nil {
		return "", "", r.scrub(err)
	}
	return findCommit(repo, prefix, branches)
}

func (r *Repo) openHistory() (*git.Repository, error) {
	dir := r.cacheDir + ".history"
	repo, err := git.PlainOpen(dir)
	if errors.Is(err, git.ErrRepositoryNotExists) {
		repo, err = git.PlainInit(dir, true)
	}
	if err != nil {
		return nil, fmt.Errorf("git source: open history cache %s: %w", dir, err)
	}
	return repo, nil
}

// fetchHistory brings the whole history of branches into the history cache
// and forgets the tips of branches no longer watched.
func (r *Repo) fetchHistory(ctx context.Context, repo *git.Repository, branches []string) error {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	specs := make([]config.RefSpec, 0, len(branches))
	keep := map[plumbing.ReferenceName]bool{}
	for _, b := range branches {
		ref := plumbing.NewBranchReferenceName(b)
		if ref.Validate() != nil {
			return fmt.Errorf("%w: %q", ErrInvalidBranch, b)
		}
		keep[historyRef(b)] = true
		specs = append(specs, config.RefSpec("+"+ref.String()+":"+historyRef(b).String()))
	}
	if err := forgetHistoryRefs(repo, keep); err != nil {
		return err
	}
	auth, err := r.transportAuth()
	if err != nil {
		return err
	}
	start := time.Now()
	remote := git.NewRemote(repo.Storer, &config.RemoteConfig{Name: "origin", URLs: []string{r.url}})
	err = remote.FetchContext(ctx, &git.FetchOptions{RefSpecs: specs, Auth: auth, Tags: git.NoTags, Force: true})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return fmt.Errorf("git fetch %s history: %w", r.display, err)
	}
	r.log.InfoContext(ctx, "fetched history", "branches", len(branches), "duration", time.Since(start))
	return nil
}

func forgetHistoryRefs(repo *git.Repository, keep map[plumbing.ReferenceName]bool) error {
	refs, err := repo.Storer.IterReferences()
	if err != nil {
		return err
	}
	var stale []plumbing.ReferenceName
	err = refs.ForEach(func(ref *plumbing.Reference) error {
		if strings.HasPrefix(ref.Name().String(), historyRefsPrefix) && !keep[ref.Name()] {
			stale = append(stale, ref.Name())
		}
		return nil
	})
	for _, name := range stale {
		err = errors.Join(err, repo.Storer.RemoveReference(name))
	}
	return err
}

func historyRef(branch string) plumbing.ReferenceName {
	sum := sha256.Sum256([]byte(branch))
	return plumbing.ReferenceName(historyRefsPrefix + hex.EncodeToString(sum[:16]))
}

// findCommit walks each branch's history in the cache, in the order given,
// for a commit with the prefix.
func findCommit(repo *git.Repository, prefix string, branches []string) (string, string, error) {
	for _, b := range branches {
		tip, err := repo.Storer.Reference(historyRef(b))
		if errors.Is(err, plumbing.ErrReferenceNotFound) {
			continue
		}
		if err != nil {
			return "", "", err
		}
		start, err := object.GetCommit(repo.Storer, tip.Hash())
		if err != nil {
			return "", "", fmt.Errorf("git source: history of %q: %w", b, err)
		}
		var found string
		err = object.NewCommitPreorderIter(start, nil, nil).ForEach(func(c *object.Commit) error {
			if strings.HasPrefix(c.Hash.String(), prefix) {
				found = c.Hash.String()
				return storer.ErrStop
			}
			return nil
		})
		if err != nil {
			return "", "", fmt.Errorf("git source: history of %q: %w", b, err)
		}
		if found != "" {
			return found, b, nil
		}
	}
	return "", "", fmt.Errorf("%w: %s", ErrNoSuchCommit, prefix)
}
