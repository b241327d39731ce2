package converge

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"

	"hawser.dev/hawser/reconciler/compose"
)

// asideSuffix marks an old container kept, stopped, until its replacement
// is up, so it can be restored when the replacement fails; nextSuffix marks
// a new container started next to the old one until the deployment is done.
const (
	asideSuffix = "_hawser_aside"
	nextSuffix  = "_hawser_next"
)

// probeTimeout bounds one HTTP health probe.
const probeTimeout = 2 * time.Second

// Traffic moves the front end's requests between the containers of a
// routed service.
type Traffic interface {
	// Switch sends the service's requests for upstream from to upstream to
	// instead, and returns once the new route serves. An empty from adds a
	// replica; an empty to takes from out of the route.
	Switch(ctx context.Context, service, from, to string) error
	// Drain waits until no request is in flight to upstream, or ctx ends.
	Drain(ctx context.Context, upstream string) error
}

// Converger applies plans to the Docker engine for one project.
type Converger struct {
	Docker Docker
	Log    *slog.Logger
	// HealthTimeout bounds the wait for a new container to become healthy,
	// and for dependencies to reach their depends_on condition.
	HealthTimeout time.Duration
	// Settle is how long a container without a healthcheck must stay up to
	// count as started; one that exits sooner failed.
	Settle time.Duration
	// Traffic, when set, lets routed services update blue-green: the new
	// container starts next to the old one and takes over once healthy.
	Traffic Traffic
	// DrainTimeout bounds the wait for requests in flight to an old
	// container before it is stopped.
	DrainTimeout time.Duration
	// UpstreamNetwork, when hawser runs in a container, is the network it
	// shares with routed containers; empty means routed containers publish
	// their port on 127.0.0.1 for hawser on the host.
	UpstreamNetwork string

	once          sync.Once
	client        *http.Client // for health probes
	probeOverride func(ctx context.Context, upstream, path string) bool
	mu            sync.Mutex
	said          map[string]bool // services whose recreate strategy was explained
}

// Fresh returns a converger with the same settings and no traffic, for
// another project: its state (the traffic it moves, what it said) is its
// own.
func (c *Converger) Fresh() *Converger {
	return &Converger{Docker: c.Docker, Log: c.Log, HealthTimeout: c.HealthTimeout, Settle: c.Settle, DrainTimeout: c.DrainTimeout, UpstreamNetwork: c.UpstreamNetwork}
}

func (c *Converger) prober() *http.Client {
	c.once.Do(func() {
		c.client = &http.Client{
			Timeout:   probeTimeout,
			Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 2, IdleConnTimeout: 30 * time.Second},
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		}
	})
	return c.client
}

// strategy says whether a service updates blue-green, explaining once in
// the log why a routed service cannot.
func (c *Converger) strategy(d *Desired, service string) (bool, Routing) {
	want := d.Services[service]
	if c.Traffic == nil || !want.Routed {
		return false, want.Routing
	}
	ok, why := blueGreen(want.Config)
	if !ok {
		c.mu.Lock()
		defer c.mu.Unlock()
		if !c.said[service] {
			if c.said == nil {
				c.said = map[string]bool{}
			}
			c.said[service] = true
			c.Log.Info("routed service uses the recreate strategy: "+why+", so two containers cannot run at once", "service", service)
		}
	}
	return ok, want.Routing
}

// Deployment identifies what is being applied, for the containers' labels.
type Deployment struct {
	ID     string
	Commit string
}

// StartError says a service's new container did not come up; the previous
// containers were restored.
type StartError struct {
	Service string
	Reason  string
	// Logs holds the last lines the failed container wrote. They stay out of
	// Error: an application's output may hold its secrets, and errors reach
	// logs and the API.
	Logs string
}

func (e *StartError) Error() string {
	return fmt.Sprintf("service %q did not start: %s", e.Service, e.Reason)
}

