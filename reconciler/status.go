package reconciler

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"hawser.dev/hawser/reconciler/converge"
	"hawser.dev/hawser/reconciler/preview"
	"hawser.dev/hawser/reconciler/store"
)

// Status is what `hawser status` shows of one project.
type Status struct {
	Project       string `json:"project"`
	Branch        string `json:"branch"`
	WatchedCommit string `json:"watched_commit"`
	RunningCommit string `json:"running_commit"`
	// RunningSubject is the first line of the running commit's message,
	// once this process has deployed or adopted it.
	RunningSubject string `json:"running_subject,omitempty"`
	// Paused says automatic updates wait for `hawser resume`; PinnedCommit
	// is the commit a rollback holds the project at.
	Paused        bool      `json:"paused"`
	PinnedCommit  string    `json:"pinned_commit,omitempty"`
	LastReconcile time.Time `json:"last_reconcile"`
	LastResult    string    `json:"last_result"`
	LastError     string    `json:"last_error,omitempty"`
	// LastDeployment is the newest deployment that changed something or failed.
	LastDeployment *store.Deployment `json:"last_deployment,omitempty"`
	Services       []ServiceStatus   `json:"services"`
	// Images are the followed images and their last registry check.
	Images []ImageStatus `json:"images,omitempty"`

	// Previews are the branch previews this process runs.
	Previews []PreviewStatus `json:"previews,omitempty"`

	images   map[string]ImageStatus // by service and ref
	previews []*previewState
}

// ServiceStatus is the state of one service's containers.
type ServiceStatus struct {
	Name       string   `json:"name"`
	Containers []string `json:"containers"`
	// States lists each container's state and health, e.g. "Up 3 minutes (healthy)".
	States []string `json:"states"`
	Commit string   `json:"commit"`
	Image  string   `json:"image"`
}

func (r *Reconciler) setStatus(update func(*Status)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	update(&r.status)
}

// Status returns the project's status with the live state of its containers.
func (r *Reconciler) Status(ctx context.Context) (Status, error) {
	r.mu.Lock()
	st := r.status
	for _, k := range slices.Sorted(maps.Keys(r.status.images)) {
		st.Images = append(st.Images, r.status.images[k])
	}
	st.images = nil
	st.Previews = r.previewStatuses()
	st.previews = nil
	r.mu.Unlock()
	if st.LastDeployment == nil {
		if last, err := r.store.Last(r.project.Name); err == nil {
			st.LastDeployment = &last
		}
	}
	if st.LastDeployment != nil {
		last := *st.LastDeployment
		last.Logs = ""
		st.LastDeployment = &last
	}
	actual, err := converge.List(ctx, r.docker, r.project.Name)
	if err != nil {
		return st, err
	}
	st.Services = serviceStatuses(actual)
	if st.RunningCommit == "" {
		// Before this process's first deployment, the running containers
		// say which commit they came from.
		st.RunningCommit = runningCommit(actual)
	}
	return st, nil
}

// previewStatuses is the status of the previews the last pass published;
// the caller holds r.mu.
func (r *Reconciler) previewStatuses() []PreviewStatus {
	list := make([]PreviewStatus, 0, len(r.status.previews))
	for _, p := range r.status.previews {
		list = append(list, p.status())
	}
	return list
}

// DiskUsage measures the engine's volumes; the Docker client is one.
type DiskUsage interface {
	DiskUsage(ctx context.Context, opts client.DiskUsageOptions) (client.DiskUsageResult, error)
}

// Previews returns the previews this process runs with the size of their
// volumes, which the engine measures on every call: it walks the volumes,
// so it is for `hawser previews`, not for every status.
func (r *Reconciler) Previews(ctx context.Context) ([]PreviewStatus, error) {
	r.mu.Lock()
	list := r.previewStatuses()
	r.mu.Unlock()
	if len(list) == 0 || r.disk == nil {
		return list, nil
	}
	size, err := r.volumeSizes(ctx)
	if err != nil {
		return list, err
	}
	for i := range list {
		list[i].VolumeBytes = size[preview.ProjectName(r.project.Name, list[i].Slug)]
	}
	return list, nil
}

// sizesFresh is how long one measurement of the volumes answers: the
// engine walks every volume and refuses a second walk while one runs.
const sizesFresh = 30 * time.Second

// volumeSizes returns the bytes of the volumes of each compose project,
// measured at most once per sizesFresh, one caller at a time.
func (r *Reconciler) volumeSizes(ctx context.Context) (map[string]int64, error) {
	r.sizes.mu.Lock()
	defer r.sizes.mu.Unlock()
	if time.Since(r.sizes.at) < sizesFresh {
		return r.sizes.bytes, nil
	}
	du, err := r.disk.DiskUsage(ctx, client.DiskUsageOptions{Volumes: true, Verbose: true})
	if err != nil {
		return nil, fmt.Errorf("measure preview volumes: %w", err)
	}
	size := map[string]int64{}
	for _, v := range du.Volumes.Items {
		if v.UsageData != nil && v.UsageData.Size > 0 {
			size[v.Labels[converge.LabelProject]] += v.UsageData.Size
		}
	}
	r.sizes.bytes, r.sizes.at = size, time.Now()
	return size, nil
}

func serviceStatuses(actual []container.Summary) []ServiceStatus {
	byName := map[string]*ServiceStatus{}
	for _, c := range actual {
		name := c.Labels[converge.LabelService]
		s, ok := byName[name]
		if !ok {
			s = &ServiceStatus{Name: name, Commit: c.Labels[converge.LabelCommit], Image: cmp.Or(c.Labels[converge.LabelImageRef], c.Image)}
			byName[name] = s
		}
		s.Containers = append(s.Containers, converge.ContainerName(c))
		s.States = append(s.States, stateOf(c))
	}
	out := make([]ServiceStatus, 0, len(byName))
	for _, s := range byName {
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b ServiceStatus) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// stateOf is the engine's own summary, e.g. "Up 3 minutes (healthy)"; API
// 1.41 has no structured health in a container list.
func stateOf(c container.Summary) string {
	if c.Status != "" {
		return c.Status
	}
	return string(c.State)
}
