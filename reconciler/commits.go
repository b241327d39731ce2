package reconciler

import (
	"context"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"hawser.dev/hawser/proxy"
	"hawser.dev/hawser/reconciler/preview"
	"hawser.dev/hawser/reconciler/store"
)

// Per-commit previews: c-<commit12>.<preview domain> serves any commit of a
// watched branch (production's or a previewed one). The first request
// records it in the preview inventory and asks for a reconcile, which
// builds and starts it like a branch preview; from then on it has routes of
// its own, sleeps when idle, and is torn down with its branch or after the
// TTL from that first request.

// resolvedCacheSize bounds the prefixes remembered; past it the memory
// starts afresh, so made-up hosts cannot grow it.
const resolvedCacheSize = 1024

// unknownFor is how long a prefix that named no commit stays unknown
// before the repository is asked again.
const unknownFor = time.Minute

// resolved is what one prefix named.
type resolved struct {
	commit, branch string
	at             time.Time // when an unknown prefix was last looked up
}

// CommitPreview is the front end's answer for a host without a route: for
// c-<commit12>.<preview domain> naming a commit of a watched branch, a
// route whose handler starts that commit's preview; nil for anything else.
// Its signature is proxy.OnDemand's.
func (r *Reconciler) CommitPreview(ctx context.Context, host string) *proxy.Route {
	pv := r.project.Previews
	seen := r.pv.seen.Load()
	if len(pv.Branches) == 0 || pv.Resolve == nil || seen == nil {
		return nil
	}
	label, _, _ := strings.Cut(host, ".")
	if !preview.IsCommitLabel(label) || preview.Host(label, pv.Domain) != host {
		return nil
	}
	found := r.resolveCommit(ctx, label[len("c-"):], seen)
	if found.commit == "" {
		return nil
	}
	return &proxy.Route{
		Host: host, Service: "preview", Auth: pv.Auth,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if err := r.askForCommit(label, found); err != nil {
				r.log.Error("per-commit preview", "slug", label, "err", err)
				proxy.Unavailable(w, req, "This preview could not be started.", 30*time.Second)
				return
			}
			proxy.Unavailable(w, req, "This preview is being built; the page reloads by itself.", 5*time.Second)
		}),
	}
}

// resolveCommit finds the commit a prefix names among the watched
// branches, remembering the answer while its branch is watched: a commit's
// ID never changes, and a prefix that named none is not looked up again
// for a while.
func (r *Reconciler) resolveCommit(ctx context.Context, prefix string, seen *seenRefs) resolved {
	branches := []string{seen.production}
	for _, b := range slices.Sorted(maps.Keys(seen.refs.Branches)) {
		if b != seen.production && r.previewed(b) {
			branches = append(branches, b)
		}
	}
	r.pv.resolveMu.Lock()
	defer r.pv.resolveMu.Unlock()
	got, ok := r.pv.resolved[prefix]
	switch {
	case ok && got.commit != "" && slices.Contains(branches, got.branch):
		return got
	case ok && got.commit == "" && time.Since(got.at) < unknownFor:
		return got
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	commit, branch, err := r.project.Previews.Resolve(ctx, prefix, branches)
	if err != nil {
		r.log.Debug("per-commit preview: no such commit", "prefix", prefix, "err", err)
	}
	if len(r.pv.resolved) >= resolvedCacheSize || r.pv.resolved == nil {
		r.pv.resolved = map[string]resolved{}
	}
	got = resolved{commit: commit, branch: branch, at: time.Now()}
	r.pv.resolved[prefix] = got
	return got
}

// askForCommit records a per-commit preview in the inventory, or brings
// back an expired one, and asks for the reconcile that builds it.
func (r *Reconciler) askForCommit(slug string, found resolved) error {
	r.pv.mu.Lock()
	defer r.pv.mu.Unlock()
	inventory, err := r.store.Previews(r.project.Name)
	if err != nil {
		return err
	}
	if rec, ok := inventory[slug]; ok && !rec.Expired {
		return nil // asked for already: a reconcile is on its way
	}
	rec := store.PreviewRecord{Branch: found.branch, Commit: found.commit, Changed: time.Now(), Pinned: true}
	if err := r.store.SetPreview(r.project.Name, slug, &rec); err != nil {
		return err
	}
	r.log.Info("per-commit preview asked for", "slug", slug, "branch", found.branch, "commit", found.commit)
	r.Request(Trigger{Name: "commit preview"})
	return nil
}