// Apply carries out the plan. As docker compose does, it first stops the
// containers to replace, dependants first, then creates their replacements
// in dependency order. On any failure it removes what it created, restores
// the containers it set aside and returns the error: the version that was
// running keeps running.
func (c *Converger) Apply(ctx context.Context, d *Desired, plan Plan, dep Deployment) (err error) {
	if err := c.ensureNetworks(ctx, d.Project); err != nil {
		return err
	}
	if err := c.ensureVolumes(ctx, d.Project); err != nil {
		return err
	}
	run := &applyRun{c: c, d: d, dep: dep, running: maps.Clone(plan.current)}
	defer func() {
		if err != nil {
			run.rollback()
		}
	}()
	for i := len(plan.Services) - 1; i >= 0; i-- {
		if bg, _ := c.strategy(d, plan.Services[i].Name); bg {
			continue // its old containers serve until their successors do
		}
		replace := plan.Services[i].Replace
		for j := len(replace) - 1; j >= 0; j-- {
			if old := replace[j].Old; old != nil {
				if err := run.setAside(ctx, *old); err != nil {
					return err
				}
			}
		}
	}
	for _, sp := range plan.Services {
		if err := run.service(ctx, sp); err != nil {
			return err
		}
	}
	// Everything is up: what was set aside, scaled away or orphaned goes.
	// Replaced containers keep their anonymous volumes: the replacements
	// mount them. Containers started next to their predecessors take their
	// names.
	for _, old := range run.aside {
		c.remove(ctx, old.id, "replaced", false)
	}
	for _, n := range run.next {
		if _, err := c.Docker.ContainerRename(ctx, n.id, client.ContainerRenameOptions{NewName: n.name}); err != nil {
			c.Log.Warn("rename new container", "container", n.name, "err", err)
		}
	}
	for _, sp := range plan.Services {
		for _, extra := range sp.Remove {
			c.stopAndRemove(ctx, extra, "scaled down", false)
		}
	}
	for _, orphan := range plan.Orphans {
		c.stopAndRemove(ctx, orphan, "service removed from the project", false)
	}
	return nil
}

// applyRun is the state of one Apply: what to undo if it fails.
type applyRun struct {
	c        *Converger
	d        *Desired
	dep      Deployment
	running  map[string]string // service -> ID of its first container
	created  []string          // new containers, oldest first
	aside    []asideContainer  // old containers set aside, dependants first
	next     []asideContainer  // containers started next to their predecessors, with their final names
	switches []switched        // traffic moved, oldest first
}

// asideContainer is an old container stopped and renamed out of the way,
// with what it takes to put it back.
type asideContainer struct {
	id, name string
	restart  container.RestartPolicy
	running  bool // it ran before it was set aside
}

func (r *applyRun) service(ctx context.Context, sp ServicePlan) error {
	want := r.d.Services[sp.Name]
	if len(sp.Replace) > 0 {
		if err := r.c.waitDependencies(ctx, r.d, want.Config); err != nil {
			return err
		}
	}
	bg, routing := r.c.strategy(r.d, sp.Name)
	for _, rep := range sp.Replace {
		r.c.Log.Info("recreating", "service", sp.Name, "replica", rep.Number, "reason", rep.Reason.String(), "blue-green", bg)
		var id string
		var err error
		switch {
		case bg:
			id, err = r.blueGreen(ctx, want, rep, routing)
		case want.Routed && r.c.Traffic != nil:
			// The old container is down already: route to the new one as
			// soon as it is up, not at the end of the deployment.
			if id, err = r.replace(ctx, want, rep, ""); err == nil {
				_, err = r.route(ctx, want, rep, id, routing)
			}
		default:
			id, err = r.replace(ctx, want, rep, "")
		}
		if err != nil {
			return err
		}
		if rep.Number == 1 {
			r.running[sp.Name] = id
		}
	}
	return nil
}

// replace creates and starts the new container of one replica; with a
// suffix it takes a temporary name, its old container still holding the
// real one.
func (r *applyRun) replace(ctx context.Context, want DesiredService, rep Replace, suffix string) (string, error) {
	id, err := r.create(ctx, want, rep, suffix)
	if err != nil {
		return "", err
	}
	return id, r.c.start(ctx, want.Config.Name, id, want)
}

