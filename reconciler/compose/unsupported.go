package compose

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/tree"
	"github.com/compose-spec/compose-go/v2/types"
)

// supportedAttributes are the service attributes NewContainerSpec maps, plus
// those the caller handles (build, pull, scale, dependencies, profiles,
// container_name) and those compose-go has already resolved into others
// (env_file, label_file, extends) or that only matter to an attached
// `docker compose up` (attach). Paths use compose-go's tree syntax: a listed
// path accepts its whole value; anything else is unsupported unless a
// listed path lies below it. Keep it to leaves where the value is a
// structure, so an attribute added to the specification is reported until
// it is deliberately wired in.
func supportedAttributes() []tree.Path {
	return []tree.Path{
		// handled by the caller or already resolved by compose-go
		"attach", "build", "container_name", "depends_on", "deploy.replicas", "env_file", "extends",
		"label_file", "profiles", "pull_policy", "pull_refresh_after", "scale",
		// the container
		"annotations", "cap_add", "cap_drop", "cgroup", "command", "domainname", "entrypoint",
		"environment", "group_add", "hostname", "image", "init", "ipc", "labels", "pid",
		"privileged", "read_only", "runtime", "security_opt", "shm_size", "stdin_open",
		"stop_grace_period", "stop_signal", "storage_opt", "sysctls", "tmpfs", "tty", "user",
		"userns_mode", "uts", "working_dir", "restart",
		"deploy.mode", "deploy.restart_policy.condition", "deploy.restart_policy.max_attempts",
		"healthcheck.test", "healthcheck.interval", "healthcheck.timeout", "healthcheck.retries",
		"healthcheck.start_period", "healthcheck.start_interval", "healthcheck.disable",
		"logging.driver", "logging.options",
		// resources
		"blkio_config.weight", "blkio_config.weight_device", "blkio_config.device_read_bps",
		"blkio_config.device_read_iops", "blkio_config.device_write_bps", "blkio_config.device_write_iops",
		"cpu_period", "cpu_quota", "cpu_rt_period", "cpu_rt_runtime", "cpu_shares", "cpus", "cpuset",
		"device_cgroup_rules", "devices.[].source", "devices.[].target", "devices.[].permissions",
		"mem_limit", "mem_reservation", "mem_swappiness", "memswap_limit", "oom_kill_disable",
		"oom_score_adj", "pids_limit", "ulimits",
		"deploy.resources.limits.cpus", "deploy.resources.limits.memory", "deploy.resources.limits.pids",
		"deploy.resources.reservations.memory",
		// networking
		"dns", "dns_opt", "dns_search", "expose", "extra_hosts", "mac_address", "network_mode",
		"networks.*.aliases", "networks.*.driver_opts", "networks.*.gw_priority",
		"networks.*.ipv4_address", "networks.*.ipv6_address", "networks.*.link_local_ips",
		"networks.*.mac_address", "networks.*.priority", "networks.*.use_service_name_alias",
		"ports.[].name", "ports.[].mode", "ports.[].host_ip", "ports.[].target", "ports.[].published",
		"ports.[].protocol", "ports.[].app_protocol",
		// storage
		"volumes_from",
		"volumes.[].type", "volumes.[].source", "volumes.[].target", "volumes.[].read_only",
		"volumes.[].consistency", "volumes.[].bind.selinux", "volumes.[].bind.propagation",
		"volumes.[].bind.create_host_path", "volumes.[].bind.recursive", "volumes.[].volume.labels",
		"volumes.[].volume.nocopy", "volumes.[].volume.subpath", "volumes.[].tmpfs.size",
		"volumes.[].tmpfs.mode",
		"secrets.[].source", "secrets.[].target", "configs.[].source", "configs.[].target",
	}
}

// Unsupported names every attribute of svc that is set but that hawser does
// not map onto the container, sorted, so that nothing is dropped silently.
// Names are compose paths such as "deploy.placement", "volumes[].image" or
// "networks.front.interface_name". Extensions (x-*) are never reported.
func Unsupported(svc types.ServiceConfig) []string {
	raw, err := json.Marshal(svc)
	if err != nil {
		return []string{fmt.Sprintf("(service does not encode: %v)", err)}
	}
	var model map[string]any
	if err := json.Unmarshal(raw, &model); err != nil {
		return []string{fmt.Sprintf("(service does not decode: %v)", err)}
	}
	found := map[string]bool{}
	walkUnsupported(model, "", tree.NewMatcher(supportedAttributes()...), found)
	for _, name := range unsupportedValues(svc) {
		found[name] = true
	}
	return slices.Sorted(maps.Keys(found))
}

