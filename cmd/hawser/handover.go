package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"hawser.dev/hawser/reconciler/converge"
)

// The handover runs in a one-shot container from the image of the hawser
// it replaces. That version has shown that it runs on this host, so it is
// the one trusted to put things back when the new one does not come up.

const (
	// handoverTimeout bounds a whole handover, its rollback aside.
	handoverTimeout = 15 * time.Minute
	// rollbackTimeout bounds putting the old hawser back.
	rollbackTimeout = 2 * time.Minute
	// successorSettle is how long a successor without a healthcheck must
	// keep running.
	successorSettle = 10 * time.Second
	// defaultStopTimeout is the old hawser's time to shut down, unless its
	// container sets one.
	defaultStopTimeout = 30
)

// labelHandover marks a handover container with the ID of the container
// it replaces.
const labelHandover = "dev.hawser.handover"

// composeLabels is the prefix of the labels docker compose reads.
const composeLabels = "com.docker.compose."

// handover is the hidden command `hawser handover CONTAINER IMAGE RECORD`:
// it stops the hawser in CONTAINER, starts its successor from IMAGE under
// its name, and waits for it to be healthy; otherwise it removes the
// successor and starts the old one again. The result goes into the attempt
// RECORD that the old hawser wrote.
func handover(ctx context.Context, args []string, stderr io.Writer) error {
	log := slog.New(slog.NewTextHandler(stderr, nil))
	ctx, cancel := context.WithTimeout(ctx, handoverTimeout)
	defer cancel()
	docker, err := connectDocker(ctx)
	if err != nil {
		return err
	}
	defer docker.Close()
	s := &succession{docker: docker, log: log, image: args[1]}
	err = s.run(ctx, args[0])
	result, reason := resultHandedOver, ""
	switch {
	case err != nil && s.stopped:
		result, reason = resultRolledBack, err.Error()
	case err != nil:
		result, reason = resultNotStarted, err.Error()
	}
	if nerr := noteAttempt(args[2], result, reason); nerr != nil {
		log.Warn("handover: record the result", "err", nerr)
	}
	return err
}

// succession is one handover, with what it changed so far.
type succession struct {
	docker *client.Client
	log    *slog.Logger
	image  string // the successor's image ID

	old       container.InspectResponse
	stopped   bool   // the old container is stopped, its restart policy off
	renamed   bool   // the old container is set aside under another name
	successor string // the successor's container ID, once created
}

func (s *succession) run(ctx context.Context, oldID string) error {
	res, err := s.docker.ContainerInspect(ctx, oldID, client.ContainerInspectOptions{})
	if err != nil {
		return fmt.Errorf("inspect the running hawser: %w", err)
	}
	s.old = res.Container
	img, err := s.docker.ImageInspect(ctx, s.old.Image)
	if err != nil {
		return fmt.Errorf("inspect the running hawser's image: %w", err)
	}
	create, extra := successorOptions(s.old, img.InspectResponse)
	s.log.Info("handover: stopping the running hawser", "container", create.Name, "image", s.old.Image)
	if err := s.setAside(ctx); err != nil {
		return s.rollback(ctx, err)
	}
	s.log.Info("handover: starting its successor", "image", s.image)
	if err := s.create(ctx, create, extra); err != nil {
		return s.rollback(ctx, err)
	}
	if err := s.start(ctx); err != nil {
		return s.rollback(ctx, err)
	}
	if _, err := s.docker.ContainerRemove(ctx, s.old.ID, client.ContainerRemoveOptions{}); err != nil {
		s.log.Warn("handover: remove the old container", "err", err)
	}
	s.log.Info("handover: done; the successor is healthy", "container", create.Name)
	return nil
}

