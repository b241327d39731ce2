package compose

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/moby/api/types/blkiodev"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
)

// ContainerSpec is everything needed to create and wire one container of a service.
type ContainerSpec struct {
	// Name is <project>-<service>-<number>, as docker compose v2 names
	// containers, or the service's container_name.
	Name   string
	Config *container.Config
	Host   *container.HostConfig
	// Network holds the endpoint of the first network only: API 1.41 accepts
	// one at create. Nil when network_mode is set.
	Network *network.NetworkingConfig
	// Extra are the endpoints of the other networks, by network name, to
	// connect after create.
	Extra map[string]*network.EndpointSettings
	// ExtraOrder names the networks of Extra in the order compose connects
	// them: priority descending, then name.
	ExtraOrder []string
}

// Resolve returns the ID of a running container of another service (for
// network_mode: service:x, volumes_from: x, ipc/pid: service:x).
type Resolve func(service string) (string, error)

// secretsDir is where compose mounts secrets whose target is not absolute.
const secretsDir = "/run/secrets/"

// ContainerName is the name docker compose v2 gives container number of svc.
func ContainerName(project string, svc types.ServiceConfig, number int) string {
	if svc.ContainerName != "" {
		return svc.ContainerName
	}
	return strings.Join([]string{project, svc.Name, strconv.Itoa(number)}, "-")
}

// NewContainerSpec maps one service of a loaded project to the create options
// docker compose up -d would use for its container number. image is the
// reference or ID to run; labels are set over the service's own labels.
// resolve is only called for references to other services and may be nil
// when there are none.
func NewContainerSpec(p *types.Project, svc types.ServiceConfig, number int, image string, labels map[string]string, resolve Resolve) (ContainerSpec, error) {
	spec := ContainerSpec{Name: ContainerName(p.Name, svc, number)}
	var err error
	if spec.Config, err = containerConfig(svc, image, labels); err != nil {
		return ContainerSpec{}, fmt.Errorf("service %q: %w", svc.Name, err)
	}
	if spec.Host, err = hostConfig(p, svc, resolve); err != nil {
		return ContainerSpec{}, fmt.Errorf("service %q: %w", svc.Name, err)
	}
	if spec.Network, spec.Extra, spec.ExtraOrder, err = networking(p, svc, spec.Name); err != nil {
		return ContainerSpec{}, fmt.Errorf("service %q: %w", svc.Name, err)
	}
	if spec.Host.NetworkMode, err = networkMode(p, svc, resolve); err != nil {
		return ContainerSpec{}, fmt.Errorf("service %q: %w", svc.Name, err)
	}
	return spec, nil
}

func containerConfig(svc types.ServiceConfig, image string, labels map[string]string) (*container.Config, error) {
	exposed, err := exposedPorts(svc)
	if err != nil {
		return nil, err
	}
	health, err := healthcheck(svc.HealthCheck)
	if err != nil {
		return nil, err
	}
	// Attach* are what compose sends for every service container.
	return &container.Config{
		Hostname:     svc.Hostname,
		Domainname:   svc.DomainName,
		User:         svc.User,
		AttachStdout: true,
		AttachStderr: true,
		ExposedPorts: exposed,
		Tty:          svc.Tty,
		OpenStdin:    svc.StdinOpen,
		Env:          environment(svc.Environment),
		Cmd:          shellCommand(svc.Command),
		Entrypoint:   shellCommand(svc.Entrypoint),
		Healthcheck:  health,
		Image:        image,
		WorkingDir:   svc.WorkingDir,
		Labels:       mergeLabels(svc.Labels, svc.CustomLabels, labels),
		StopSignal:   svc.StopSignal,
		StopTimeout:  seconds(svc.StopGracePeriod),
	}, nil
}

// shellCommand keeps compose's distinction: nil leaves the image's value,
// an empty list clears it.
func shellCommand(c types.ShellCommand) []string {
	if c == nil {
		return nil
	}
	return append([]string{}, c...)
}

