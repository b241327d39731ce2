package reconciler

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

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
	// Resolve finds the commit of one of branches whose ID starts with
	// prefix, for per-commit previews; nil turns those off.
	Resolve func(ctx context.Context, prefix string, heads source.Refs) (commit, branch string, err error)
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
	failed            atomic.Bool  // its last update failed
}

// previewSet is the previews of one reconciler. A pass decides under mu
// what each preview needs and gives that work to a goroutine of the
// preview's own: a long build of one preview holds up neither production
// nor another preview, and production's builds go first in the queue.
type previewSet struct {
	// seen is what production's last ls-remote saw; passes and the
	// previews' own reconciles read it, so a tick asks the remote once.
	seen atomic.Pointer[seenRefs]
	// jobs counts the work in progress, for Run's shutdown.
	jobs sync.WaitGroup

	mu     sync.Mutex
	states map[string]*previewState // by slug
	busy   map[string]bool          // slugs with work in progress
	off    bool                     // previews are off and none is left to tear down

	resolveMu sync.Mutex
	known     map[string]resolved  // by commit prefix, for per-commit previews
	unknown   map[string]time.Time // prefixes that named no commit, and when
	asks      *rate.Limiter        // new per-commit previews, under mu
}

// seenRefs are the refs of one ls-remote and the production branch in them.
type seenRefs struct {
	refs       source.Refs
	production string
}

// presetRefs answers ls-remote with the refs the owning reconciler got this
// tick.
type presetRefs struct {
	Source
	seen *atomic.Pointer[seenRefs]
}

func (p presetRefs) LsRemote(context.Context) (source.Refs, error) { return p.seen.Load().refs, nil }

// pinnedRefs holds a per-commit preview at its commit: its branch always
// points there.
type pinnedRefs struct {
	Source
	branch, commit string
}

func (p pinnedRefs) LsRemote(context.Context) (source.Refs, error) {
	return source.Refs{Default: p.branch, Branches: map[string]string{p.branch: p.commit}}, nil
}

// previewPass is the work one pass started; wait ends with it.
type previewPass struct {
	wg   sync.WaitGroup
	mu   sync.Mutex
	errs []error
}

func (p *previewPass) fail(err error) {
	if err == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.errs = append(p.errs, err)
}

func (p *previewPass) wait() error {
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	return errors.Join(p.errs...)
}

// startPreviews gives every matching branch its preview, updated to its
// head, keeps the per-commit previews asked for, and tears down the
// previews of branches that are gone. The store keeps the inventory, so a
// restart still tears down what it no longer sees. Each job runs with
// timeout (none when zero) under ctx.
func (r *Reconciler) startPreviews(ctx context.Context, timeout time.Duration) *previewPass {
	pass := &previewPass{}
	seen := r.pv.seen.Load()
	if seen == nil {
		return pass
	}
	r.pv.mu.Lock()
	defer r.pv.mu.Unlock()
	if len(r.project.Previews.Branches) == 0 && len(r.pv.states) == 0 && r.pv.off {
		return pass
	}
	inventory, err := r.store.Previews(r.project.Name)
	if err != nil {
		pass.fail(err)
		return pass
	}
	job := func(slug string, work func(context.Context) error) {
		r.launch(ctx, timeout, pass, slug, work)
	}
	want := r.wantedPreviews(seen, inventory)
	awake := map[string]*previewState{}
	known := map[string]bool{}
	for _, slug := range slices.Sorted(maps.Keys(want)) {
		st, isKnown, err := r.keepPreview(slug, want[slug], inventory[slug], job)
		pass.fail(err)
		if st != nil && !st.nap.sleeping() {
			awake[slug], known[slug] = st, isKnown
		}
	}
	for _, slug := range slices.Sorted(maps.Keys(inventory)) {
		if _, ok := want[slug]; !ok {
			job(slug, func(ctx context.Context) error { return r.destroyPreview(ctx, slug, nil) })
		}
	}
	tired := r.overCap(awake)
	for _, slug := range slices.Sorted(maps.Keys(awake)) {
		st, isKnown := awake[slug], known[slug]
		if tired[slug] {
			job(slug, func(ctx context.Context) error { return r.sleepPreview(ctx, st) })
		} else {
			job(slug, func(ctx context.Context) error { return r.updatePreview(ctx, st, isKnown) })
		}
	}
	r.snapshotPreviews()
	// With previews off and none left, later ticks skip the store.
	r.pv.off = len(r.project.Previews.Branches) == 0 && len(inventory) == 0
	return pass
}