// blueGreen starts the new container next to the old one, moves the front
// end's traffic to it once healthy, lets requests in flight on the old one
// finish, then sets the old one aside.
func (r *applyRun) blueGreen(ctx context.Context, want DesiredService, rep Replace, routing Routing) (string, error) {
	suffix := nextSuffix
	if rep.Old == nil {
		suffix = ""
	}
	id, err := r.replace(ctx, want, rep, suffix)
	if err != nil {
		return "", err
	}
	from, err := r.route(ctx, want, rep, id, routing)
	if err != nil || rep.Old == nil {
		return id, err
	}
	r.next = append(r.next, asideContainer{id: id, name: ContainerName(*rep.Old)})
	if from != "" {
		dctx, cancel := context.WithTimeout(ctx, r.c.DrainTimeout)
		if err := r.c.Traffic.Drain(dctx, from); err != nil {
			r.c.Log.Warn("requests still in flight to the old container after the drain timeout", "service", want.Config.Name, "upstream", from)
		}
		cancel()
	}
	return id, r.setAside(ctx, *rep.Old)
}

// route sends the replica's traffic to its new container, from the old
// one's upstream (at the port the old container was routed at), and
// records the switch so a rollback can undo it. It returns the old upstream.
func (r *applyRun) route(ctx context.Context, want DesiredService, rep Replace, id string, routing Routing) (string, error) {
	ct, err := r.c.inspect(ctx, id)
	if err != nil {
		return "", err
	}
	to := r.c.inspectedUpstream(ct, routing.Port)
	if to == "" {
		return "", &SpecError{Service: want.Config.Name, Msg: fmt.Sprintf("the new container publishes port %d on no loopback address for the front end", routing.Port)}
	}
	sw := switched{service: want.Config.Name, to: to, health: routing.Health}
	if rep.Old != nil {
		sw.old = rep.Old.ID
		sw.port = routedPort(*rep.Old, routing.Port)
		sw.from = r.c.Upstream(*rep.Old, sw.port)
	}
	if err := r.c.Traffic.Switch(ctx, sw.service, sw.from, to); err != nil {
		return "", fmt.Errorf("service %q: switch traffic: %w", want.Config.Name, err)
	}
	r.switches = append(r.switches, sw)
	return sw.from, nil
}

// switched is one move of a routed replica's traffic.
type switched struct {
	service  string
	from, to string // upstreams
	old      string // the old container, when there was one
	port     uint16 // the port the old container was routed at
	health   string // the path that tells the old container serves
}

// routedPort is the port an existing container was routed at: its own
// label, which a new commit may have changed.
func routedPort(c container.Summary, fallback uint16) uint16 {
	if p, err := strconv.ParseUint(c.Labels[LabelHTTPPort], 10, 16); err == nil && p > 0 {
		return uint16(p)
	}
	return fallback
}

// setAside stops an old container and renames it out of the way. Its
// restart policy is switched off meanwhile, so an engine restart does not
// bring it back next to its replacement.
func (r *applyRun) setAside(ctx context.Context, old container.Summary) error {
	name := ContainerName(old)
	res, err := r.c.Docker.ContainerInspect(ctx, old.ID, client.ContainerInspectOptions{})
	if err != nil {
		return fmt.Errorf("inspect container %s: %w", name, err)
	}
	aside := asideContainer{id: old.ID, name: name, running: old.State == container.StateRunning}
	if res.Container.HostConfig != nil {
		aside.restart = res.Container.HostConfig.RestartPolicy
	}
	if err := r.c.setRestart(ctx, old.ID, container.RestartPolicy{Name: container.RestartPolicyDisabled}); err != nil {
		return err
	}
	r.aside = append(r.aside, aside)
	if err := r.c.stop(ctx, old.ID); err != nil {
		return err
	}
	if _, err := r.c.Docker.ContainerRename(ctx, old.ID, client.ContainerRenameOptions{NewName: name + asideSuffix}); err != nil {
		return fmt.Errorf("set aside container %s: %w", name, err)
	}
	return nil
}