// setAside stops the old hawser and renames it, freeing its name, its
// ports and its store. Its restart policy is turned off first, so that
// the engine does not bring it back next to its successor.
func (s *succession) setAside(ctx context.Context) error {
	off := container.RestartPolicy{Name: container.RestartPolicyDisabled}
	if _, err := s.docker.ContainerUpdate(ctx, s.old.ID, client.ContainerUpdateOptions{RestartPolicy: &off}); err != nil {
		return fmt.Errorf("turn off the restart policy: %w", err)
	}
	s.stopped = true
	timeout := defaultStopTimeout
	if s.old.Config.StopTimeout != nil {
		timeout = *s.old.Config.StopTimeout
	}
	if _, err := s.docker.ContainerStop(ctx, s.old.ID, client.ContainerStopOptions{Timeout: &timeout}); err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	aside := containerName(s.old) + "-old-" + s.old.ID[:12]
	if _, err := s.docker.ContainerRename(ctx, s.old.ID, client.ContainerRenameOptions{NewName: aside}); err != nil {
		return fmt.Errorf("rename to %s: %w", aside, err)
	}
	s.renamed = true
	return nil
}

// create creates the successor and checks that the tag still names the
// image the old hawser pulled.
func (s *succession) create(ctx context.Context, opts client.ContainerCreateOptions, extra map[string]*network.EndpointSettings) error {
	res, err := s.docker.ContainerCreate(ctx, opts)
	if err != nil {
		return fmt.Errorf("create the successor: %w", err)
	}
	s.successor = res.ID
	for _, name := range slices.Sorted(maps.Keys(extra)) {
		if _, err := s.docker.NetworkConnect(ctx, name, client.NetworkConnectOptions{Container: res.ID, EndpointConfig: extra[name]}); err != nil {
			return fmt.Errorf("connect the successor to network %s: %w", name, err)
		}
	}
	ct, err := s.docker.ContainerInspect(ctx, res.ID, client.ContainerInspectOptions{})
	if err != nil {
		return fmt.Errorf("inspect the successor: %w", err)
	}
	if ct.Container.Image != s.image {
		return fmt.Errorf("%s names image %s now, not %s", opts.Config.Image, ct.Container.Image, s.image)
	}
	return nil
}