// launch runs one preview's work in a goroutine of its own, unless work of
// that preview still runs: the next pass looks at it again.
func (r *Reconciler) launch(ctx context.Context, timeout time.Duration, pass *previewPass, slug string, work func(context.Context) error) {
	if r.pv.busy[slug] {
		return
	}
	if r.pv.busy == nil {
		r.pv.busy = map[string]bool{}
	}
	r.pv.busy[slug] = true
	pass.wg.Add(1)
	r.pv.jobs.Add(1)
	go func() {
		defer r.pv.jobs.Done()
		defer pass.wg.Done()
		if timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, timeout)
			defer cancel()
		}
		err := work(ctx)
		r.pv.mu.Lock()
		delete(r.pv.busy, slug)
		r.pv.mu.Unlock()
		pass.fail(err)
	}()
}

// wantedPreviews are the previews that should exist, by slug: one per
// matching branch at its head, and the per-commit previews asked for whose
// branch is still watched.
func (r *Reconciler) wantedPreviews(seen *seenRefs, inventory map[string]store.PreviewRecord) map[string]store.PreviewRecord {
	want := map[string]store.PreviewRecord{}
	if len(r.project.Previews.Branches) == 0 {
		return want
	}
	for branch, head := range seen.refs.Branches {
		if branch != seen.production && r.previewed(branch) {
			want[preview.Slug(branch)] = store.PreviewRecord{Branch: branch, Commit: head}
		}
	}
	pinned := map[string]store.PreviewRecord{}
	for slug, rec := range inventory {
		if _, ok := seen.refs.Branches[rec.Branch]; ok && rec.Pinned && (rec.Branch == seen.production || r.previewed(rec.Branch)) {
			pinned[slug] = rec
		}
	}
	for _, slug := range newestCommitPreviews(pinned) {
		want[slug] = pinned[slug]
	}
	return want
}

// keepPreview records a wanted preview's head and returns its state,
// unless its branch saw no push for the TTL: then it is torn down and
// stays so until the next push. A per-commit preview's TTL runs from when
// it was first asked for.
func (r *Reconciler) keepPreview(slug string, want, rec store.PreviewRecord, job func(string, func(context.Context) error)) (*previewState, bool, error) {
	if !want.Pinned && (rec.Commit != want.Commit || rec.Branch != want.Branch) {
		// A push: the TTL starts again; a sleeping preview sleeps on.
		rec = store.PreviewRecord{Branch: want.Branch, Commit: want.Commit, Changed: time.Now(), Asleep: rec.Asleep, Hosts: rec.Hosts}
		if err := r.store.SetPreview(r.project.Name, slug, &rec); err != nil {
			return nil, false, err
		}
	}
	if ttl := r.project.Previews.TTL; ttl > 0 && time.Since(rec.Changed) > ttl {
		if !rec.Expired {
			rec.Expired = true
			r.log.Info("preview expired: no push within the TTL", "branch", rec.Branch, "ttl", ttl)
			job(slug, func(ctx context.Context) error { return r.destroyPreview(ctx, slug, &rec) })
		}
		return nil, false, nil
	}
	return r.preview(slug, rec)
}