func (c *Converger) setRestart(ctx context.Context, id string, policy container.RestartPolicy) error {
	if _, err := c.Docker.ContainerUpdate(ctx, id, client.ContainerUpdateOptions{RestartPolicy: &policy}); err != nil {
		return fmt.Errorf("update restart policy of container %s: %w", id, err)
	}
	return nil
}

func (r *applyRun) create(ctx context.Context, want DesiredService, rep Replace, suffix string) (string, error) {
	// By ID, not tag: a tag may since have moved to an image that failed.
	spec, err := compose.NewContainerSpec(r.d.Project, want.Config, rep.Number, cmp.Or(want.Image.ID, want.Image.Ref), r.labels(want, rep.Number), r.resolve)
	if err != nil {
		return "", fmt.Errorf("service %q: %w", want.Config.Name, err)
	}
	spec.Name += suffix
	if rep.Old != nil {
		KeepAnonymousVolumes(spec.Host, rep.Old.Mounts)
	}
	if want.Routed {
		r.c.reachable(&spec, want.Routing.Port)
	}
	res, err := r.c.Docker.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name: spec.Name, Config: spec.Config, HostConfig: spec.Host, NetworkingConfig: spec.Network,
	})
	if err != nil {
		return "", fmt.Errorf("service %q: create container %s: %w", want.Config.Name, spec.Name, err)
	}
	r.created = append(r.created, res.ID)
	for _, name := range spec.ExtraOrder {
		_, err := r.c.Docker.NetworkConnect(ctx, name, client.NetworkConnectOptions{Container: res.ID, EndpointConfig: spec.Extra[name]})
		if err != nil {
			return "", fmt.Errorf("service %q: connect to network %s: %w", want.Config.Name, name, err)
		}
	}
	return res.ID, nil
}

// KeepAnonymousVolumes mounts the anonymous volumes among an old
// container's mounts into its replacement at the same paths, as docker
// compose does, so their data survives a recreate.
func KeepAnonymousVolumes(h *container.HostConfig, old []container.MountPoint) {
	for _, m := range old {
		if m.Type != mount.TypeVolume || !anonymous.MatchString(m.Name) {
			continue
		}
		i := slices.IndexFunc(h.Mounts, func(n mount.Mount) bool { return n.Target == m.Destination })
		switch {
		case i < 0:
			h.Mounts = append(h.Mounts, mount.Mount{Type: mount.TypeVolume, Source: m.Name, Target: m.Destination})
		case h.Mounts[i].Type == mount.TypeVolume && h.Mounts[i].Source == "":
			h.Mounts[i].Source = m.Name
		}
	}
}

// anonymous matches the names the engine gives volumes nobody named.
var anonymous = regexp.MustCompile(`^[0-9a-f]{64}$`)

func (r *applyRun) labels(want DesiredService, number int) map[string]string {
	p := r.d.Project
	return map[string]string{
		LabelProject:     p.Name,
		LabelService:     want.Config.Name,
		LabelNumber:      strconv.Itoa(number),
		LabelOneoff:      "False",
		LabelConfigHash:  want.Fingerprint.Hash,
		LabelConfigKeys:  want.Fingerprint.EncodeKeys(),
		LabelImage:       want.Image.ID,
		LabelImageRef:    want.Image.Ref,
		LabelWorkingDir:  p.WorkingDir,
		LabelConfigFiles: strings.Join(p.ComposeFiles, ","),
		LabelVersion:     composeVersion,
		LabelCommit:      r.dep.Commit,
		LabelDeployment:  r.dep.ID,
	}
}

// resolve finds the container of another service, for network_mode,
// volumes_from, ipc and pid references.
func (r *applyRun) resolve(service string) (string, error) {
	if id, ok := r.running[service]; ok {
		return id, nil
	}
	return "", fmt.Errorf("service %q has no container", service)
}

