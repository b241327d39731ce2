package source

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/storage/memory"
)

// LsRemote asks the remote for its branch heads and default branch. It is
// the cheap per-tick check: one ref advertisement, nothing is fetched.
// An empty remote yields empty Refs and no error.
func (r *Repo) LsRemote(ctx context.Context) (Refs, error) {
	ctx, cancel := context.WithTimeout(ctx, lsRemoteTimeout)
	defer cancel()
	auth, err := r.transportAuth()
	if err != nil {
		return Refs{}, r.scrub(err)
	}
	remote := git.NewRemote(memory.NewStorage(), &config.RemoteConfig{Name: "origin", URLs: []string{r.url}})
	refs, err := remote.ListContext(ctx, &git.ListOptions{Auth: auth})
	if errors.Is(err, transport.ErrEmptyRemoteRepository) {
		return Refs{Branches: map[string]string{}}, nil
	}
	if err != nil {
		return Refs{}, r.scrub(fmt.Errorf("git ls-remote %s: %w", r.display, err))
	}
	out := refsFrom(refs)
	r.log.DebugContext(ctx, "ls-remote", "branches", len(out.Branches), "default", out.Default)
	return out, nil
}

// refsFrom keeps the branches whose names are valid ref names; anything
// else a hostile remote advertises is ignored.
func refsFrom(refs []*plumbing.Reference) Refs {
	out := Refs{Branches: map[string]string{}}
	var head plumbing.ReferenceName
	for _, ref := range refs {
		name := ref.Name()
		switch {
		case name == plumbing.HEAD && ref.Type() == plumbing.SymbolicReference:
			head = ref.Target()
		case name.IsBranch() && ref.Type() == plumbing.HashReference && name.Validate() == nil:
			out.Branches[strings.TrimPrefix(name.String(), "refs/heads/")] = ref.Hash().String()
		}
	}
	out.Default = defaultBranch(head, out.Branches)
	return out
}

// defaultBranch prefers the HEAD symref; remotes that do not advertise it
// get the conventional names.
func defaultBranch(head plumbing.ReferenceName, branches map[string]string) string {
	if head.IsBranch() {
		if name := strings.TrimPrefix(head.String(), "refs/heads/"); branches[name] != "" {
			return name
		}
	}
	for _, name := range []string{"main", "master"} {
		if branches[name] != "" {
			return name
		}
	}
	return ""
}
