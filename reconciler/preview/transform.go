package preview

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"

	"hawser.dev/hawser/reconciler/converge"
)

// LabelPreview carries the slug of the preview a container, volume or
// network belongs to, so a preview's resources can be found and removed by
// label without touching production.
const LabelPreview = "dev.hawser.preview"

// Limits caps the resources of every service of a preview
// (HAWSER_PREVIEW_CPUS, HAWSER_PREVIEW_MEMORY). Zero means no cap.
type Limits struct {
	// CPUs is the most CPUs one service may use, e.g. 0.5.
	CPUs float64
	// Memory is the most memory one service may use, in bytes.
	Memory int64
}

// IsolationError lists everything in a project that would let its preview
// reach the host or production, so the author sees every problem at once.
// Fixing it takes a new commit on the branch.
type IsolationError struct {
	// Services maps a service name to its problems.
	Services map[string][]string
	// Volumes maps a top-level volume key to its problems.
	Volumes map[string][]string
}

// Error names each service and volume with its problems, sorted.
func (e *IsolationError) Error() string {
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(e.Services)) {
		parts = append(parts, fmt.Sprintf("service %q: %s", name, strings.Join(e.Services[name], ", ")))
	}
	for _, key := range slices.Sorted(maps.Keys(e.Volumes)) {
		parts = append(parts, fmt.Sprintf("volume %q: %s", key, strings.Join(e.Volumes[key], ", ")))
	}
	return "not allowed in a preview, which runs next to production: " + strings.Join(parts, "; ")
}

// Isolate turns p, loaded under the preview's project name
// (ProjectName(project, slug)), into a copy that can run next to
// production: no host ports, no container names, no host routing label,
// its own volumes and networks, resources capped by limits, and everything
// labelled LabelPreview=slug.
//
// root is the preview's checkout: host paths the project uses (bind mounts,
// secret and config files, env and label files, build contexts and
// Dockerfiles) must lie inside it after symlinks are resolved, since the
// branch's code, not production's configuration, decides what is in it.
// Isolate reads the file system only to resolve those symlinks.
//
// When anything cannot be made safe (host namespaces, privileged mode,
// devices, paths outside root, volumes backed by a device) Isolate returns
// an *IsolationError listing all of it and leaves p unchanged.
func Isolate(p *types.Project, slug, root string, limits Limits) error {
	if err := check(p, root); err != nil {
		return err
	}
	for name, svc := range p.Services {
		p.Services[name] = isolateService(svc, slug, limits)
	}
	for key, v := range p.Volumes {
		// A named volume of a preview is always its own: even one declared
		// external or with a fixed name is state that production owns.
		v.External = false
		v.Name = p.Name + "_" + key
		v.Labels = maps.Clone(v.Labels).Add(LabelPreview, slug)
		p.Volumes[key] = v
	}
	for key, n := range p.Networks {
		n.External = false
		n.Name = p.Name + "_" + key
		n.Labels = maps.Clone(n.Labels).Add(LabelPreview, slug)
		p.Networks[key] = n
	}
	return nil
}

func isolateService(svc types.ServiceConfig, slug string, limits Limits) types.ServiceConfig {
	// The front end publishes routed ports itself; a host port would clash
	// with production's.
	svc.Ports = nil
	svc.ContainerName = ""
	svc.Labels = maps.Clone(svc.Labels)
	// A preview is served at its own host names; it must never claim one of
	// production's.
	delete(svc.Labels, converge.LabelHTTPHost)
	svc.Labels = svc.Labels.Add(LabelPreview, slug)
	capResources(&svc, limits)
	return svc
}

// check collects every isolation problem of p.
func check(p *types.Project, root string) error {
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return fmt.Errorf("preview checkout: %w", err)
	}
	e := &IsolationError{Services: map[string][]string{}, Volumes: map[string][]string{}}
	for name, svc := range p.Services {
		problems := hostAccess(svc)
		for _, ref := range hostPaths(p, svc) {
			if msg := outside(realRoot, ref); msg != "" {
				problems = append(problems, msg)
			}
		}
		if len(problems) > 0 {
			e.Services[name] = problems
		}
	}
	for key, v := range p.Volumes {
		// The local driver's device option mounts a host path or a network
		// share, which a fresh name does not make the preview's own.
		if dev, ok := v.DriverOpts["device"]; ok {
			e.Volumes[key] = []string{fmt.Sprintf("driver_opts.device %s", dev)}
		}
	}
	if len(e.Services) == 0 && len(e.Volumes) == 0 {
		return nil
	}
	return e
}

