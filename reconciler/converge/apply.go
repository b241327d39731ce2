package converge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
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
	// Logs holds the last lines the failed container wrote.
	Logs string
}

func (e *StartError) Error() string {
	msg := fmt.Sprintf("service %q did not start: %s", e.Service, e.Reason)
	if e.Logs != "" {
		msg += "\nlast log lines:\n" + e.Logs
	}
	return msg
}

// Apply carries out the plan. On any failure it removes what it created,
// restores the containers it set aside and returns the error: the version
// that was running keeps running.
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
	for _, sp := range plan.Services {
		if err := run.service(ctx, sp); err != nil {
			return err
		}
	}
	// Everything is up: what was set aside, scaled away or orphaned goes.
	for _, old := range run.aside {
		c.remove(ctx, old, "replaced")
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
	aside   []string          // old containers set aside, oldest first
	names   map[string]string // aside ID -> original name
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
		if rep.Old != nil {
			if err := r.setAside(ctx, *rep.Old); err != nil {
				return err
			}
		}
		id, err := r.create(ctx, want, rep.Number)
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

func (r *applyRun) setAside(ctx context.Context, old container.Summary) error {
	name := containerName(old)
	if err := r.c.stop(ctx, old.ID); err != nil {
		return err
	}
	if _, err := r.c.Docker.ContainerRename(ctx, old.ID, client.ContainerRenameOptions{NewName: name + asideSuffix}); err != nil {
		return fmt.Errorf("set aside container %s: %w", name, err)
	}
	if r.names == nil {
		r.names = map[string]string{}
	}
	r.names[old.ID] = name
	r.aside = append(r.aside, old.ID)
	return nil
}

func (r *applyRun) create(ctx context.Context, want DesiredService, number int) (string, error) {
	spec, err := compose.NewContainerSpec(r.d.Project, want.Config, number, want.Image.Ref, r.labels(want, number), r.resolve)
	if err != nil {
		return "", fmt.Errorf("service %q: %w", want.Config.Name, err)
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

// rollback removes the new containers and restores the old ones. It runs
// after ctx may have been cancelled, so it has its own deadline.
func (r *applyRun) rollback() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for i := len(r.created) - 1; i >= 0; i-- {
		r.c.remove(ctx, r.created[i], "rolled back")
	}
	for i := len(r.aside) - 1; i >= 0; i-- {
		id := r.aside[i]
		if err := r.c.restore(ctx, id, r.names[id]); err != nil {
			r.c.Log.Error("restore failed", "container", r.names[id], "err", err)
		}
	}
}

func (c *Converger) restore(ctx context.Context, id, name string) error {
	if _, err := c.Docker.ContainerRename(ctx, id, client.ContainerRenameOptions{NewName: name}); err != nil {
		return err
	}
	if _, err := c.Docker.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		return err
	}
	c.Log.Info("restored previous container", "container", name)
	return nil
}

// Recover settles containers an interrupted deployment left aside: one whose
// replacement is running is removed, any other is restored.
func (c *Converger) Recover(ctx context.Context, actual []container.Summary) error {
	byName := map[string]container.Summary{}
	for _, ct := range actual {
		byName[containerName(ct)] = ct
	}
	var errs []error
	for _, ct := range actual {
		if !isAside(ct) {
			continue
		}
		name := strings.TrimSuffix(containerName(ct), asideSuffix)
		if repl, ok := byName[name]; ok && repl.State == container.StateRunning {
			c.remove(ctx, ct.ID, "replaced")
			continue
		}
		if repl, ok := byName[name]; ok {
			c.remove(ctx, repl.ID, "failed replacement")
		}
		errs = append(errs, c.restore(ctx, ct.ID, name))
	}
	return errors.Join(errs...)
}

func isAside(c container.Summary) bool {
	return strings.HasSuffix(containerName(c), asideSuffix)
}

func containerName(c container.Summary) string {
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

func (c *Converger) stopAndRemove(ctx context.Context, id, why string) {
	if err := c.stop(ctx, id); err != nil {
		c.Log.Warn("stop failed", "container", id, "err", err)
	}
	c.remove(ctx, id, why)
}

// remove deletes a container but never its named volumes. A failure is
// logged: the container is garbage now, and the next plan sees it again.
func (c *Converger) remove(ctx context.Context, id, why string) {
	if _, err := c.Docker.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true}); err != nil {
		c.Log.Warn("remove failed", "container", id, "err", err)
		return
	}
	c.Log.Info("container removed", "container", id[:min(12, len(id))], "why", why)
}
