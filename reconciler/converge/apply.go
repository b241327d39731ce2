package converge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"

	"hawser.dev/hawser/reconciler/compose"
)

// asideSuffix marks an old container kept, stopped, until its replacement
// is up, so it can be restored when the replacement fails.
const asideSuffix = "_hawser_aside"

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
	// mount them.
	for _, old := range run.aside {
		c.remove(ctx, old.id, "replaced", false)
	}
	for _, sp := range plan.Services {
		for _, extra := range sp.Remove {
			c.stopAndRemove(ctx, extra.ID, "scaled down")
		}
	}
	for _, orphan := range plan.Orphans {
		c.stopAndRemove(ctx, orphan.ID, "service removed from the project")
	}
	return nil
}

// applyRun is the state of one Apply: what to undo if it fails.
type applyRun struct {
	c       *Converger
	d       *Desired
	dep     Deployment
	running map[string]string // service -> ID of its first container
	created []string          // new containers, oldest first
	aside   []asideContainer  // old containers set aside, dependants first
}

// asideContainer is an old container stopped and renamed out of the way,
// with what it takes to put it back.
type asideContainer struct {
	id, name string
	restart  container.RestartPolicy
}

func (r *applyRun) service(ctx context.Context, sp ServicePlan) error {
	want := r.d.Services[sp.Name]
	if len(sp.Replace) > 0 {
		if err := r.c.waitDependencies(ctx, r.d, want.Config); err != nil {
			return err
		}
	}
	for _, rep := range sp.Replace {
		r.c.Log.Info("recreating", "service", sp.Name, "replica", rep.Number, "reason", rep.Reason.String())
		id, err := r.create(ctx, want, rep)
		if err != nil {
			return err
		}
		if err := r.c.start(ctx, sp.Name, id, want.Config); err != nil {
			return err
		}
		if rep.Number == 1 {
			r.running[sp.Name] = id
		}
	}
	return nil
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
	aside := asideContainer{id: old.ID, name: name}
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

func (r *applyRun) create(ctx context.Context, want DesiredService, rep Replace) (string, error) {
	spec, err := compose.NewContainerSpec(r.d.Project, want.Config, rep.Number, want.Image.Ref, r.labels(want, rep.Number), r.resolve)
	if err != nil {
		return "", fmt.Errorf("service %q: %w", want.Config.Name, err)
	}
	if rep.Old != nil {
		keepAnonymousVolumes(spec.Host, *rep.Old)
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

// keepAnonymousVolumes mounts the old container's anonymous volumes into its
// replacement at the same paths, as docker compose does, so their data
// survives a recreate.
func keepAnonymousVolumes(h *container.HostConfig, old container.Summary) {
	for _, m := range old.Mounts {
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
	for i := len(r.created) - 1; i >= 0; i-- {
		r.c.remove(ctx, r.created[i], "rolled back", false)
	}
	for i := len(r.aside) - 1; i >= 0; i-- {
		a := r.aside[i]
		if err := r.c.restore(ctx, a); err != nil {
			r.c.Log.Error("restore failed", "container", a.name, "err", err)
		}
	}
}

func (c *Converger) restore(ctx context.Context, a asideContainer) error {
	if _, err := c.Docker.ContainerRename(ctx, a.id, client.ContainerRenameOptions{NewName: a.name}); err != nil && !isSameName(err) {
		return err
	}
	if err := c.setRestart(ctx, a.id, a.restart); err != nil {
		return err
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
		if isAside(ct) {
			aside = append(aside, ct)
		}
	}
	slices.SortFunc(aside, func(a, b container.Summary) int {
		return slices.Index(d.Order, a.Labels[LabelService]) - slices.Index(d.Order, b.Labels[LabelService])
	})
	var errs []error
	for _, ct := range aside {
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
		errs = append(errs, c.restore(ctx, asideContainer{id: ct.ID, name: name, restart: policy}))
	}
	return errors.Join(errs...)
}

func isAside(c container.Summary) bool {
	return strings.HasSuffix(ContainerName(c), asideSuffix)
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

// stopAndRemove removes a container that has no successor, with its
// anonymous volumes (never a named one).
func (c *Converger) stopAndRemove(ctx context.Context, id, why string) {
	if err := c.stop(ctx, id); err != nil {
		c.Log.Warn("stop failed", "container", id, "err", err)
	}
	c.remove(ctx, id, why, true)
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