// hostAccess names the settings of svc that share a namespace or device
// with the host or with containers outside the preview.
func hostAccess(svc types.ServiceConfig) []string {
	var out []string
	// A network by name, "host", "bridge" or another container's stack
	// would all reach beyond the preview's own networks.
	if m := svc.NetworkMode; m != "" && m != "none" && !strings.HasPrefix(m, types.ServicePrefix) {
		out = append(out, "network_mode: "+m)
	}
	if m := svc.Pid; m != "" && !strings.HasPrefix(m, types.ServicePrefix) {
		out = append(out, "pid: "+m)
	}
	switch m := svc.Ipc; {
	case m == "", m == "private", m == "shareable", m == "none", strings.HasPrefix(m, types.ServicePrefix):
	default:
		out = append(out, "ipc: "+m)
	}
	for attr, mode := range map[string]string{"uts": svc.Uts, "userns_mode": svc.UserNSMode, "cgroup": svc.Cgroup} {
		if mode == "host" {
			out = append(out, attr+": host")
		}
	}
	if svc.Privileged {
		out = append(out, "privileged: true")
	}
	for _, d := range svc.Devices {
		out = append(out, "devices: "+d.Source)
	}
	for _, from := range svc.VolumesFrom {
		if strings.HasPrefix(from, types.ContainerPrefix) {
			out = append(out, "volumes_from: "+from)
		}
	}
	slices.Sort(out)
	return out
}

// hostRef is a host path a service uses, with the attribute it comes from.
type hostRef struct {
	attr string
	path string
}

// hostPaths lists the host paths svc reads or mounts. compose-go has made
// them absolute; a build context that is not a path (a git URL) is left to
// the builder, which refuses it.
func hostPaths(p *types.Project, svc types.ServiceConfig) []hostRef {
	var out []hostRef
	for _, v := range svc.Volumes {
		if v.Type == types.VolumeTypeBind {
			out = append(out, hostRef{"volumes", v.Source})
		}
	}
	for _, s := range svc.Secrets {
		if f := p.Secrets[s.Source].File; f != "" {
			out = append(out, hostRef{"secrets." + s.Source, f})
		}
	}
	for _, c := range svc.Configs {
		if f := p.Configs[c.Source].File; f != "" {
			out = append(out, hostRef{"configs." + c.Source, f})
		}
	}
	for _, f := range svc.EnvFiles {
		out = append(out, hostRef{"env_file", f.Path})
	}
	for _, f := range svc.LabelFiles {
		out = append(out, hostRef{"label_file", f})
	}
	if b := svc.Build; b != nil && filepath.IsAbs(b.Context) {
		out = append(out, hostRef{"build.context", b.Context})
		// A Dockerfile inside the context goes to the engine in the
		// context's archive; one outside it is read from the host.
		if b.Dockerfile != "" && b.DockerfileInline == "" {
			path := dockerfilePath(*b)
			if rel, err := filepath.Rel(b.Context, path); err != nil || !filepath.IsLocal(rel) {
				out = append(out, hostRef{"build.dockerfile", path})
			}
		}
	}
	return out
}

// dockerfilePath is where b's Dockerfile is on disk: a relative path is
// relative to the context, as with docker compose.
func dockerfilePath(b types.BuildConfig) string {
	if filepath.IsAbs(b.Dockerfile) {
		return b.Dockerfile
	}
	return filepath.Join(b.Context, b.Dockerfile)
}

// outside describes ref when it does not resolve to a path inside
// realRoot, or returns "".
func outside(realRoot string, ref hostRef) string {
	real, err := resolve(ref.path)
	if err != nil {
		return fmt.Sprintf("%s: %s: %v", ref.attr, ref.path, err)
	}
	if rel, err := filepath.Rel(realRoot, real); err == nil && filepath.IsLocal(rel) {
		return ""
	}
	return fmt.Sprintf("%s: %s is outside the checkout", ref.attr, ref.path)
}

