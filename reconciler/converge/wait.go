package converge

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// pollInterval is how often a container's state is read while waiting.
const pollInterval = 200 * time.Millisecond

// start starts a new container and waits until it is up: healthy when it
// has a healthcheck; for a routed service without one, answering its HTTP
// health path; otherwise still running after the settle time, or exited
// with 0 when it is a one-shot job (restart: no).
func (c *Converger) start(ctx context.Context, service, id string, want DesiredService) error {
	return c.startPaced(ctx, service, id, want, c.Settle, pollInterval)
}

// wakePoll is how often a woken container is looked at: a client waits.
const wakePoll = 25 * time.Millisecond

// startPaced is start with its settle time and polling pace: a container
// that ran this version before (a waking preview) needs no settle, and a
// waiting client wants quick looks.
func (c *Converger) startPaced(ctx context.Context, service, id string, want DesiredService, settle, poll time.Duration) error {
	svc := want.Config
	if _, err := c.Docker.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		return &StartError{Service: service, Reason: err.Error(), Logs: c.lastLogs(ctx, id)}
	}
	deadline := time.Now().Add(c.HealthTimeout)
	settled := time.Now().Add(settle)
	for {
		ct, err := c.inspect(ctx, id)
		if err != nil {
			return err
		}
		done, reason := ready(ct.State, ct.RestartCount, svc, time.Now().After(settled))
		if done && reason == "" && want.Routed && ct.State.Health == nil {
			done = c.probe(ctx, c.inspectedUpstream(ct, want.Routing.Port), want.Routing.Health)
		}
		if done && reason == "" {
			return nil
		}
		if reason == "" && time.Now().After(deadline) {
			reason = fmt.Sprintf("not healthy within %s", c.HealthTimeout)
		}
		if reason != "" {
			return &StartError{Service: service, Reason: reason, Logs: c.lastLogs(ctx, id)}
		}
		if err := sleep(ctx, poll); err != nil {
			return err
		}
	}
}

// ready says whether a starting container is up (true, ""), failed
// (false, reason) or still starting (false, ""). A container the engine has
// restarted already is crash-looping, even if it is running at this instant.
func ready(st *container.State, restarts int, svc types.ServiceConfig, settled bool) (bool, string) {
	switch {
	case st.Restarting || restarts > 0:
		return false, fmt.Sprintf("restarting (exit code %d)", st.ExitCode)
	case st.Running && st.Health != nil:
		switch st.Health.Status {
		case container.Healthy:
			return true, ""
		case container.Unhealthy:
			return false, "unhealthy" + lastProbe(st.Health)
		}
		return false, ""
	case st.Running:
		return settled, ""
	case st.Status == container.StateExited && st.ExitCode == 0 && oneShot(svc):
		return true, ""
	case st.Status == container.StateExited, st.Status == container.StateDead:
		return false, fmt.Sprintf("exited with code %d", st.ExitCode)
	}
	return false, ""
}

func oneShot(svc types.ServiceConfig) bool {
	return svc.Restart == "" || svc.Restart == types.RestartPolicyNo
}

func lastProbe(h *container.Health) string {
	if len(h.Log) == 0 {
		return ""
	}
	return ": " + strings.TrimSpace(h.Log[len(h.Log)-1].Output)
}

// waitDependencies waits until every dependency of svc meets its
// depends_on condition.
func (c *Converger) waitDependencies(ctx context.Context, d *Desired, svc types.ServiceConfig) error {
	for dep, cond := range svc.DependsOn {
		if _, ok := d.Services[dep]; !ok {
			continue // an optional dependency that is not in the project
		}
		if err := c.waitCondition(ctx, d.Project.Name, dep, cond.Condition); err != nil {
			return &StartError{Service: svc.Name, Reason: fmt.Sprintf("dependency %q: %v", dep, err)}
		}
	}
	return nil
}

func (c *Converger) waitCondition(ctx context.Context, project, dep, cond string) error {
	deadline := time.Now().Add(c.HealthTimeout)
	for {
		ok, err := c.conditionMet(ctx, project, dep, cond)
		if err != nil || ok {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not %s within %s", strings.TrimPrefix(cond, "service_"), c.HealthTimeout)
		}
		if err := sleep(ctx, pollInterval); err != nil {
			return err
		}
	}
}

func (c *Converger) conditionMet(ctx context.Context, project, dep, cond string) (bool, error) {
	cs, err := c.Docker.ContainerList(ctx, client.ContainerListOptions{
		All: true,
		Filters: client.Filters{}.Add("label", LabelProject+"="+project).
			Add("label", LabelService+"="+dep),
	})
	if err != nil {
		return false, err
	}
	if len(cs.Items) == 0 {
		return false, nil
	}
	for _, ct := range cs.Items {
		if strings.HasSuffix(ContainerName(ct), asideSuffix) {
			continue
		}
		res, err := c.inspect(ctx, ct.ID)
		if err != nil {
			return false, err
		}
		met, err := condition(res.State, cond)
		if err != nil || !met {
			return false, err
		}
	}
	return true, nil
}

func condition(st *container.State, cond string) (bool, error) {
	switch cond {
	case types.ServiceConditionHealthy:
		if st.Health == nil {
			return false, fmt.Errorf("has no healthcheck")
		}
		if st.Health.Status == container.Unhealthy {
			return false, fmt.Errorf("unhealthy")
		}
		return st.Health.Status == container.Healthy, nil
	case types.ServiceConditionCompletedSuccessfully:
		if st.Status == container.StateExited && st.ExitCode != 0 {
			return false, fmt.Errorf("exited with code %d", st.ExitCode)
		}
		return st.Status == container.StateExited, nil
	default:
		// A job that ran and finished has started, as far as compose is
		// concerned.
		return st.Running || (st.Status == container.StateExited && !neverStarted(st)), nil
	}
}

// neverStarted reports a container the engine has not started: its start
// time is the zero time.
func neverStarted(st *container.State) bool {
	t, err := time.Parse(time.RFC3339Nano, st.StartedAt)
	return err != nil || t.IsZero() || t.Year() <= 1
}

func (c *Converger) inspect(ctx context.Context, id string) (container.InspectResponse, error) {
	res, err := c.Docker.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return res.Container, fmt.Errorf("inspect container %s: %w", id, err)
	}
	if res.Container.State == nil {
		return res.Container, fmt.Errorf("inspect container %s: no state", id)
	}
	return res.Container, nil
}

// logLines is how much of a failed container's log a deployment keeps.
const logLines = 20

func (c *Converger) lastLogs(ctx context.Context, id string) string {
	rc, err := c.Docker.ContainerLogs(ctx, id, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Tail: fmt.Sprint(logLines)})
	if err != nil {
		return ""
	}
	defer rc.Close()
	var out strings.Builder
	if _, err := stdcopy.StdCopy(&out, &out, io.LimitReader(rc, 64<<10)); err != nil {
		c.Log.Debug("read container log", "container", id, "err", err)
	}
	return strings.TrimSpace(out.String())
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// waitUpstream waits until a restored routed container is running and
// publishes its port, and returns its upstream ("" if it does not in time).
func (c *Converger) waitUpstream(ctx context.Context, id string, port uint16, health string) string {
	deadline := time.Now().Add(c.HealthTimeout)
	for time.Now().Before(deadline) {
		ct, err := c.inspect(ctx, id)
		if err != nil {
			return ""
		}
		if up := c.inspectedUpstream(ct, port); ct.State.Running && up != "" && c.probe(ctx, up, health) {
			return up
		}
		if sleep(ctx, pollInterval) != nil {
			return ""
		}
	}
	return ""
}
