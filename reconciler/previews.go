package reconciler

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"sync/atomic"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/prometheus/client_golang/prometheus"

	"hawser.dev/hawser/proxy"
	"hawser.dev/hawser/reconciler/preview"
	"hawser.dev/hawser/reconciler/source"
	"hawser.dev/hawser/reconciler/store"
)

// Previews says which branches get a preview: an isolated copy of the
// project, built from the branch, at its own host.
type Previews struct {
	// Branches are globs (path.Match) of branch names; none turns previews
	// off.
	Branches []string
	// Domain is the domain preview hosts are under.
	Domain string
	// Inherit lists the host .env keys (or globs) passed to previews; no
	// other production value reaches a branch's code.
	Inherit []string
	// Overlay returns the host's .env.preview values, set on top.
	Overlay func() (map[string]string, error)
	// Limits cap each preview service's CPU and memory.
	Limits preview.Limits
	// Idle is how long a preview may go without a request before it is put
	// to sleep; zero keeps previews awake.
	Idle time.Duration
	// WakeTimeout bounds how long a request to a sleeping preview is held
	// while it starts.
	WakeTimeout time.Duration
	// TTL tears down a preview whose branch saw no push for this long; a
	// new push brings it back. Zero keeps previews as long as their branch.
	TTL time.Duration
	// MaxRunning caps the previews awake at once: past it, the least
	// recently used sleep. Zero means no cap.
	MaxRunning int
	// Scheme is how previews are reached, http or https, for their URLs.
	Scheme string
	// Auth, when set, asks for these credentials on every preview host.
	Auth *proxy.BasicAuth
	// Images builds and pulls for previews, after production in the build
	// queue; nil shares production's.
	Images Images
	// NewSource makes the git source of one preview, in directories of its
	// own named after its compose project; remove deletes them.
	NewSource func(project string) (src Source, remove func() error, err error)
}

// previewState is one preview this reconciler owns.
type previewState struct {
	branch, slug, url string
	rec               *Reconciler
	remove            func() error
	nap               nap
	commit            atomic.Value // string: the commit it runs
}

// presetRefs answers ls-remote with the refs the owning reconciler got this
// tick: a tick asks the remote once, previews included.
type presetRefs struct {
	Source
	refs *source.Refs
}

func (p presetRefs) LsRemote(context.Context) (source.Refs, error) { return *p.refs, nil }

// reconcilePreviews gives every matching branch its preview, updated to its
// head, and tears down the previews of branches that are gone. The store
// keeps the inventory, so a restart still tears down what it no longer
// sees.
func (r *Reconciler) reconcilePreviews(ctx context.Context, refs source.Refs, production string) error {
	if len(r.project.Previews.Branches) == 0 && len(r.previewStates) == 0 && r.previewsOff {
		return nil
	}
	want := map[string]string{}
	for branch := range refs.Branches {
		if branch != production && r.previewed(branch) {
			want[preview.Slug(branch)] = branch
		}
	}
	inventory, err := r.store.Previews(r.project.Name)
	if err != nil {
		return err
	}
	var errs []error
	for _, slug := range slices.Sorted(maps.Keys(want)) {
		errs = append(errs, r.keepPreview(ctx, slug, want[slug], refs.Branches[want[slug]], inventory[slug]))
	}
	for _, slug := range slices.Sorted(maps.Keys(inventory)) {
		if _, ok := want[slug]; !ok {
			errs = append(errs, r.destroyPreview(ctx, slug, nil))
		}
	}
	errs = append(errs, r.capRunning(ctx))
	r.snapshotPreviews()
	// With previews off and none left, later ticks skip the store.
	r.previewsOff = len(r.project.Previews.Branches) == 0 && len(inventory) == 0
	return errors.Join(errs...)
}

// keepPreview updates one wanted preview, unless its branch saw no push
// for the TTL: then it is torn down and stays so until the next push.
func (r *Reconciler) keepPreview(ctx context.Context, slug, branch, head string, rec store.PreviewRecord) error {
	if rec.Commit != head || rec.Branch != branch {
		rec = store.PreviewRecord{Branch: branch, Commit: head, Changed: time.Now()}
		if err := r.store.SetPreview(r.project.Name, slug, &rec); err != nil {
			return err
		}
	}
	if ttl := r.project.Previews.TTL; ttl > 0 && time.Since(rec.Changed) > ttl {
		if rec.Expired {
			return nil
		}
		rec.Expired = true
		r.log.Info("preview expired: no push within the TTL", "branch", branch, "ttl", ttl)
		return r.destroyPreview(ctx, slug, &rec)
	}
	return r.updatePreview(ctx, slug, branch)
}