// environment renders the resolved environment sorted; a variable without a
// value is passed by name alone, as compose does.
func environment(env types.MappingWithEquals) []string {
	out := make([]string, 0, len(env))
	for _, k := range slices.Sorted(maps.Keys(env)) {
		if v := env[k]; v != nil {
			out = append(out, k+"="+*v)
		} else {
			out = append(out, k)
		}
	}
	return out
}

func mergeLabels(all ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range all {
		maps.Copy(out, m)
	}
	return out
}

func seconds(d *types.Duration) *int {
	if d == nil {
		return nil
	}
	s := int(time.Duration(*d).Seconds())
	return &s
}

func healthcheck(h *types.HealthCheckConfig) (*container.HealthConfig, error) {
	if h == nil {
		return nil, nil
	}
	cfg := &container.HealthConfig{
		Test:          h.Test,
		Interval:      duration(h.Interval),
		Timeout:       duration(h.Timeout),
		StartPeriod:   duration(h.StartPeriod),
		StartInterval: duration(h.StartInterval),
	}
	if h.Retries != nil {
		cfg.Retries = int(*h.Retries)
	}
	if h.Disable {
		cfg.Test = []string{"NONE"}
	}
	// The engine ignores start_interval without start_period (moby#48874);
	// compose refuses it, and so do we.
	if h.StartInterval != nil && h.StartPeriod == nil {
		return nil, errors.New("healthcheck.start_interval requires healthcheck.start_period")
	}
	return cfg, nil
}

func duration(d *types.Duration) time.Duration {
	if d == nil {
		return 0
	}
	return time.Duration(*d)
}

func exposedPorts(svc types.ServiceConfig) (network.PortSet, error) {
	set := network.PortSet{}
	for _, e := range svc.Expose {
		r, err := network.ParsePortRange(e)
		if err != nil {
			return nil, fmt.Errorf("expose %q: %w", e, err)
		}
		for p := range r.All() {
			set[p] = struct{}{}
		}
	}
	for _, sp := range svc.Ports {
		p, err := targetPort(sp)
		if err != nil {
			return nil, err
		}
		set[p] = struct{}{}
	}
	return set, nil
}

func targetPort(sp types.ServicePortConfig) (network.Port, error) {
	p, err := network.ParsePort(fmt.Sprintf("%d/%s", sp.Target, sp.Protocol))
	if err != nil {
		return network.Port{}, fmt.Errorf("port %d: %w", sp.Target, err)
	}
	return p, nil
}

func portBindings(svc types.ServiceConfig) (network.PortMap, error) {
	bindings := network.PortMap{}
	for _, sp := range svc.Ports {
		p, err := targetPort(sp)
		if err != nil {
			return nil, err
		}
		b := network.PortBinding{HostPort: sp.Published}
		if sp.HostIP != "" {
			if b.HostIP, err = netip.ParseAddr(strings.Trim(sp.HostIP, "[]")); err != nil {
				return nil, fmt.Errorf("port %d host_ip: %w", sp.Target, err)
			}
		}
		bindings[p] = append(bindings[p], b)
	}
	return bindings, nil
}

func hostConfig(p *types.Project, svc types.ServiceConfig, resolve Resolve) (*container.HostConfig, error) {
	h := &container.HostConfig{
		CapAdd:         svc.CapAdd,
		CapDrop:        svc.CapDrop,
		Init:           svc.Init,
		CgroupnsMode:   container.CgroupnsMode(svc.Cgroup),
		ReadonlyRootfs: svc.ReadOnly,
		RestartPolicy:  restartPolicy(svc),
		ShmSize:        int64(svc.ShmSize),
		Sysctls:        svc.Sysctls,
		DNSSearch:      svc.DNSSearch,
		DNSOptions:     svc.DNSOpts,
		ExtraHosts:     extraHosts(svc.ExtraHosts),
		StorageOpt:     svc.StorageOpt,
		UsernsMode:     container.UsernsMode(svc.UserNSMode),
		UTSMode:        container.UTSMode(svc.Uts),
		Privileged:     svc.Privileged,
		Tmpfs:          tmpfs(svc.Tmpfs),
		Runtime:        svc.Runtime,
		LogConfig:      logConfig(svc.Logging),
		GroupAdd:       svc.GroupAdd,
		OomScoreAdj:    int(svc.OomScoreAdj),
		Annotations:    svc.Annotations,
		Resources:      resources(svc),
	}
	steps := []func(*types.Project, types.ServiceConfig, Resolve, *container.HostConfig) error{
		setPorts, setDNS, setSecurityOpts, setMounts, setVolumesFrom, setNamespaces,
	}
	for _, step := range steps {
		if err := step(p, svc, resolve, h); err != nil {
			return nil, err
		}
	}
	return h, nil
}