// rollback removes the new containers and restores the old ones,
// dependencies first. It runs after ctx may have been cancelled, so it has
// its own deadline.
func (r *applyRun) rollback() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// New containers holding their real names go first, so the old ones can
	// take the names back; those started next to an old one serve until it
	// is back.
	next := map[string]bool{}
	for _, n := range r.next {
		next[n.id] = true
	}
	r.removeCreated(ctx, func(id string) bool { return !next[id] })
	for i := len(r.aside) - 1; i >= 0; i-- {
		a := r.aside[i]
		if err := r.c.restore(ctx, a); err != nil {
			r.c.Log.Error("restore failed", "container", a.name, "err", err)
		}
	}
	for i := len(r.switches) - 1; i >= 0; i-- {
		r.switchBack(ctx, r.switches[i])
	}
	r.removeCreated(ctx, func(id string) bool { return next[id] })
}

func (r *applyRun) removeCreated(ctx context.Context, which func(id string) bool) {
	for i := len(r.created) - 1; i >= 0; i-- {
		if which(r.created[i]) {
			r.c.remove(ctx, r.created[i], "rolled back", false)
		}
	}
}

// switchBack moves a replica's traffic from its new container back to the
// old one once that serves again (its published port may have changed), or
// takes the new container out of the route when there was no old one.
func (r *applyRun) switchBack(ctx context.Context, sw switched) {
	back := ""
	if sw.old != "" {
		back = r.c.waitUpstream(ctx, sw.old, sw.port, sw.health)
	}
	if err := r.c.Traffic.Switch(ctx, sw.service, sw.to, back); err != nil {
		r.c.Log.Error("switch traffic back", "service", sw.service, "err", err)
	}
}

func (c *Converger) restore(ctx context.Context, a asideContainer) error {
	if _, err := c.Docker.ContainerRename(ctx, a.id, client.ContainerRenameOptions{NewName: a.name}); err != nil && !isSameName(err) {
		return err
	}
	if err := c.setRestart(ctx, a.id, a.restart); err != nil {
		return err
	}
	if !a.running {
		return nil
	}
	if _, err := c.Docker.ContainerStart(ctx, a.id, client.ContainerStartOptions{}); err != nil {
		return err
	}
	c.Log.Info("restored previous container", "container", a.name)
	return nil
}

// isSameName reports the engine's refusal to rename a container to the name
// it already has: the rename back is then already done.
func isSameName(err error) bool {
	return strings.Contains(err.Error(), "same name")
}

// Recover settles containers an interrupted deployment left aside: one whose
// replacement is running is removed, any other is restored, dependencies
// first.
func (c *Converger) Recover(ctx context.Context, d *Desired, actual []container.Summary) error {
	byName := map[string]container.Summary{}
	var aside []container.Summary
	for _, ct := range actual {
		byName[ContainerName(ct)] = ct
		if InTransition(ct) {
			aside = append(aside, ct)
		}
	}
	slices.SortFunc(aside, func(a, b container.Summary) int {
		return slices.Index(d.Order, a.Labels[LabelService]) - slices.Index(d.Order, b.Labels[LabelService])
	})
	var errs []error
	for _, ct := range aside {
		if name, ok := strings.CutSuffix(ContainerName(ct), nextSuffix); ok {
			errs = append(errs, c.settleNext(ctx, ct, name, byName))
			continue
		}
		name := strings.TrimSuffix(ContainerName(ct), asideSuffix)
		repl, ok := byName[name]
		if ok && repl.State == container.StateRunning {
			c.remove(ctx, ct.ID, "replaced", false)
			continue
		}
		if ok {
			c.remove(ctx, repl.ID, "failed replacement", false)
		}
		policy := container.RestartPolicy{Name: container.RestartPolicyMode(d.Services[ct.Labels[LabelService]].Config.Restart)}
		errs = append(errs, c.restore(ctx, asideContainer{id: ct.ID, name: name, restart: policy, running: true}))
	}
	return errors.Join(errs...)
}

