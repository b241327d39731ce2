package source

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// ErrNoSuchCommit means no recent commit of a watched branch has the
// prefix.
var ErrNoSuchCommit = errors.New("no recent commit of a watched branch has this prefix")

// historyRefsPrefix names each branch's tip in the history cache by a hash
// of the branch name, so a branch name never becomes a file path.
const historyRefsPrefix = "refs/hawser/history/"

// RecentCommits is how far back from each branch's head Resolve looks:
// per-commit previews are for what is under review, and the bound keeps a
// lookup for a made-up prefix cheap on a long history.
const RecentCommits = 200

var prefixPattern = regexp.MustCompile(`^[0-9a-f]{12,40}$`)

// Resolve finds the commit whose ID starts with prefix (12 to 40 lowercase
// hex digits) among the RecentCommits newest commits of each branch of
// heads (as ls-remote saw them; heads.Default is searched first), and the
// branch that holds it. The checkout cache is shallow, so the history of
// those branches is kept in a bare repository of its own next to it,
// fetched only when a head is not in it yet: a prefix nobody pushed never
// causes a fetch.
func (r *Repo) Resolve(ctx context.Context, prefix string, heads Refs) (commit, branch string, err error) {
	if !prefixPattern.MatchString(prefix) {
		return "", "", fmt.Errorf("%w: %q is not 12 to 40 hex digits", ErrInvalidCommit, prefix)
	}
	r.historyMu.Lock()
	defer r.historyMu.Unlock()
	repo, err := r.openHistory()
	if err != nil {
		return "", "", err
	}
	if !hasHeads(repo, heads.Branches) {
		if err := r.fetchHistory(ctx, repo, slices.Sorted(maps.Keys(heads.Branches))); err != nil {
			return "", "", r.scrub(err)
		}
	}
	return findCommit(repo, prefix, heads)
}

// hasHeads reports whether the history cache has every branch at its head.
func hasHeads(repo *git.Repository, heads map[string]string) bool {
	for branch, head := range heads {
		tip, err := repo.Storer.Reference(historyRef(branch))
		if err != nil || tip.Hash().String() != head {
			return false
		}
	}
	return true
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

// findCommit walks the recent history of each branch, heads.Default first,
// for a commit with the prefix.
func findCommit(repo *git.Repository, prefix string, heads Refs) (string, string, error) {
	order := slices.Sorted(maps.Keys(heads.Branches))
	if i := slices.Index(order, heads.Default); i > 0 {
		order = append([]string{heads.Default}, slices.Delete(order, i, i+1)...)
	}
	for _, b := range order {
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
		seen := 0
		err = object.NewCommitPreorderIter(start, nil, nil).ForEach(func(c *object.Commit) error {
			if strings.HasPrefix(c.Hash.String(), prefix) {
				found = c.Hash.String()
				return storer.ErrStop
			}
			if seen++; seen >= RecentCommits {
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