// capRunning puts the least recently used previews to sleep while more
// than MaxRunning are awake.
func (r *Reconciler) capRunning(ctx context.Context) error {
	limit := r.project.Previews.MaxRunning
	if limit <= 0 || r.router == nil {
		return nil
	}
	var awake []*previewState
	for _, st := range r.previewStates {
		if !st.nap.sleeping() {
			awake = append(awake, st)
		}
	}
	slices.SortFunc(awake, func(a, b *previewState) int { return int(a.nap.lastSeen.Load() - b.nap.lastSeen.Load()) })
	var errs []error
	for i := 0; len(awake)-i > limit; i++ {
		errs = append(errs, r.sleepPreview(ctx, awake[i]))
	}
	return errors.Join(errs...)
}

func (r *Reconciler) previewed(branch string) bool {
	for _, glob := range r.project.Previews.Branches {
		if ok, _ := path.Match(glob, branch); ok {
			return true
		}
	}
	return false
}

// updatePreview keeps an awake preview at its branch's head and puts it to
// sleep when idle; a sleeping one is left alone until a request wakes it
// (the wake deploys a newer head).
func (r *Reconciler) updatePreview(ctx context.Context, slug, branch string) error {
	_, known := r.previewStates[slug]
	st, err := r.preview(slug, branch)
	if err != nil || st.nap.sleeping() {
		return err
	}
	err = st.rec.Reconcile(ctx, TriggerSchedule)
	st.commit.Store(st.rec.applied.commit)
	if err != nil {
		if st.rec.applied.desired == nil {
			r.placeholder(st, "This preview failed to build or start; `hawser history` on the host says why. It is tried again at the next push.")
		}
		return fmt.Errorf("preview of %q: %w", branch, err)
	}
	if !known {
		// After a restart, a preview that was asleep has stopped containers
		// that no plan restarts: wake it, and let it fall asleep again.
		if err := st.rec.wakeUp(ctx); err != nil {
			return fmt.Errorf("preview of %q: %w", branch, err)
		}
	}
	if idle := r.project.Previews.Idle; idle > 0 && r.router != nil && st.nap.idle() > idle {
		return r.sleepPreview(ctx, st)
	}
	return nil
}

// preview returns the preview of a branch, making its reconciler the
// first time.
func (r *Reconciler) preview(slug, branch string) (*previewState, error) {
	if st, ok := r.previewStates[slug]; ok {
		return st, nil
	}
	name := preview.ProjectName(r.project.Name, slug)
	src, remove, err := r.project.Previews.NewSource(name)
	if err != nil {
		return nil, err
	}
	pv := r.project.Previews
	p := Project{
		Name: name, Branch: branch, Touch: func() {}, Auth: pv.Auth, Path: r.project.Path, ComposeFiles: r.project.ComposeFiles,
		Profiles: r.project.Profiles, KeepCheckouts: 2, PruneImages: true,
		Hosts: Hosts{Domain: pv.Domain, Primary: r.project.Hosts.Primary, Slug: slug},
		Env:   r.previewEnv,
		Transform: func(proj *types.Project, root string) error {
			return preview.Isolate(proj, slug, root, pv.Limits)
		},
	}
	st := &previewState{branch: branch, slug: slug, remove: remove, rec: New(p, Deps{
		Source: presetRefs{Source: src, refs: &r.refs}, Images: cmp.Or[Images](pv.Images, r.images), Router: r.previewRouter(),
		Converger: r.converger.Fresh(), Store: r.store, Log: r.log.With("preview", slug),
		// A preview's reconciles are not production's: its series stay out
		// of the daemon's registry.
		Metrics: NewMetrics(prometheus.NewRegistry(), ""),
	})}
	st.rec.project.Touch = st.nap.touch
	st.nap.touch()
	r.placeholder(st, "This preview is being built; the page reloads by itself.")
	st.url = cmp.Or(pv.Scheme, "http") + "://" + preview.Host(slug, pv.Domain) + "/"
	st.commit.Store("")
	if r.previewStates == nil {
		r.previewStates = map[string]*previewState{}
	}
	r.previewStates[slug] = st
	r.log.Info("preview created", "branch", branch, "slug", slug, "project", name)
	return st, nil
}