// walkUnsupported reports every set attribute below p that no supported
// path accepts. Empty values count as unset: the encoding of a service
// carries empty structures for attributes nobody wrote.
func walkUnsupported(value any, p tree.Path, supported *tree.Matcher, found map[string]bool) {
	switch v := value.(type) {
	case map[string]any:
		for k, e := range v {
			walkAttribute(e, p.Next(k), supported, found)
		}
	case []any:
		for _, e := range v {
			walkUnsupported(e, p.Next(tree.PathMatchList), supported, found)
		}
	}
}

func walkAttribute(value any, p tree.Path, supported *tree.Matcher, found map[string]bool) {
	switch {
	case isEmpty(value), supported.Matches(p):
	case supported.MayContain(p):
		walkUnsupported(value, p, supported, found)
	default:
		found[displayPath(p)] = true
	}
}

func isEmpty(v any) bool {
	switch v := v.(type) {
	case nil:
		return true
	case map[string]any:
		return len(v) == 0
	}
	return false
}

func displayPath(p tree.Path) string {
	return strings.ReplaceAll(p.String(), "."+tree.PathMatchList, "[]")
}

// unsupportedValues reports attributes that are supported for some values
// only.
func unsupportedValues(svc types.ServiceConfig) []string {
	var out []string
	for _, v := range svc.Volumes {
		switch v.Type {
		case types.VolumeTypeBind, types.VolumeTypeVolume, types.VolumeTypeTmpfs:
		default:
			out = append(out, "volumes[].type: "+v.Type)
		}
	}
	// Every service is a replicated one on a single engine; global mode
	// would need one container per node.
	if svc.Deploy != nil && svc.Deploy.Mode != "" && svc.Deploy.Mode != "replicated" {
		out = append(out, "deploy.mode: "+svc.Deploy.Mode)
	}
	return out
}

// UnsupportedIn is Unsupported plus what only the project can tell: the
// secrets and configs svc uses whose definitions are not plain files
// (environment, content, external, driver), which hawser does not create.
func UnsupportedIn(p *types.Project, svc types.ServiceConfig) []string {
	out := Unsupported(svc)
	for _, s := range svc.Secrets {
		if reason := fileObjectUnsupported(types.FileObjectConfig(p.Secrets[s.Source])); reason != "" {
			out = append(out, fmt.Sprintf("secrets.%s: %s", s.Source, reason))
		}
	}
	for _, c := range svc.Configs {
		if reason := fileObjectUnsupported(types.FileObjectConfig(p.Configs[c.Source])); reason != "" {
			out = append(out, fmt.Sprintf("configs.%s: %s", c.Source, reason))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// APIRequirement is an attribute that the engine honours only from an API
// version on; older engines ignore it without an error.
type APIRequirement struct {
	// Attribute is the compose path, as Unsupported names them.
	Attribute string
	// MinAPI is the first Docker Engine API version that honours it.
	MinAPI string
}

// APIRequirements lists the attributes of svc that need an API version newer
// than 1.41, so a caller that negotiated an older one can refuse them
// instead of creating a container without them.
func APIRequirements(svc types.ServiceConfig) []APIRequirement {
	var out []APIRequirement
	add := func(attr, version string) { out = append(out, APIRequirement{Attribute: attr, MinAPI: version}) }
	if len(svc.Annotations) > 0 {
		add("annotations", "1.43")
	}
	if svc.HealthCheck != nil && svc.HealthCheck.StartInterval != nil {
		add("healthcheck.start_interval", "1.44")
	}
	if svc.MacAddress != "" {
		add("mac_address", "1.44")
	}
	for _, name := range slices.Sorted(maps.Keys(svc.Networks)) {
		if n := svc.Networks[name]; n != nil && n.MacAddress != "" {
			add("networks."+name+".mac_address", "1.44")
		}
		if n := svc.Networks[name]; n != nil && n.GatewayPriority != 0 {
			add("networks."+name+".gw_priority", "1.48")
		}
	}
	for _, v := range svc.Volumes {
		if v.Bind != nil && (v.Bind.Recursive == "writable" || v.Bind.Recursive == "readonly") {
			add("volumes[].bind.recursive", "1.44")
		}
		if v.Volume != nil && v.Volume.Subpath != "" {
			add("volumes[].volume.subpath", "1.45")
		}
	}
	return out
}