func setPorts(_ *types.Project, svc types.ServiceConfig, _ Resolve, h *container.HostConfig) error {
	var err error
	h.PortBindings, err = portBindings(svc)
	return err
}

func setDNS(_ *types.Project, svc types.ServiceConfig, _ Resolve, h *container.HostConfig) error {
	for _, s := range svc.DNS {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return fmt.Errorf("dns: %w", err)
		}
		h.DNS = append(h.DNS, a)
	}
	return nil
}

// extraHosts is sorted so that the same file always yields the same options.
func extraHosts(hosts types.HostsList) []string {
	if len(hosts) == 0 {
		return nil
	}
	list := hosts.AsList(":")
	slices.Sort(list)
	return list
}

func tmpfs(list types.StringList) map[string]string {
	if len(list) == 0 {
		return nil
	}
	out := make(map[string]string, len(list))
	for _, t := range list {
		target, opts, _ := strings.Cut(t, ":")
		out[target] = opts
	}
	return out
}

func logConfig(l *types.LoggingConfig) container.LogConfig {
	if l == nil {
		return container.LogConfig{}
	}
	return container.LogConfig{Type: l.Driver, Config: l.Options}
}

// restartPolicy follows compose: deploy.restart_policy, when given, wins
// over restart.
func restartPolicy(svc types.ServiceConfig) container.RestartPolicy {
	var rp container.RestartPolicy
	if svc.Restart != "" {
		name, count, _ := strings.Cut(svc.Restart, ":")
		rp.Name = restartMode(name)
		rp.MaximumRetryCount, _ = strconv.Atoi(count)
	}
	if svc.Deploy != nil && svc.Deploy.RestartPolicy != nil {
		policy := svc.Deploy.RestartPolicy
		rp = container.RestartPolicy{Name: restartMode(policy.Condition)}
		if policy.MaxAttempts != nil {
			rp.MaximumRetryCount = int(*policy.MaxAttempts)
		}
	}
	return rp
}

func restartMode(condition string) container.RestartPolicyMode {
	switch condition {
	case "none", "no":
		return container.RestartPolicyDisabled
	case "any", "always":
		return container.RestartPolicyAlways
	default:
		return container.RestartPolicyMode(condition)
	}
}

// setSecurityOpts mirrors compose: a seccomp profile is read from its file
// (relative to the project) and passed inline, and systempaths=unconfined
// becomes empty masked and read-only path lists.
func setSecurityOpts(p *types.Project, svc types.ServiceConfig, _ Resolve, h *container.HostConfig) error {
	for _, opt := range svc.SecurityOpt {
		if opt == "systempaths=unconfined" {
			h.MaskedPaths, h.ReadonlyPaths = []string{}, []string{}
			continue
		}
		key, value, ok := strings.Cut(opt, "=")
		if !ok && key != "no-new-privileges" {
			if key, value, ok = strings.Cut(opt, ":"); !ok {
				return fmt.Errorf("security_opt %q: want key=value", opt)
			}
		}
		if key == "seccomp" && value != "unconfined" && value != "builtin" {
			profile, err := seccompProfile(p, value)
			if err != nil {
				return err
			}
			opt = "seccomp=" + profile
		}
		h.SecurityOpt = append(h.SecurityOpt, opt)
	}
	return nil
}

func seccompProfile(p *types.Project, file string) (string, error) {
	raw, err := os.ReadFile(p.RelativePath(file))
	if err != nil {
		return "", fmt.Errorf("seccomp profile: %w", err)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return "", fmt.Errorf("seccomp profile %s: %w", file, err)
	}
	return buf.String(), nil
}