// previewEnv is a preview's configuration: only the inherited host keys,
// then the host's .env.preview.
func (r *Reconciler) previewEnv() (map[string]string, error) {
	host, err := r.project.Env()
	if err != nil {
		return nil, err
	}
	overlay := map[string]string{}
	if r.project.Previews.Overlay != nil {
		if overlay, err = r.project.Previews.Overlay(); err != nil {
			return nil, err
		}
	}
	return preview.Env(host, r.project.Previews.Inherit, overlay), nil
}

// destroyPreview removes everything of a preview: containers, networks, its
// volumes, its images, its routes and checkouts. What fails stays in the
// inventory and is tried again at the next tick; keep, when set, is the
// record that stays after it (an expired preview's).
func (r *Reconciler) destroyPreview(ctx context.Context, slug string, keep *store.PreviewRecord) error {
	name := preview.ProjectName(r.project.Name, slug)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if r.router != nil {
		if err := r.previewRouter().Set(name, nil); err != nil {
			return err
		}
	}
	if err := r.converger.Down(ctx, name); err != nil {
		return fmt.Errorf("tear down preview %s: %w", slug, err)
	}
	remove := func() error {
		_, remove, err := r.project.Previews.NewSource(name)
		if err != nil {
			return err
		}
		return remove()
	}
	if st, ok := r.previewStates[slug]; ok {
		remove = st.remove
	}
	if err := remove(); err != nil {
		return fmt.Errorf("remove checkouts of preview %s: %w", slug, err)
	}
	delete(r.previewStates, slug)
	if err := r.store.DeleteProject(name); err != nil {
		return err
	}
	r.log.Info("preview destroyed", "slug", slug, "project", name)
	return r.store.SetPreview(r.project.Name, slug, keep)
}

// PreviewStatus is what `hawser previews` shows of one preview.
type PreviewStatus struct {
	Branch      string    `json:"branch"`
	Slug        string    `json:"slug"`
	URL         string    `json:"url"`
	Commit      string    `json:"commit"`
	State       string    `json:"state"`
	LastRequest time.Time `json:"last_request"`
}

// snapshotPreviews publishes the previews for Status and sets
// hawser_previews; reconciles own the previews, Status only reads this.
func (r *Reconciler) snapshotPreviews() {
	r.countPreviews()
	list := make([]*previewState, 0, len(r.previewStates))
	for _, slug := range slices.Sorted(maps.Keys(r.previewStates)) {
		list = append(list, r.previewStates[slug])
	}
	r.setStatus(func(s *Status) { s.previews = list })
}

func (st *previewState) status() PreviewStatus {
	state := previewRunning
	if st.nap.sleeping() {
		state = previewSleeping
	}
	return PreviewStatus{
		Branch: st.branch, Slug: st.slug, URL: st.url, Commit: st.commit.Load().(string),
		State: state, LastRequest: time.Unix(0, st.nap.lastSeen.Load()),
	}
}

// countPreviews sets hawser_previews from the previews this process runs.
func (r *Reconciler) countPreviews() {
	counts := map[string]float64{previewRunning: 0, previewSleeping: 0}
	for _, st := range r.previewStates {
		if st.nap.sleeping() {
			counts[previewSleeping]++
		} else {
			counts[previewRunning]++
		}
	}
	for state, n := range counts {
		r.metrics.previews.WithLabelValues(state).Set(n)
	}
}

// placeholder answers the preview's host while it has nothing to serve:
// while its first build runs, or after it failed. It never hangs.
func (r *Reconciler) placeholder(st *previewState, msg string) {
	if r.router == nil {
		return
	}
	route := proxy.Route{
		Host: preview.Host(st.slug, r.project.Previews.Domain), Service: "preview",
		Unavailable: msg, RetryAfter: 5 * time.Second, Touch: st.nap.touch, Auth: r.project.Previews.Auth,
	}
	if err := r.previewRouter().Set(st.rec.project.Name, []proxy.Route{route}); err != nil {
		r.log.Warn("preview placeholder", "branch", st.branch, "err", err)
	}
}

// previewRouter is the router previews install their routes through; nil
// without a front end.
func (r *Reconciler) previewRouter() Router {
	if r.router == nil {
		return nil
	}
	return secondary{r.router}
}