// settleNext finishes a container started next to its predecessor: running
// with its real name free (the old one is gone or set aside), it takes the
// name; otherwise the old one still serves and it goes.
func (c *Converger) settleNext(ctx context.Context, ct container.Summary, name string, byName map[string]container.Summary) error {
	if _, taken := byName[name]; taken || ct.State != container.StateRunning {
		c.stopAndRemove(ctx, ct, "unfinished deployment", false)
		return nil
	}
	if _, err := c.Docker.ContainerRename(ctx, ct.ID, client.ContainerRenameOptions{NewName: name}); err != nil {
		return fmt.Errorf("finish container %s: %w", name, err)
	}
	byName[name] = ct
	return nil
}

// InTransition reports a container in the middle of a deployment: an old
// one set aside or a new one not yet named.
func InTransition(c container.Summary) bool {
	name := ContainerName(c)
	return strings.HasSuffix(name, asideSuffix) || strings.HasSuffix(name, nextSuffix)
}

// ContainerName is a listed container's name, without the leading slash.
func ContainerName(c container.Summary) string {
	if len(c.Names) == 0 {
		return c.ID
	}
	return strings.TrimPrefix(c.Names[0], "/")
}

func (c *Converger) stop(ctx context.Context, id string) error {
	// The container's own stop signal and grace period, set at create from
	// stop_signal and stop_grace_period, apply.
	if _, err := c.Docker.ContainerStop(ctx, id, client.ContainerStopOptions{}); err != nil {
		return fmt.Errorf("stop container %s: %w", id, err)
	}
	return nil
}

// stopAndRemove removes a container that has no successor. Its anonymous
// volumes are state, kept as docker compose keeps them, unless the whole
// project goes (dropVolumes); a volume a replacement took over is mounted by
// name and outlives the engine's own -v, so those go by name.
func (c *Converger) stopAndRemove(ctx context.Context, ct container.Summary, why string, dropVolumes bool) {
	if err := c.stop(ctx, ct.ID); err != nil {
		c.Log.Warn("stop failed", "container", ct.ID, "err", err)
	}
	c.remove(ctx, ct.ID, why, dropVolumes)
	if !dropVolumes {
		return
	}
	for _, m := range ct.Mounts {
		if m.Type != mount.TypeVolume || !anonymous.MatchString(m.Name) {
			continue
		}
		if _, err := c.Docker.VolumeRemove(ctx, m.Name, client.VolumeRemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
			c.Log.Warn("remove anonymous volume", "volume", m.Name, "err", err)
		}
	}
}

// remove deletes a container, and its anonymous volumes when asked; named
// volumes are state and are never removed. A failure is logged: the
// container is garbage now, and the next plan sees it again.
func (c *Converger) remove(ctx context.Context, id, why string, anonymousVolumes bool) {
	opts := client.ContainerRemoveOptions{Force: true, RemoveVolumes: anonymousVolumes}
	if _, err := c.Docker.ContainerRemove(ctx, id, opts); err != nil {
		c.Log.Warn("remove failed", "container", id, "err", err)
		return
	}
	c.Log.Info("container removed", "container", id[:min(12, len(id))], "why", why)
}

// StartStopped starts the project's stopped containers in dependency order,
// each waited on until up (healthy, or answering its HTTP probe), without
// the settle time of a new version: how a sleeping preview wakes.
func (c *Converger) StartStopped(ctx context.Context, d *Desired, actual []container.Summary) error {
	for _, name := range d.Order {
		for _, ct := range actual {
			if ct.Labels[LabelService] != name || ct.State == container.StateRunning || InTransition(ct) {
				continue
			}
			if err := c.startPaced(ctx, name, ct.ID, d.Services[name], 0, wakePoll); err != nil {
				return err
			}
		}
	}
	return nil
}

// StopAll stops the project's running containers, dependants first, and
// keeps them: how a preview goes to sleep.
func (c *Converger) StopAll(ctx context.Context, d *Desired, actual []container.Summary) error {
	var errs []error
	for i := len(d.Order) - 1; i >= 0; i-- {
		for _, ct := range actual {
			if ct.Labels[LabelService] == d.Order[i] && ct.State == container.StateRunning {
				errs = append(errs, c.stop(ctx, ct.ID))
			}
		}
	}
	return errors.Join(errs...)
}