// resolve follows the symlinks in path the way the engine will when it
// mounts it: a link in the checkout pointing at /srv would otherwise pass
// for a path inside it. The part that does not exist yet (the engine
// creates missing bind sources) is kept as written.
func resolve(path string) (string, error) {
	path = filepath.Clean(path)
	rest := ""
	for {
		real, err := filepath.EvalSymlinks(path)
		if err == nil {
			return filepath.Join(real, rest), nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		if _, lerr := os.Lstat(path); lerr == nil {
			// path exists but does not resolve: a dangling symlink, whose
			// target the engine would create wherever it points.
			return "", errors.New("dangling symlink")
		}
		parent := filepath.Dir(path)
		if parent == path {
			return filepath.Join(path, rest), nil
		}
		rest = filepath.Join(filepath.Base(path), rest)
		path = parent
	}
}

// capResources lowers svc's limits to l's where they are unset or higher.
func capResources(svc *types.ServiceConfig, l Limits) {
	if l.CPUs <= 0 && l.Memory <= 0 {
		return
	}
	lim := ownLimits(svc)
	if l.CPUs > 0 {
		capCPUs(svc, lim, l.CPUs)
	}
	if l.Memory > 0 {
		capMemory(svc, lim, l.Memory)
	}
}

// capCPUs lowers svc's CPU limit to most. The engine refuses NanoCPUs next
// to a CFS period or quota, so a service limited that way keeps its form and
// has its quota lowered instead.
func capCPUs(svc *types.ServiceConfig, lim *types.Resource, most float64) {
	if svc.CPUPeriod != 0 || svc.CPUQuota != 0 {
		period := svc.CPUPeriod
		if period == 0 {
			period = 100_000 // the kernel's default CFS period, in µs
		}
		if svc.CPUQuota <= 0 || float64(svc.CPUQuota)/float64(period) > most {
			svc.CPUQuota = int64(most * float64(period))
		}
		return
	}
	current := float64(lim.NanoCPUs)
	if current == 0 {
		current = float64(svc.CPUS)
	}
	current = lower(current, most)
	lim.NanoCPUs = types.NanoCPUs(current)
	// compose-go refuses distinct values for cpus and
	// deploy.resources.limits.cpus, so the short form follows.
	if svc.CPUS != 0 {
		svc.CPUS = float32(current)
	}
}

// capMemory lowers svc's memory limit to most, and its reservation with it,
// since the engine refuses a reservation above the limit.
func capMemory(svc *types.ServiceConfig, lim *types.Resource, most int64) {
	current := int64(lim.MemoryBytes)
	if current == 0 {
		current = int64(svc.MemLimit)
	}
	current = lower(current, most)
	lim.MemoryBytes = types.UnitBytes(current)
	if svc.MemLimit != 0 {
		svc.MemLimit = types.UnitBytes(current)
	}
	if int64(svc.MemReservation) > current {
		svc.MemReservation = types.UnitBytes(current)
	}
	if r := svc.Deploy.Resources.Reservations; r != nil && int64(r.MemoryBytes) > current {
		r.MemoryBytes = types.UnitBytes(current)
	}
}

// lower is current capped at most, where a current of zero means unlimited.
func lower[T int64 | float64](current, most T) T {
	if current == 0 || current > most {
		return most
	}
	return current
}

// ownLimits gives svc a deploy section of its own, with limits and
// reservations copied (compose-go may share them between copies of a
// service), and returns its limits.
func ownLimits(svc *types.ServiceConfig) *types.Resource {
	deploy := types.DeployConfig{}
	if svc.Deploy != nil {
		deploy = *svc.Deploy
	}
	lim := types.Resource{}
	if deploy.Resources.Limits != nil {
		lim = *deploy.Resources.Limits
	}
	deploy.Resources.Limits = &lim
	if r := deploy.Resources.Reservations; r != nil {
		copied := *r
		deploy.Resources.Reservations = &copied
	}
	svc.Deploy = &deploy
	return &lim
}