func resources(svc types.ServiceConfig) container.Resources {
	oomKillDisable := svc.OomKillDisable
	r := container.Resources{
		CPUShares:          svc.CPUShares,
		Memory:             int64(svc.MemLimit),
		NanoCPUs:           int64(svc.CPUS * 1e9),
		CPUPeriod:          svc.CPUPeriod,
		CPUQuota:           svc.CPUQuota,
		CPURealtimePeriod:  svc.CPURTPeriod,
		CPURealtimeRuntime: svc.CPURTRuntime,
		CpusetCpus:         svc.CPUSet,
		DeviceCgroupRules:  svc.DeviceCgroupRules,
		MemoryReservation:  int64(svc.MemReservation),
		MemorySwap:         int64(svc.MemSwapLimit),
		OomKillDisable:     &oomKillDisable,
		Ulimits:            ulimits(svc.Ulimits),
	}
	if svc.MemSwappiness != 0 {
		v := int64(svc.MemSwappiness)
		r.MemorySwappiness = &v
	}
	if svc.PidsLimit != 0 {
		v := svc.PidsLimit
		r.PidsLimit = &v
	}
	for _, d := range svc.Devices {
		r.Devices = append(r.Devices, container.DeviceMapping{
			PathOnHost: d.Source, PathInContainer: d.Target, CgroupPermissions: d.Permissions,
		})
	}
	setBlkio(svc.BlkioConfig, &r)
	if svc.Deploy != nil {
		setLimits(svc.Deploy.Resources.Limits, &r)
		if res := svc.Deploy.Resources.Reservations; res != nil && res.MemoryBytes != 0 {
			r.MemoryReservation = int64(res.MemoryBytes)
		}
	}
	return r
}

func setLimits(l *types.Resource, r *container.Resources) {
	if l == nil {
		return
	}
	if l.MemoryBytes != 0 {
		r.Memory = int64(l.MemoryBytes)
	}
	if l.NanoCPUs != 0 {
		r.NanoCPUs = int64(l.NanoCPUs * 1e9)
	}
	if l.Pids > 0 {
		v := l.Pids
		r.PidsLimit = &v
	}
}

func setBlkio(b *types.BlkioConfig, r *container.Resources) {
	if b == nil {
		return
	}
	r.BlkioWeight = b.Weight
	for _, d := range b.WeightDevice {
		r.BlkioWeightDevice = append(r.BlkioWeightDevice, &blkiodev.WeightDevice{Path: d.Path, Weight: d.Weight})
	}
	r.BlkioDeviceReadBps = throttle(b.DeviceReadBps)
	r.BlkioDeviceReadIOps = throttle(b.DeviceReadIOps)
	r.BlkioDeviceWriteBps = throttle(b.DeviceWriteBps)
	r.BlkioDeviceWriteIOps = throttle(b.DeviceWriteIOps)
}

func throttle(devices []types.ThrottleDevice) []*blkiodev.ThrottleDevice {
	var out []*blkiodev.ThrottleDevice
	for _, d := range devices {
		out = append(out, &blkiodev.ThrottleDevice{Path: d.Path, Rate: uint64(d.Rate)})
	}
	return out
}

// ulimits are sorted by name so the same file always yields the same options.
func ulimits(m map[string]*types.UlimitsConfig) []*container.Ulimit {
	var out []*container.Ulimit
	for _, name := range slices.Sorted(maps.Keys(m)) {
		u := m[name]
		soft, hard := u.Single, u.Single
		if u.Soft != 0 {
			soft = u.Soft
		}
		if u.Hard != 0 {
			hard = u.Hard
		}
		out = append(out, &container.Ulimit{Name: name, Soft: int64(soft), Hard: int64(hard)})
	}
	return out
}

// setMounts follows compose: a bind mount that may create its missing host
// path goes to Binds (the Mount API cannot create it, moby#43483); every
// other volume, secret and config is a Mount. A target already taken by a
// volume is not mounted again by a secret or config.
func setMounts(p *types.Project, svc types.ServiceConfig, _ Resolve, h *container.HostConfig) error {
	taken := map[string]bool{}
	for _, v := range svc.Volumes {
		taken[v.Target] = true
		if v.Type == types.VolumeTypeBind && !needsMountAPI(v.Bind) {
			bind, err := bindSpec(v)
			if err != nil {
				return err
			}
			h.Binds = append(h.Binds, bind)
			continue
		}
		m, err := volumeMount(p, v)
		if err != nil {
			return err
		}
		h.Mounts = append(h.Mounts, m)
	}
	files, err := fileMounts(p, svc)
	if err != nil {
		return err
	}
	for _, m := range files {
		if !taken[m.Target] {
			taken[m.Target] = true
			h.Mounts = append(h.Mounts, m)
		}
	}
	return nil
}