// overCap picks the least recently used of the awake previews that must
// sleep so that at most MaxRunning stay awake.
func (r *Reconciler) overCap(awake map[string]*previewState) map[string]bool {
	limit := r.project.Previews.MaxRunning
	if limit <= 0 || r.router == nil || len(awake) <= limit {
		return nil
	}
	byUse := slices.Collect(maps.Values(awake))
	slices.SortFunc(byUse, func(a, b *previewState) int { return cmp.Compare(a.nap.lastSeen.Load(), b.nap.lastSeen.Load()) })
	tired := map[string]bool{}
	for _, st := range byUse[:len(byUse)-limit] {
		tired[st.slug] = true
	}
	return tired
}

// Watches reports whether a push to branch concerns this project: it is
// the watched branch (the remote's default one, for a project that names
// none, once a poll has seen it) or one that gets a preview.
func (r *Reconciler) Watches(branch string) bool {
	production := r.project.Branch
	if seen := r.pv.seen.Load(); production == "" && seen != nil {
		production = seen.production
	}
	return branch == production || r.previewed(branch)
}

func (r *Reconciler) previewed(branch string) bool {
	for _, glob := range r.project.Previews.Branches {
		if ok, _ := path.Match(glob, branch); ok {
			return true
		}
	}
	return false
}

// updatePreview keeps an awake preview at its branch's head (or its
// commit) and puts it to sleep when idle.
func (r *Reconciler) updatePreview(ctx context.Context, st *previewState, known bool) error {
	err := st.rec.Reconcile(ctx, TriggerSchedule)
	st.failed.Store(err != nil)
	st.rec.run.Lock()
	deployed := st.rec.applied.desired != nil
	st.commit.Store(st.rec.applied.commit)
	st.rec.run.Unlock()
	if err != nil {
		if !deployed {
			r.placeholder(st, "This preview failed to build or start; `hawser history` on the host says why. It is tried again at the next push.")
		}
		return fmt.Errorf("preview of %q: %w", st.branch, err)
	}
	if !known {
		// A preview asleep when hawser stopped without recording it has
		// stopped containers that no plan restarts: start them, and let it
		// fall asleep again when idle.
		if err := st.rec.wakeUp(ctx); err != nil {
			return fmt.Errorf("preview of %q: %w", st.branch, err)
		}
	}
	if idle := r.project.Previews.Idle; idle > 0 && r.router != nil && st.nap.idle() > idle {
		return r.sleepPreview(ctx, st)
	}
	return nil
}

