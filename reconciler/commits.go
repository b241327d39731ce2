package reconciler

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"hawser.dev/hawser/proxy"
	"hawser.dev/hawser/reconciler/preview"
	"hawser.dev/hawser/reconciler/source"
	"hawser.dev/hawser/reconciler/store"
)

// Per-commit previews: c-<commit12>.<preview domain> serves any of the
// source.RecentCommits newest commits of a watched branch (production's or
// a previewed one). The first request
// records it in the preview inventory and asks for a reconcile, which
// builds and starts it like a branch preview; from then on it has routes of
// its own, sleeps when idle, and is torn down with its branch or after the
// TTL from that first request.

// resolvedCacheSize bounds each of the remembered answers, known and
// unknown; past it that memory starts afresh, so made-up hosts cannot grow
// it, nor push out the commits that exist.
const resolvedCacheSize = 1024

// unknownFor is how long a prefix that named no commit stays unknown
// before the history is looked through again.
const unknownFor = time.Minute

// Per-commit previews can be asked for by anyone who reaches the front
// end, so they are bounded: at most maxCommitPreviews exist (the newest
// asked for; older ones are torn down), and new ones are accepted at
// commitAskRate, commitAskBurst at once.
const (
	maxCommitPreviews = 10
	commitAskBurst    = 3
	commitAskRate     = rate.Limit(1.0 / 20) // one per 20 s
)

// errTooManyAsks refuses a new per-commit preview beyond the rate.
var errTooManyAsks = errors.New("too many per-commit previews asked for")

// resolved is what one prefix named.
type resolved struct {
	commit, branch string
}

// CommitPreview is the front end's answer for a host without a route: for
// c-<commit12>.<preview domain> naming a recent commit of a watched branch,
// a route whose handler starts that commit's preview; nil for anything
// else. Its signature is proxy.OnDemand's.
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
	found, ok := r.resolveCommit(ctx, label[len("c-"):], seen)
	if !ok {
		return nil
	}
	return &proxy.Route{
		Host: host, Service: "preview", Auth: pv.Auth,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			switch err := r.askForCommit(label, found); {
			case errors.Is(err, errTooManyAsks):
				proxy.Unavailable(w, req, "Too many previews were asked for just now; try again in a minute.", time.Minute)
			case err != nil:
				r.log.Error("per-commit preview", "slug", label, "err", err)
				proxy.Unavailable(w, req, "This preview could not be started.", 30*time.Second)
			default:
				proxy.Unavailable(w, req, "This preview is being built; the page reloads by itself.", 5*time.Second)
			}
		}),
	}
}

// resolveCommit finds the commit a prefix names among the recent commits
// of the watched branches, remembering the answer while its branch is
// watched: a commit's ID never changes. A prefix that named none is not
// looked up again for a while.
func (r *Reconciler) resolveCommit(ctx context.Context, prefix string, seen *seenRefs) (resolved, bool) {
	heads := source.Refs{Default: seen.production, Branches: map[string]string{}}
	for b, head := range seen.refs.Branches {
		if b == seen.production || r.previewed(b) {
			heads.Branches[b] = head
		}
	}
	r.pv.resolveMu.Lock()
	got, known := r.pv.known[prefix]
	missed, unknown := r.pv.unknown[prefix]
	r.pv.resolveMu.Unlock()
	switch {
	case known && heads.Branches[got.branch] != "":
		return got, true
	case unknown && time.Since(missed) < unknownFor:
		return resolved{}, false
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	commit, branch, err := r.project.Previews.Resolve(ctx, prefix, heads)
	r.pv.resolveMu.Lock()
	defer r.pv.resolveMu.Unlock()
	switch {
	case err == nil:
		r.pv.known = remember(r.pv.known, prefix, resolved{commit: commit, branch: branch})
		return resolved{commit: commit, branch: branch}, true
	case errors.Is(err, source.ErrNoSuchCommit):
		r.pv.unknown = remember(r.pv.unknown, prefix, time.Now())
	default:
		r.log.Warn("per-commit preview: cannot look through the history", "prefix", prefix, "err", err)
	}
	return resolved{}, false
}

// remember adds an entry to a bounded memory, starting it afresh when full.
func remember[V any](m map[string]V, k string, v V) map[string]V {
	if m == nil || len(m) >= resolvedCacheSize {
		m = map[string]V{}
	}
	m[k] = v
	return m
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
	if r.pv.asks == nil {
		r.pv.asks = rate.NewLimiter(commitAskRate, commitAskBurst)
	}
	if !r.pv.asks.Allow() {
		return errTooManyAsks
	}
	rec := store.PreviewRecord{Branch: found.branch, Commit: found.commit, Changed: time.Now(), Pinned: true}
	if err := r.store.SetPreview(r.project.Name, slug, &rec); err != nil {
		return err
	}
	r.log.Info("per-commit preview asked for", "slug", slug, "branch", found.branch, "commit", found.commit)
	r.Request(Trigger{Name: "commit preview"})
	return nil
}

// newestCommitPreviews keeps, of the per-commit previews of the inventory
// whose branch is still watched, the maxCommitPreviews asked for last.
func newestCommitPreviews(pinned map[string]store.PreviewRecord) []string {
	slugs := slices.Collect(maps.Keys(pinned))
	slices.SortFunc(slugs, func(a, b string) int { return pinned[b].Changed.Compare(pinned[a].Changed) })
	return slugs[:min(len(slugs), maxCommitPreviews)]
}