func needsMountAPI(b *types.ServiceVolumeBind) bool {
	return b != nil && (!bool(b.CreateHostPath) || b.Propagation != "" || b.Recursive != "")
}

func bindSpec(v types.ServiceVolumeConfig) (string, error) {
	src, err := hostPath(v.Source)
	if err != nil {
		return "", err
	}
	v.Source = src
	return v.String(), nil
}

// hostPath makes a bind source absolute; compose-go has already done so for
// paths relative to the project, this only guards against a bare name.
func hostPath(src string) (string, error) {
	if filepath.IsAbs(src) {
		return src, nil
	}
	abs, err := filepath.Abs(src)
	if err != nil {
		return "", fmt.Errorf("bind source %q: %w", src, err)
	}
	return abs, nil
}

func volumeMount(p *types.Project, v types.ServiceVolumeConfig) (mount.Mount, error) {
	m := mount.Mount{
		Type:        mount.Type(v.Type),
		Source:      v.Source,
		Target:      v.Target,
		ReadOnly:    v.ReadOnly,
		Consistency: mount.Consistency(v.Consistency),
	}
	switch v.Type {
	case types.VolumeTypeBind:
		src, err := hostPath(v.Source)
		if err != nil {
			return mount.Mount{}, err
		}
		m.Source, m.BindOptions = src, bindOptions(v.Bind)
	case types.VolumeTypeVolume:
		if vol, ok := p.Volumes[v.Source]; ok && v.Source != "" {
			m.Source = vol.Name
		}
		m.VolumeOptions = volumeOptions(v.Volume)
	case types.VolumeTypeTmpfs:
		m.TmpfsOptions = tmpfsOptions(v.Tmpfs)
	default:
		return mount.Mount{}, fmt.Errorf("volume %s: type %q is not supported", v.Target, v.Type)
	}
	return m, nil
}

func bindOptions(b *types.ServiceVolumeBind) *mount.BindOptions {
	if b == nil {
		return nil
	}
	opts := &mount.BindOptions{
		Propagation:      mount.Propagation(b.Propagation),
		CreateMountpoint: bool(b.CreateHostPath),
	}
	switch b.Recursive {
	case "disabled":
		opts.NonRecursive = true
	case "writable":
		opts.ReadOnlyNonRecursive = true
	case "readonly":
		opts.ReadOnlyForceRecursive = true
	}
	return opts
}

func volumeOptions(v *types.ServiceVolumeVolume) *mount.VolumeOptions {
	if v == nil {
		return nil
	}
	return &mount.VolumeOptions{NoCopy: v.NoCopy, Labels: v.Labels, Subpath: v.Subpath}
}

func tmpfsOptions(t *types.ServiceVolumeTmpfs) *mount.TmpfsOptions {
	if t == nil {
		return nil
	}
	return &mount.TmpfsOptions{SizeBytes: int64(t.Size), Mode: os.FileMode(t.Mode)}
}

