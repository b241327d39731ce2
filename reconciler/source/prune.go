package source

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
)

// Prune removes exported commits, keeping the keep most recently used (by
// modification time, which Activate refreshes), every commit in inUse
// (commit IDs or their directories) and the one "current" points at. It
// also removes temporaries a crash left behind and forgets pruned commits
// in the cache's refs.
func (r *Repo) Prune(keep int, inUse ...string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	entries, err := os.ReadDir(r.checkoutsDir)
	if err != nil {
		return fmt.Errorf("git source: prune: %w", err)
	}
	kept, err := r.protected(inUse)
	if err != nil {
		return err
	}
	var errs []error
	var commits []dated
	for _, e := range entries {
		name := e.Name()
		full := filepath.Join(r.checkoutsDir, name)
		switch {
		case isLeftover(name):
			errs = append(errs, os.RemoveAll(full))
		case isCommitDir(name):
			info, err := e.Info()
			if err != nil {
				errs = append(errs, err)
				continue
			}
			commits = append(commits, dated{name, info.ModTime()})
		}
	}
	for i, c := range newestFirst(commits) {
		if i < keep || kept[c.name] {
			kept[c.name] = true
			continue
		}
		r.log.Info("pruning checkout", "commit", c.name)
		errs = append(errs, os.RemoveAll(filepath.Join(r.checkoutsDir, c.name)))
	}
	errs = append(errs, r.pruneCacheRefs(kept))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("git source: prune: %w", err)
	}
	return nil
}

type dated struct {
	name string
	mod  time.Time
}

func newestFirst(ds []dated) []dated {
	sort.SliceStable(ds, func(i, j int) bool { return ds[i].mod.After(ds[j].mod) })
	return ds
}

// protected is the set of commits Prune must not remove whatever their age.
func (r *Repo) protected(inUse []string) (map[string]bool, error) {
	kept := map[string]bool{}
	for _, c := range inUse {
		kept[filepath.Base(c)] = true
	}
	cur, err := r.Current()
	if err != nil {
		return nil, err
	}
	if cur != "" {
		kept[cur] = true
	}
	return kept, nil
}

// pruneCacheRefs drops the cache's names for commits no longer on disk.
// The objects stay (go-git never collects them implicitly), so a rollback
// to a pruned commit can still be exported without a fetch.
func (r *Repo) pruneCacheRefs(kept map[string]bool) error {
	if _, err := os.Stat(r.cacheDir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	cache, err := r.openCache()
	if err != nil {
		return err
	}
	iter, err := cache.Storer.IterReferences()
	if err != nil {
		return err
	}
	var stale []plumbing.ReferenceName
	err = iter.ForEach(func(ref *plumbing.Reference) error {
		name := ref.Name().String()
		if strings.HasPrefix(name, commitRefsPrefix) && !kept[strings.TrimPrefix(name, commitRefsPrefix)] {
			stale = append(stale, ref.Name())
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, name := range stale {
		if err := cache.Storer.RemoveReference(name); err != nil {
			return err
		}
	}
	return nil
}