// start starts the successor and waits until it is healthy, or running
// for a while when it has no healthcheck.
func (s *succession) start(ctx context.Context) error {
	if _, err := s.docker.ContainerStart(ctx, s.successor, client.ContainerStartOptions{}); err != nil {
		return fmt.Errorf("start the successor: %w", err)
	}
	started := time.Now()
	var deadline time.Time
	for {
		res, err := s.docker.ContainerInspect(ctx, s.successor, client.ContainerInspectOptions{})
		if err != nil {
			return fmt.Errorf("inspect the successor: %w", err)
		}
		if deadline.IsZero() {
			deadline = started.Add(healthWait(res.Container.Config.Healthcheck))
		}
		up, reason := successorState(res.Container, time.Since(started) >= successorSettle)
		switch {
		case up:
			return nil
		case reason != "":
			return fmt.Errorf("successor: %s", reason)
		case time.Now().After(deadline):
			return fmt.Errorf("the successor is not healthy within %s", deadline.Sub(started).Round(time.Second))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// rollback removes the successor and starts the old hawser again under its
// own name, with its restart policy, whatever ctx says by now.
func (s *succession) rollback(ctx context.Context, cause error) error {
	s.log.Error("handover: failed; putting the old hawser back", "err", cause)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	var errs []error
	if s.successor != "" {
		if _, err := s.docker.ContainerRemove(ctx, s.successor, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil {
			errs = append(errs, fmt.Errorf("remove the successor: %w", err))
		}
	}
	if s.renamed {
		if _, err := s.docker.ContainerRename(ctx, s.old.ID, client.ContainerRenameOptions{NewName: containerName(s.old)}); err != nil {
			errs = append(errs, fmt.Errorf("rename the old container back: %w", err))
		}
	}
	if s.stopped {
		policy := s.old.HostConfig.RestartPolicy
		if _, err := s.docker.ContainerUpdate(ctx, s.old.ID, client.ContainerUpdateOptions{RestartPolicy: &policy}); err != nil {
			errs = append(errs, fmt.Errorf("restore the restart policy: %w", err))
		}
		if _, err := s.docker.ContainerStart(ctx, s.old.ID, client.ContainerStartOptions{}); err != nil {
			errs = append(errs, fmt.Errorf("start the old container: %w", err))
		}
	}
	if len(errs) == 0 {
		s.log.Info("handover: the old hawser runs again", "container", containerName(s.old))
	}
	return errors.Join(append([]error{cause}, errs...)...)
}

// successorState says whether the successor is up (true, ""), failed
// (false, reason) or still starting (false, ""). One the engine restarted
// already is crash-looping, even if it runs at this instant.
func successorState(ct container.InspectResponse, settled bool) (bool, string) {
	st := ct.State
	switch {
	case st.Restarting || ct.RestartCount > 0:
		return false, fmt.Sprintf("restarting (exit code %d)", st.ExitCode)
	case !st.Running:
		return false, fmt.Sprintf("%s with code %d", st.Status, st.ExitCode)
	case st.Health == nil:
		return settled, ""
	case st.Health.Status == container.Healthy:
		return true, ""
	case st.Health.Status == container.Unhealthy:
		return false, "unhealthy" + lastHealthOutput(st.Health)
	}
	return false, ""
}

func lastHealthOutput(h *container.Health) string {
	if len(h.Log) == 0 {
		return ""
	}
	return ": " + strings.TrimSpace(h.Log[len(h.Log)-1].Output)
}

// healthWait is how long the engine may take to call a container with
// healthcheck hc healthy or unhealthy: the start period, then a check and
// each retry, at the engine's defaults where hc leaves zero.
func healthWait(hc *container.HealthConfig) time.Duration {
	if hc == nil || len(hc.Test) == 0 || hc.Test[0] == "NONE" {
		return successorSettle + 30*time.Second
	}
	interval := cmp.Or(hc.Interval, 30*time.Second)
	timeout := cmp.Or(hc.Timeout, 30*time.Second)
	retries := cmp.Or(hc.Retries, 3)
	return hc.StartPeriod + time.Duration(retries+1)*(interval+timeout)
}

// successorOptions creates a container like old, under its name, from the
// tag old was created from. What old has only because its image said so
// (command, environment, healthcheck, ...) is left to the new image;
// anonymous volumes are mounted again. Networks other than the one of the
// network mode are returned apart: an engine before API 1.44 connects a
// new container to one network only.
func successorOptions(old container.InspectResponse, img image.InspectResponse) (client.ContainerCreateOptions, map[string]*network.EndpointSettings) {
	cfg := *old.Config
	withoutImageDefaults(&cfg, img)
	if cfg.Hostname == old.ID[:12] {
		cfg.Hostname = "" // the engine's default: the successor's own ID
	}
	host := *old.HostConfig
	host.Mounts = slices.Clone(host.Mounts)
	converge.KeepAnonymousVolumes(&host, old.Mounts)
	primary, extra := endpoints(old)
	return client.ContainerCreateOptions{Name: containerName(old), Config: &cfg, HostConfig: &host, NetworkingConfig: primary}, extra
}

// withoutImageDefaults clears what cfg holds only because img holds it.
func withoutImageDefaults(cfg *container.Config, ii image.InspectResponse) {
	img := ii.Config
	if img == nil {
		return
	}
	if slices.Equal(cfg.Cmd, img.Cmd) {
		cfg.Cmd = nil
	}
	if slices.Equal(cfg.Entrypoint, img.Entrypoint) {
		cfg.Entrypoint = nil
	}
	if cfg.WorkingDir == img.WorkingDir {
		cfg.WorkingDir = ""
	}
	if cfg.User == img.User {
		cfg.User = ""
	}
	if cfg.StopSignal == img.StopSignal {
		cfg.StopSignal = ""
	}
	if sameHealthcheck(cfg.Healthcheck, img.Healthcheck) {
		cfg.Healthcheck = nil
	}
	cfg.Env = slices.DeleteFunc(slices.Clone(cfg.Env), func(e string) bool { return slices.Contains(img.Env, e) })
	cfg.Labels = maps.Clone(cfg.Labels)
	maps.DeleteFunc(cfg.Labels, func(k, v string) bool { w, ok := img.Labels[k]; return ok && w == v })
	cfg.ExposedPorts = maps.Clone(cfg.ExposedPorts)
	maps.DeleteFunc(cfg.ExposedPorts, func(p network.Port, _ struct{}) bool { _, ok := img.ExposedPorts[p.String()]; return ok })
	cfg.Volumes = maps.Clone(cfg.Volumes)
	maps.DeleteFunc(cfg.Volumes, func(v string, _ struct{}) bool { _, ok := img.Volumes[v]; return ok })
}

func sameHealthcheck(c, i *container.HealthConfig) bool {
	if c == nil || i == nil {
		return c == nil && i == nil
	}
	return slices.Equal(c.Test, i.Test) && c.Interval == i.Interval && c.Timeout == i.Timeout &&
		c.StartPeriod == i.StartPeriod && c.StartInterval == i.StartInterval && c.Retries == i.Retries
}

// endpoints returns old's endpoint on the network of its network mode, to
// create the successor with, and those on other networks, to connect it to
// after. Only settings are kept, not addresses, and not the alias that is
// old's short ID.
func endpoints(old container.InspectResponse) (*network.NetworkingConfig, map[string]*network.EndpointSettings) {
	mode := old.HostConfig.NetworkMode
	if mode.IsHost() || mode.IsNone() || mode.IsContainer() || old.NetworkSettings == nil {
		return nil, nil
	}
	var primary *network.NetworkingConfig
	extra := map[string]*network.EndpointSettings{}
	for name, ep := range old.NetworkSettings.Networks {
		settings := &network.EndpointSettings{
			IPAMConfig: ep.IPAMConfig, Links: ep.Links, DriverOpts: ep.DriverOpts,
			Aliases: slices.DeleteFunc(slices.Clone(ep.Aliases), func(a string) bool { return a == old.ID[:12] }),
		}
		switch {
		case name == string(mode) || ep.NetworkID == string(mode):
			if mode.IsUserDefined() {
				primary = &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{name: settings}}
			}
		case mode.IsDefault() && name == network.NetworkBridge:
			// the default network: nothing to configure
		default:
			extra[name] = settings
		}
	}
	return primary, extra
}

// handoverOptions creates the one-shot handover container: from the image
// old runs, with its user, environment and mounts (the engine's socket and
// the state directory among them) and its network mode, publishing
// nothing, removed when done. It carries old's labels but not compose's,
// so that compose does not count it as a container of the service.
func handoverOptions(old container.InspectResponse, exe, image, record string) client.ContainerCreateOptions {
	labels := map[string]string{labelHandover: old.ID}
	for k, v := range old.Config.Labels {
		if !strings.HasPrefix(k, composeLabels) {
			labels[k] = v
		}
	}
	host := &container.HostConfig{
		Binds: old.HostConfig.Binds, Mounts: slices.Clone(old.HostConfig.Mounts), GroupAdd: old.HostConfig.GroupAdd,
		NetworkMode: old.HostConfig.NetworkMode, AutoRemove: true,
	}
	converge.KeepAnonymousVolumes(host, old.Mounts)
	return client.ContainerCreateOptions{
		Name: containerName(old) + "-handover-" + strings.TrimPrefix(image, "sha256:")[:12],
		Config: &container.Config{
			Image: old.Image, User: old.Config.User, Env: old.Config.Env, Labels: labels,
			Entrypoint:  []string{exe},
			Cmd:         []string{"handover", old.ID, image, record},
			Healthcheck: &container.HealthConfig{Test: []string{"NONE"}},
		},
		HostConfig: host,
	}
}