// fileMounts bind-mounts file-based secrets (at /run/secrets/<name> unless
// an absolute target is given) and configs (at /<name>) read-only, as
// compose does. Secrets and configs from the environment or inline content
// are copied in by compose after create; hawser does not do that yet.
func fileMounts(p *types.Project, svc types.ServiceConfig) ([]mount.Mount, error) {
	var out []mount.Mount
	for _, s := range svc.Secrets {
		def, ok := p.Secrets[s.Source]
		if !ok {
			return nil, fmt.Errorf("secret %q is not defined", s.Source)
		}
		m, err := fileMount("secret", s.Source, types.FileObjectConfig(def), fileTarget(secretsDir, s.Source, s.Target))
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	for _, c := range svc.Configs {
		def, ok := p.Configs[c.Source]
		if !ok {
			return nil, fmt.Errorf("config %q is not defined", c.Source)
		}
		m, err := fileMount("config", c.Source, types.FileObjectConfig(def), fileTarget("/", c.Source, c.Target))
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

func fileTarget(dir, source, target string) string {
	switch {
	case target == "":
		return dir + source
	case path.IsAbs(target):
		return target
	default:
		return dir + target
	}
}

func fileMount(kind, name string, def types.FileObjectConfig, target string) (mount.Mount, error) {
	if reason := fileObjectUnsupported(def); reason != "" {
		return mount.Mount{}, fmt.Errorf("%s %q: %s is not supported", kind, name, reason)
	}
	src, err := hostPath(def.File)
	if err != nil {
		return mount.Mount{}, err
	}
	return mount.Mount{Type: mount.TypeBind, Source: src, Target: target, ReadOnly: true}, nil
}

// fileObjectUnsupported names what keeps a secret or config definition from
// being a plain read-only bind mount of a file, or "" when nothing does.
func fileObjectUnsupported(def types.FileObjectConfig) string {
	switch {
	case bool(def.External):
		return "external"
	case def.Driver != "":
		return "driver"
	case def.TemplateDriver != "":
		return "template_driver"
	case def.Environment != "":
		return "environment"
	case def.Content != "":
		return "content"
	case def.File == "":
		return "a definition without file"
	}
	return ""
}

// setVolumesFrom resolves service references to the ID of a running
// container, keeping an access mode (ro/rw) if one is given.
func setVolumesFrom(_ *types.Project, svc types.ServiceConfig, resolve Resolve, h *container.HostConfig) error {
	for _, vf := range svc.VolumesFrom {
		ref, err := volumesFrom(vf, resolve)
		if err != nil {
			return err
		}
		h.VolumesFrom = append(h.VolumesFrom, ref)
	}
	return nil
}

func volumesFrom(vf string, resolve Resolve) (string, error) {
	if rest, ok := strings.CutPrefix(vf, types.ContainerPrefix); ok {
		return rest, nil
	}
	service, mode, hasMode := strings.Cut(vf, ":")
	id, err := resolveService(resolve, service)
	if err != nil {
		return "", fmt.Errorf("volumes_from %s: %w", vf, err)
	}
	if hasMode {
		return id + ":" + mode, nil
	}
	return id, nil
}

func resolveService(resolve Resolve, service string) (string, error) {
	if resolve == nil {
		return "", fmt.Errorf("no container of service %q to refer to", service)
	}
	id, err := resolve(service)
	if err != nil {
		return "", fmt.Errorf("container of service %q: %w", service, err)
	}
	return id, nil
}

// namespaceRef turns service:x into container:<id of x>.
func namespaceRef(field, ref string, resolve Resolve) (string, error) {
	service, ok := strings.CutPrefix(ref, types.ServicePrefix)
	if !ok {
		return ref, nil
	}
	id, err := resolveService(resolve, service)
	if err != nil {
		return "", fmt.Errorf("%s: %w", field, err)
	}
	return types.ContainerPrefix + id, nil
}

func setNamespaces(_ *types.Project, svc types.ServiceConfig, resolve Resolve, h *container.HostConfig) error {
	ipc, err := namespaceRef("ipc", svc.Ipc, resolve)
	if err != nil {
		return err
	}
	pid, err := namespaceRef("pid", svc.Pid, resolve)
	if err != nil {
		return err
	}
	h.IpcMode, h.PidMode = container.IpcMode(ipc), container.PidMode(pid)
	return nil
}

// networkMode is network_mode with service references resolved, otherwise
// the name of the first network, or none when the service has no network.
func networkMode(p *types.Project, svc types.ServiceConfig, resolve Resolve) (container.NetworkMode, error) {
	if svc.NetworkMode != "" {
		ref, err := namespaceRef("network_mode", svc.NetworkMode, resolve)
		return container.NetworkMode(ref), err
	}
	keys := svc.NetworksByPriority()
	if len(keys) == 0 {
		return network.NetworkNone, nil
	}
	return container.NetworkMode(p.Networks[keys[0]].Name), nil
}

// networking builds the endpoint of the first network by priority (then
// name, as compose orders them) for create, and the others, in that order,
// for connecting afterwards.
func networking(p *types.Project, svc types.ServiceConfig, containerName string) (*network.NetworkingConfig, map[string]*network.EndpointSettings, []string, error) {
	if svc.NetworkMode != "" || len(svc.Networks) == 0 {
		if svc.MacAddress != "" {
			return nil, nil, nil, errors.New("mac_address needs the service to be on a network")
		}
		return nil, nil, nil, nil
	}
	var first *network.NetworkingConfig
	extra := map[string]*network.EndpointSettings{}
	var order []string
	for _, key := range svc.NetworksByPriority() {
		nw, ok := p.Networks[key]
		if !ok {
			return nil, nil, nil, fmt.Errorf("network %q is not defined", key)
		}
		ep, err := endpoint(svc, key, containerName)
		if err != nil {
			return nil, nil, nil, err
		}
		if first != nil {
			extra[nw.Name] = ep
			order = append(order, nw.Name)
			continue
		}
		if err := setServiceMAC(svc, ep); err != nil {
			return nil, nil, nil, err
		}
		first = &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{nw.Name: ep}}
	}
	return first, extra, order, nil
}

// endpoint carries the container name, the service name and the network's
// aliases, as compose registers them.
func endpoint(svc types.ServiceConfig, key, containerName string) (*network.EndpointSettings, error) {
	cfg := svc.Networks[key]
	ep := &network.EndpointSettings{Aliases: []string{containerName}}
	if cfg.ServiceNameAliasEnabled() {
		ep.Aliases = append(ep.Aliases, svc.Name)
	}
	if cfg == nil {
		return ep, nil
	}
	ep.Aliases = append(ep.Aliases, cfg.Aliases...)
	ep.DriverOpts = cfg.DriverOpts
	ep.GwPriority = cfg.GatewayPriority
	var err error
	if ep.IPAMConfig, err = endpointIPAM(cfg); err != nil {
		return nil, fmt.Errorf("network %s: %w", key, err)
	}
	if ep.MacAddress, err = macAddress(cfg.MacAddress); err != nil {
		return nil, fmt.Errorf("network %s: %w", key, err)
	}
	return ep, nil
}

func endpointIPAM(cfg *types.ServiceNetworkConfig) (*network.EndpointIPAMConfig, error) {
	if cfg.Ipv4Address == "" && cfg.Ipv6Address == "" && len(cfg.LinkLocalIPs) == 0 {
		return nil, nil
	}
	ipam := &network.EndpointIPAMConfig{}
	var err error
	if ipam.IPv4Address, err = optionalAddr(cfg.Ipv4Address); err != nil {
		return nil, fmt.Errorf("ipv4_address: %w", err)
	}
	if ipam.IPv6Address, err = optionalAddr(cfg.Ipv6Address); err != nil {
		return nil, fmt.Errorf("ipv6_address: %w", err)
	}
	for _, s := range cfg.LinkLocalIPs {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("link_local_ips: %w", err)
		}
		ipam.LinkLocalIPs = append(ipam.LinkLocalIPs, a)
	}
	return ipam, nil
}

func optionalAddr(s string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, nil
	}
	return netip.ParseAddr(s)
}

func macAddress(s string) (network.HardwareAddr, error) {
	if s == "" {
		return nil, nil
	}
	hw, err := net.ParseMAC(s)
	if err != nil {
		return nil, fmt.Errorf("mac_address: %w", err)
	}
	return network.HardwareAddr(hw), nil
}

// setServiceMAC moves the service-level mac_address to the first network's
// endpoint, refusing a conflict with that network's own, as compose does.
func setServiceMAC(svc types.ServiceConfig, ep *network.EndpointSettings) error {
	mac, err := macAddress(svc.MacAddress)
	if err != nil || mac == nil {
		return err
	}
	if ep.MacAddress != nil && ep.MacAddress.String() != mac.String() {
		return errors.New("mac_address differs from the mac_address of the first network")
	}
	ep.MacAddress = mac
	return nil
}