// preview returns the preview of a slug, making its reconciler the first
// time: a placeholder page while it builds, or, for one asleep since
// before a restart, its wake handler.
func (r *Reconciler) preview(slug string, rec store.PreviewRecord) (*previewState, bool, error) {
	if st, ok := r.pv.states[slug]; ok {
		return st, true, nil
	}
	name := preview.ProjectName(r.project.Name, slug)
	src, remove, err := r.project.Previews.NewSource(name)
	if err != nil {
		return nil, false, err
	}
	var git Source = presetRefs{Source: src, seen: &r.pv.seen}
	if rec.Pinned {
		git = pinnedRefs{Source: src, branch: rec.Branch, commit: rec.Commit}
	}
	pv := r.project.Previews
	p := Project{
		Name: name, Branch: rec.Branch, Touch: func() {}, Auth: pv.Auth, Path: r.project.Path, ComposeFiles: r.project.ComposeFiles,
		Profiles: r.project.Profiles, KeepCheckouts: 2, PruneImages: true,
		Hosts: Hosts{Domain: pv.Domain, Primary: r.project.Hosts.Primary, Slug: slug},
		Env:   r.previewEnv,
		Transform: func(proj *types.Project, root string) error {
			return preview.Isolate(proj, slug, root, pv.Limits)
		},
	}
	st := &previewState{branch: rec.Branch, slug: slug, remove: remove, rec: New(p, Deps{
		Source: git, Images: cmp.Or[Images](pv.Images, r.images), Router: r.previewRouter(),
		Converger: r.converger.Fresh(), Store: r.store, Log: r.log.With("preview", slug),
		// A preview's reconciles are not production's: its series stay out
		// of the daemon's registry.
		Metrics: NewMetrics(prometheus.NewRegistry(), ""),
	})}
	st.rec.project.Touch = st.nap.touch
	st.nap.touch()
	st.url = cmp.Or(pv.Scheme, "http") + "://" + preview.Host(slug, pv.Domain) + "/"
	st.commit.Store("")
	if rec.Asleep && len(rec.Hosts) > 0 && r.router != nil {
		st.nap.asleep = true
		if err := st.rec.router.Set(name, r.wakeRoutes(st, rec.Hosts)); err != nil {
			return nil, false, err
		}
		r.log.Info("preview asleep since before the restart", "branch", rec.Branch, "slug", slug)
	} else {
		r.placeholder(st, "This preview is being built; the page reloads by itself.")
	}
	if r.pv.states == nil {
		r.pv.states = map[string]*previewState{}
	}
	r.pv.states[slug] = st
	r.log.Info("preview created", "branch", rec.Branch, "slug", slug, "project", name)
	return st, false, nil
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
	r.pv.mu.Lock()
	st, ok := r.pv.states[slug]
	r.pv.mu.Unlock()
	remove := func() error {
		_, remove, err := r.project.Previews.NewSource(name)
		if err != nil {
			return err
		}
		return remove()
	}
	if ok {
		// A wake of it in progress ends first, and none starts it again.
		st.rec.run.Lock()
		defer st.rec.run.Unlock()
		st.rec.retired = true
		remove = st.remove
	}
	if r.router != nil {
		if err := r.previewRouter().Set(name, nil); err != nil {
			return err
		}
	}
	if err := r.converger.Down(ctx, name); err != nil {
		return fmt.Errorf("tear down preview %s: %w", slug, err)
	}
	if err := remove(); err != nil {
		return fmt.Errorf("remove checkouts of preview %s: %w", slug, err)
	}
	// The records first and the state last, under the pass's lock: a pass
	// sees the preview either whole or gone.
	r.pv.mu.Lock()
	defer r.pv.mu.Unlock()
	if err := r.store.DeleteProject(name); err != nil {
		return err
	}
	if err := r.store.SetPreview(r.project.Name, slug, keep); err != nil {
		return err
	}
	delete(r.pv.states, slug)
	r.snapshotPreviews()
	r.log.Info("preview destroyed", "slug", slug, "project", name)
	return nil
}

// PreviewStatus is what `hawser previews` shows of one preview.
type PreviewStatus struct {
	Branch      string    `json:"branch"`
	Slug        string    `json:"slug"`
	URL         string    `json:"url"`
	Commit      string    `json:"commit"`
	State       string    `json:"state"`
	LastRequest time.Time `json:"last_request"`
	// VolumeBytes is the size of its volumes, filled in by Previews.
	VolumeBytes int64 `json:"volume_bytes"`
}

// snapshotPreviews publishes the previews for Status and sets
// hawser_previews; passes own the previews, Status only reads this. The
// caller holds r.pv.mu.
func (r *Reconciler) snapshotPreviews() {
	r.countPreviews()
	list := make([]*previewState, 0, len(r.pv.states))
	for _, slug := range slices.Sorted(maps.Keys(r.pv.states)) {
		list = append(list, r.pv.states[slug])
	}
	r.setStatus(func(s *Status) { s.previews = list })
}

func (st *previewState) status() PreviewStatus {
	return PreviewStatus{
		Branch: st.branch, Slug: st.slug, URL: st.url, Commit: st.commit.Load().(string),
		State: st.state(), LastRequest: time.Unix(0, st.nap.lastSeen.Load()),
	}
}

// state is the preview's hawser_previews label: sleeping, failed (its last
// build or start failed) or running.
func (st *previewState) state() string {
	switch {
	case st.nap.sleeping():
		return previewSleeping
	case st.failed.Load():
		return previewFailed
	}
	return previewRunning
}

// countPreviews sets hawser_previews from the previews this process runs.
func (r *Reconciler) countPreviews() {
	counts := map[string]float64{previewRunning: 0, previewSleeping: 0, previewFailed: 0}
	for _, st := range r.pv.states {
		counts[st.state()]++
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
