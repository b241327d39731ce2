package compose

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/moby/api/types/blkiodev"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"hawser.dev/hawser/reconciler/dockertest"
)

const specProjectName = "spec"

// specProject loads a compose file (and the files it refers to) from a
// temporary directory exactly as compose-go loads it for docker compose.
func specProject(t *testing.T, yaml string, files map[string]string) *types.Project {
	t.Helper()
	return specProjectIn(t, t.TempDir(), specProjectName, yaml, files)
}

func specProjectIn(t *testing.T, dir, name, yaml string, files map[string]string) *types.Project {
	t.Helper()
	files = maps.Clone(files)
	if files == nil {
		files = map[string]string{}
	}
	files["compose.yaml"] = yaml
	for file, content := range files {
		p := filepath.Join(dir, file)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	opts, err := cli.NewProjectOptions([]string{filepath.Join(dir, "compose.yaml")},
		cli.WithName(name), cli.WithWorkingDirectory(dir))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return p
}

// specResolver resolves service s to the ID "id-of-s".
func specResolver(service string) (string, error) {
	if service == "missing" {
		return "", errors.New("no such container")
	}
	return "id-of-" + service, nil
}

func specOf(t *testing.T, p *types.Project, service string) ContainerSpec {
	t.Helper()
	svc, err := p.GetService(service)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewContainerSpec(p, svc, 1, "img:1", nil, specResolver)
	if err != nil {
		t.Fatalf("NewContainerSpec: %v", err)
	}
	return s
}

func specErr(t *testing.T, p *types.Project, service string) error {
	t.Helper()
	svc, err := p.GetService(service)
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewContainerSpec(p, svc, 1, "img:1", nil, specResolver)
	return err
}

func checkEqual[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n got %#v\nwant %#v", what, got, want)
	}
}

func TestContainerIsNamedAfterProjectServiceAndNumberUnlessNamed(t *testing.T) {
	p := specProject(t, `
services:
  web: {image: busybox}
  db: {image: busybox, container_name: the-db}
`, nil)
	svc, _ := p.GetService("web")
	s, err := NewContainerSpec(p, svc, 3, "img:1", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkEqual(t, "name", s.Name, "spec-web-3")
	checkEqual(t, "image", s.Config.Image, "img:1")
	checkEqual(t, "container_name", specOf(t, p, "db").Name, "the-db")
}

func TestCommandAndEntrypointKeepUnsetApartFromEmpty(t *testing.T) {
	p := specProject(t, `
services:
  unset: {image: busybox}
  empty: {image: busybox, command: [], entrypoint: ""}
  shell: {image: busybox, command: echo "a b" c, entrypoint: [/bin/sh, -c]}
`, nil)
	tests := []struct {
		service         string
		cmd, entrypoint []string
	}{
		{"unset", nil, nil},
		{"empty", []string{}, []string{}},
		{"shell", []string{"echo", "a b", "c"}, []string{"/bin/sh", "-c"}},
	}
	for _, tt := range tests {
		t.Run(tt.service, func(t *testing.T) {
			s := specOf(t, p, tt.service)
			checkEqual(t, "cmd", s.Config.Cmd, tt.cmd)
			checkEqual(t, "entrypoint", s.Config.Entrypoint, tt.entrypoint)
		})
	}
}

func TestEnvironmentIsSortedAndIncludesEnvFile(t *testing.T) {
	p := specProject(t, `
services:
  web:
    image: busybox
    env_file: [web.env]
    environment:
      B: from-environment
      A: "1"
      UNSET_ON_HOST:
`, map[string]string{"web.env": "B=from-file\nC=from-file\n"})
	checkEqual(t, "env", specOf(t, p, "web").Config.Env,
		[]string{"A=1", "B=from-environment", "C=from-file", "UNSET_ON_HOST"})
}

func TestCallerLabelsOverrideServiceLabels(t *testing.T) {
	p := specProject(t, `
services:
  web:
    image: busybox
    labels: {app: web, com.docker.compose.project: spoofed}
`, nil)
	svc, _ := p.GetService("web")
	s, err := NewContainerSpec(p, svc, 1, "img:1", map[string]string{"com.docker.compose.project": "spec"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkEqual(t, "labels", s.Config.Labels, map[string]string{"app": "web", "com.docker.compose.project": "spec"})
}

func TestPortsArePublishedOnTheirHostIPAndExposed(t *testing.T) {
	p := specProject(t, `
services:
  web:
    image: busybox
    ports:
      - "127.0.0.1:8000-8001:80-81/udp"
      - "127.0.0.1:9000-9010:90"
      - "3000"
      - "[::1]:6000:6000"
      - {target: 70, published: "7000", host_ip: 127.0.0.1, protocol: tcp}
    expose: ["5000-5001", "6001/udp", 7]
`, nil)
	s := specOf(t, p, "web")
	loopback := netip.MustParseAddr("127.0.0.1")
	checkEqual(t, "bindings", s.Host.PortBindings, network.PortMap{
		network.MustParsePort("80/udp"):   {{HostIP: loopback, HostPort: "8000"}},
		network.MustParsePort("81/udp"):   {{HostIP: loopback, HostPort: "8001"}},
		network.MustParsePort("90/tcp"):   {{HostIP: loopback, HostPort: "9000-9010"}},
		network.MustParsePort("3000/tcp"): {{}},
		network.MustParsePort("6000/tcp"): {{HostIP: netip.MustParseAddr("::1"), HostPort: "6000"}},
		network.MustParsePort("70/tcp"):   {{HostIP: loopback, HostPort: "7000"}},
	})
	var exposed []string
	for p := range s.Config.ExposedPorts {
		exposed = append(exposed, p.String())
	}
	slices.Sort(exposed)
	checkEqual(t, "exposed", exposed, []string{
		"3000/tcp", "5000/tcp", "5001/tcp", "6000/tcp", "6001/udp", "7/tcp", "70/tcp", "80/udp", "81/udp", "90/tcp",
	})
}

func TestVolumesMountLikeCompose(t *testing.T) {
	p := specProject(t, `
services:
  web:
    image: busybox
    volumes:
      - ./data:/data:ro
      - type: bind
        source: ./strict
        target: /strict
        bind: {create_host_path: false}
      - type: bind
        source: ./shared
        target: /shared
        bind: {propagation: rshared}
      - named:/named:nocopy
      - type: volume
        source: ext
        target: /ext
        volume: {subpath: sub}
      - /anonymous
      - type: tmpfs
        target: /scratch
        tmpfs: {size: 1m, mode: 0o1777}
volumes:
  named: {}
  ext: {external: true, name: shared-data}
`, nil)
	s := specOf(t, p, "web")
	dir := p.WorkingDir
	checkEqual(t, "binds", s.Host.Binds, []string{dir + "/data:/data:ro"})
	checkEqual(t, "mounts", s.Host.Mounts, []mount.Mount{
		{Type: mount.TypeBind, Source: dir + "/strict", Target: "/strict", BindOptions: &mount.BindOptions{}},
		{Type: mount.TypeBind, Source: dir + "/shared", Target: "/shared",
			BindOptions: &mount.BindOptions{Propagation: mount.PropagationRShared, CreateMountpoint: true}},
		{Type: mount.TypeVolume, Source: "spec_named", Target: "/named", VolumeOptions: &mount.VolumeOptions{NoCopy: true}},
		{Type: mount.TypeVolume, Source: "shared-data", Target: "/ext", VolumeOptions: &mount.VolumeOptions{Subpath: "sub"}},
		{Type: mount.TypeVolume, Target: "/anonymous", VolumeOptions: &mount.VolumeOptions{}},
		{Type: mount.TypeTmpfs, Target: "/scratch", TmpfsOptions: &mount.TmpfsOptions{SizeBytes: 1 << 20, Mode: 0o1777}},
	})
}

func TestSecretsAndFileConfigsAreMountedReadOnly(t *testing.T) {
	p := specProject(t, `
services:
  web:
    image: busybox
    volumes: ["./override:/etc/app.conf"]
    secrets: [db, {source: api, target: api-key}, {source: tls, target: /etc/tls.key}]
    configs: [site, {source: app, target: /etc/app.conf}, {source: nginx, target: /etc/nginx.conf}]
secrets:
  db: {file: ./db.txt}
  api: {file: ./api.txt}
  tls: {file: ./tls.key}
configs:
  site: {file: ./site.conf}
  app: {file: ./app.conf}
  nginx: {file: ./nginx.conf}
`, nil)
	s := specOf(t, p, "web")
	dir := p.WorkingDir
	ro := func(src, target string) mount.Mount {
		return mount.Mount{Type: mount.TypeBind, Source: dir + "/" + src, Target: target, ReadOnly: true}
	}
	// /etc/app.conf is taken by the volume: a config does not mount over it.
	checkEqual(t, "mounts", s.Host.Mounts, []mount.Mount{
		ro("db.txt", "/run/secrets/db"), ro("api.txt", "/run/secrets/api-key"), ro("tls.key", "/etc/tls.key"),
		ro("site.conf", "/site"), ro("nginx.conf", "/etc/nginx.conf"),
	})
	checkEqual(t, "binds", s.Host.Binds, []string{dir + "/override:/etc/app.conf:rw"})
}

func TestSecretsNotBackedByAFileAreRefused(t *testing.T) {
	p := specProject(t, `
services:
  env: {image: busybox, secrets: [token]}
  inline: {image: busybox, configs: [motd]}
secrets:
  token: {environment: TOKEN}
configs:
  motd: {content: hello}
`, nil)
	for service, want := range map[string]string{"env": "environment", "inline": "content"} {
		err := specErr(t, p, service)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got error %v, want one naming %q", service, err, want)
		}
	}
	svc, _ := p.GetService("env")
	checkEqual(t, "UnsupportedIn", UnsupportedIn(p, svc), []string{"secrets.token: environment"})
}

func TestVolumesFromResolvesServicesAndKeepsTheMode(t *testing.T) {
	p := specProject(t, `
services:
  data: {image: busybox}
  web:
    image: busybox
    volumes_from: [data, "data:ro", "container:legacy", "container:legacy:rw"]
  broken: {image: busybox, volumes_from: [missing]}
  missing: {image: busybox}
`, nil)
	checkEqual(t, "volumes_from", specOf(t, p, "web").Host.VolumesFrom,
		[]string{"id-of-data", "id-of-data:ro", "legacy", "legacy:rw"})
	if err := specErr(t, p, "broken"); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("got %v, want an error naming the unresolved service", err)
	}
}

func TestNetworksAreOrderedByPriorityWithTheFirstAtCreate(t *testing.T) {
	p := specProject(t, `
services:
  web:
    image: busybox
    mac_address: "02:42:ac:11:00:02"
    networks:
      back:
        aliases: [api]
      front:
        priority: 10
        ipv4_address: 172.30.0.10
        aliases: [www]
      zzz:
        priority: 10
        gw_priority: 5
        use_service_name_alias: false
        link_local_ips: [169.254.1.1]
        driver_opts: {com.example: x}
networks:
  back: {}
  front: {name: shared-front}
  zzz: {}
`, nil)
	s := specOf(t, p, "web")
	mac := network.HardwareAddr{0x02, 0x42, 0xac, 0x11, 0x00, 0x02}
	checkEqual(t, "network mode", s.Host.NetworkMode, container.NetworkMode("shared-front"))
	checkEqual(t, "first", s.Network, &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{
		"shared-front": {
			Aliases:    []string{"spec-web-1", "web", "www"},
			IPAMConfig: &network.EndpointIPAMConfig{IPv4Address: netip.MustParseAddr("172.30.0.10")},
			MacAddress: mac,
		},
	}})
	checkEqual(t, "extra", s.Extra, map[string]*network.EndpointSettings{
		"spec_zzz": {
			Aliases:    []string{"spec-web-1"},
			IPAMConfig: &network.EndpointIPAMConfig{LinkLocalIPs: []netip.Addr{netip.MustParseAddr("169.254.1.1")}},
			DriverOpts: map[string]string{"com.example": "x"},
			GwPriority: 5,
		},
		"spec_back": {Aliases: []string{"spec-web-1", "web", "api"}},
	})
	checkEqual(t, "extra order", s.ExtraOrder, []string{"spec_zzz", "spec_back"})
}

func TestServiceWithoutNetworksIsOnTheDefaultNetwork(t *testing.T) {
	p := specProject(t, `
services:
  web: {image: busybox, hostname: www}
`, nil)
	s := specOf(t, p, "web")
	checkEqual(t, "network mode", s.Host.NetworkMode, container.NetworkMode("spec_default"))
	checkEqual(t, "first", s.Network.EndpointsConfig, map[string]*network.EndpointSettings{
		"spec_default": {Aliases: []string{"spec-web-1", "web"}},
	})
	checkEqual(t, "extra", len(s.Extra), 0)
	checkEqual(t, "extra order", len(s.ExtraOrder), 0)
	checkEqual(t, "hostname", s.Config.Hostname, "www")
}

func TestNetworkModeSharesOrReplacesTheNetwork(t *testing.T) {
	p := specProject(t, `
services:
  db: {image: busybox}
  host: {image: busybox, network_mode: host}
  none: {image: busybox, network_mode: none}
  bridge: {image: busybox, network_mode: bridge}
  sidecar: {image: busybox, network_mode: "service:db"}
  legacy: {image: busybox, network_mode: "container:other"}
`, nil)
	for service, want := range map[string]string{
		"host": "host", "none": "none", "bridge": "bridge", "sidecar": "container:id-of-db", "legacy": "container:other",
	} {
		t.Run(service, func(t *testing.T) {
			s := specOf(t, p, service)
			checkEqual(t, "network mode", s.Host.NetworkMode, container.NetworkMode(want))
			if s.Network != nil || s.Extra != nil {
				t.Errorf("endpoints %v %v, want none with network_mode", s.Network, s.Extra)
			}
		})
	}
}

func TestMacAddressWithoutANetworkIsRefused(t *testing.T) {
	p := specProject(t, `
services:
  web: {image: busybox, network_mode: host, mac_address: "02:42:ac:11:00:02"}
`, nil)
	if err := specErr(t, p, "web"); err == nil || !strings.Contains(err.Error(), "mac_address") {
		t.Errorf("got %v, want an error naming mac_address", err)
	}
}

func TestIpcAndPidCanShareAnotherServicesNamespace(t *testing.T) {
	p := specProject(t, `
services:
  db: {image: busybox}
  shared: {image: busybox, ipc: "service:db", pid: "service:db"}
  host: {image: busybox, ipc: shareable, pid: host}
`, nil)
	s := specOf(t, p, "shared")
	checkEqual(t, "ipc", s.Host.IpcMode, container.IpcMode("container:id-of-db"))
	checkEqual(t, "pid", s.Host.PidMode, container.PidMode("container:id-of-db"))
	h := specOf(t, p, "host")
	checkEqual(t, "ipc", h.Host.IpcMode, container.IpcMode("shareable"))
	checkEqual(t, "pid", h.Host.PidMode, container.PidMode("host"))
}

func TestReferenceToAnotherServiceNeedsAResolver(t *testing.T) {
	p := specProject(t, `
services:
  db: {image: busybox}
  web: {image: busybox, network_mode: "service:db"}
`, nil)
	svc, _ := p.GetService("web")
	if _, err := NewContainerSpec(p, svc, 1, "img:1", nil, nil); err == nil {
		t.Error("got no error for a service reference without a resolver")
	}
}

func TestHealthcheckMapsEveryDuration(t *testing.T) {
	p := specProject(t, `
services:
  full:
    image: busybox
    healthcheck:
      test: ["CMD", "true"]
      interval: 10s
      timeout: 2s
      retries: 4
      start_period: 30s
      start_interval: 1s
  shell: {image: busybox, healthcheck: {test: wget -q localhost}}
  off: {image: busybox, healthcheck: {disable: true}}
  none: {image: busybox}
  bad: {image: busybox, healthcheck: {test: ["CMD", "true"], start_interval: 1s}}
`, nil)
	checkEqual(t, "full", specOf(t, p, "full").Config.Healthcheck, &container.HealthConfig{
		Test: []string{"CMD", "true"}, Interval: 10 * time.Second, Timeout: 2 * time.Second,
		Retries: 4, StartPeriod: 30 * time.Second, StartInterval: time.Second,
	})
	checkEqual(t, "shell", specOf(t, p, "shell").Config.Healthcheck.Test, []string{"CMD-SHELL", "wget -q localhost"})
	checkEqual(t, "disable", specOf(t, p, "off").Config.Healthcheck.Test, []string{"NONE"})
	checkEqual(t, "none", specOf(t, p, "none").Config.Healthcheck, (*container.HealthConfig)(nil))
	if err := specErr(t, p, "bad"); err == nil {
		t.Error("start_interval without start_period: got no error")
	}
}

func TestRestartPolicies(t *testing.T) {
	p := specProject(t, `
services:
  unset: {image: busybox}
  "no": {image: busybox, restart: "no"}
  always: {image: busybox, restart: always}
  failure: {image: busybox, restart: "on-failure:3"}
  unless: {image: busybox, restart: unless-stopped}
  deploy:
    image: busybox
    restart: always
    deploy: {restart_policy: {condition: on-failure, max_attempts: 2}}
  any: {image: busybox, deploy: {restart_policy: {condition: any}}}
`, nil)
	tests := map[string]container.RestartPolicy{
		"unset":   {},
		"no":      {Name: container.RestartPolicyDisabled},
		"always":  {Name: container.RestartPolicyAlways},
		"failure": {Name: container.RestartPolicyOnFailure, MaximumRetryCount: 3},
		"unless":  {Name: container.RestartPolicyUnlessStopped},
		"deploy":  {Name: container.RestartPolicyOnFailure, MaximumRetryCount: 2},
		"any":     {Name: container.RestartPolicyAlways},
	}
	for service, want := range tests {
		checkEqual(t, service, specOf(t, p, service).Host.RestartPolicy, want)
	}
}

func TestContainerSettingsAreMapped(t *testing.T) {
	p := specProject(t, `
services:
  web:
    image: busybox
    user: "1000:1000"
    working_dir: /srv
    init: true
    hostname: www
    domainname: example.test
    tty: true
    stdin_open: true
    stop_signal: SIGINT
    stop_grace_period: 1m30s
    privileged: true
    read_only: true
    cap_add: [NET_ADMIN]
    cap_drop: [ALL]
    group_add: [audio]
    oom_score_adj: -500
    shm_size: 64m
    sysctls: {net.core.somaxconn: "1024"}
    tmpfs: [/run, "/cache:size=1m,mode=1777"]
    extra_hosts: ["db=10.0.0.2", "gw:host-gateway"]
    dns: [9.9.9.9, "2620:fe::fe"]
    dns_search: [example.test]
    dns_opt: [ndots:2]
    security_opt: [no-new-privileges, "label:disable", "apparmor=unconfined"]
    logging: {driver: json-file, options: {max-size: 1m}}
    ulimits: {nofile: {soft: 1024, hard: 2048}, nproc: 512}
    devices: ["/dev/fuse:/dev/fuse:rwm"]
    annotations: {com.example: a}
    runtime: runc
    storage_opt: {size: 1G}
    userns_mode: host
    uts: host
    cgroup: private
`, nil)
	s := specOf(t, p, "web")
	c, h := s.Config, s.Host
	checkEqual(t, "user", c.User, "1000:1000")
	checkEqual(t, "working_dir", c.WorkingDir, "/srv")
	checkEqual(t, "init", *h.Init, true)
	checkEqual(t, "hostname", c.Hostname, "www")
	checkEqual(t, "domainname", c.Domainname, "example.test")
	checkEqual(t, "tty", c.Tty, true)
	checkEqual(t, "stdin_open", c.OpenStdin, true)
	checkEqual(t, "stop_signal", c.StopSignal, "SIGINT")
	checkEqual(t, "stop_grace_period", *c.StopTimeout, 90)
	checkEqual(t, "privileged", h.Privileged, true)
	checkEqual(t, "read_only", h.ReadonlyRootfs, true)
	checkEqual(t, "cap_add", h.CapAdd, []string{"NET_ADMIN"})
	checkEqual(t, "cap_drop", h.CapDrop, []string{"ALL"})
	checkEqual(t, "group_add", h.GroupAdd, []string{"audio"})
	checkEqual(t, "oom_score_adj", h.OomScoreAdj, -500)
	checkEqual(t, "shm_size", h.ShmSize, int64(64<<20))
	checkEqual(t, "sysctls", h.Sysctls, map[string]string{"net.core.somaxconn": "1024"})
	checkEqual(t, "tmpfs", h.Tmpfs, map[string]string{"/run": "", "/cache": "size=1m,mode=1777"})
	checkEqual(t, "extra_hosts", h.ExtraHosts, []string{"db:10.0.0.2", "gw:host-gateway"})
	checkEqual(t, "dns", h.DNS, []netip.Addr{netip.MustParseAddr("9.9.9.9"), netip.MustParseAddr("2620:fe::fe")})
	checkEqual(t, "dns_search", h.DNSSearch, []string{"example.test"})
	checkEqual(t, "dns_opt", h.DNSOptions, []string{"ndots:2"})
	checkEqual(t, "security_opt", h.SecurityOpt, []string{"no-new-privileges", "label:disable", "apparmor=unconfined"})
	checkEqual(t, "logging", h.LogConfig, container.LogConfig{Type: "json-file", Config: map[string]string{"max-size": "1m"}})
	checkEqual(t, "ulimits", h.Ulimits, []*container.Ulimit{
		{Name: "nofile", Soft: 1024, Hard: 2048}, {Name: "nproc", Soft: 512, Hard: 512},
	})
	checkEqual(t, "devices", h.Devices, []container.DeviceMapping{
		{PathOnHost: "/dev/fuse", PathInContainer: "/dev/fuse", CgroupPermissions: "rwm"},
	})
	checkEqual(t, "annotations", h.Annotations, map[string]string{"com.example": "a"})
	checkEqual(t, "runtime", h.Runtime, "runc")
	checkEqual(t, "storage_opt", h.StorageOpt, map[string]string{"size": "1G"})
	checkEqual(t, "userns_mode", h.UsernsMode, container.UsernsMode("host"))
	checkEqual(t, "uts", h.UTSMode, container.UTSMode("host"))
	checkEqual(t, "cgroup", h.CgroupnsMode, container.CgroupnsModePrivate)
}

func TestSeccompProfileIsInlinedAndSystemPathsUnconfined(t *testing.T) {
	p := specProject(t, `
services:
  web:
    image: busybox
    security_opt: ["seccomp=./profile.json", "seccomp:unconfined", systempaths=unconfined]
`, map[string]string{"profile.json": "{\n  \"defaultAction\": \"SCMP_ACT_ALLOW\"\n}\n"})
	h := specOf(t, p, "web").Host
	checkEqual(t, "security_opt", h.SecurityOpt,
		[]string{`seccomp={"defaultAction":"SCMP_ACT_ALLOW"}`, "seccomp:unconfined"})
	checkEqual(t, "masked", h.MaskedPaths, []string{})
	checkEqual(t, "read-only paths", h.ReadonlyPaths, []string{})
}

func TestResourceLimitsAndDeployResources(t *testing.T) {
	p := specProject(t, `
services:
  plain:
    image: busybox
    mem_limit: 256m
    mem_reservation: 128m
    memswap_limit: 512m
    mem_swappiness: 10
    cpus: 1.5
    cpu_shares: 512
    cpu_period: 100000
    cpu_quota: 50000
    cpuset: "0"
    pids_limit: 100
    oom_kill_disable: true
    device_cgroup_rules: ["c 1:3 mr"]
    blkio_config:
      weight: 300
      device_read_bps: [{path: /dev/sda, rate: 1mb}]
  deployed:
    image: busybox
    deploy:
      resources:
        limits: {cpus: "0.5", memory: 64m, pids: 50}
        reservations: {memory: 32m}
`, nil)
	r := specOf(t, p, "plain").Host.Resources
	checkEqual(t, "memory", r.Memory, int64(256<<20))
	checkEqual(t, "reservation", r.MemoryReservation, int64(128<<20))
	checkEqual(t, "swap", r.MemorySwap, int64(512<<20))
	checkEqual(t, "swappiness", *r.MemorySwappiness, int64(10))
	checkEqual(t, "cpus", r.NanoCPUs, int64(1.5e9))
	checkEqual(t, "cpu_shares", r.CPUShares, int64(512))
	checkEqual(t, "cpu_period", r.CPUPeriod, int64(100000))
	checkEqual(t, "cpu_quota", r.CPUQuota, int64(50000))
	checkEqual(t, "cpuset", r.CpusetCpus, "0")
	checkEqual(t, "pids_limit", *r.PidsLimit, int64(100))
	checkEqual(t, "oom_kill_disable", *r.OomKillDisable, true)
	checkEqual(t, "device_cgroup_rules", r.DeviceCgroupRules, []string{"c 1:3 mr"})
	checkEqual(t, "blkio weight", r.BlkioWeight, uint16(300))
	checkEqual(t, "blkio read bps", r.BlkioDeviceReadBps, []*blkiodev.ThrottleDevice{{Path: "/dev/sda", Rate: 1 << 20}})

	d := specOf(t, p, "deployed").Host.Resources
	checkEqual(t, "limits.memory", d.Memory, int64(64<<20))
	checkEqual(t, "limits.cpus", d.NanoCPUs, int64(0.5e9))
	checkEqual(t, "limits.pids", *d.PidsLimit, int64(50))
	checkEqual(t, "reservations.memory", d.MemoryReservation, int64(32<<20))
	checkEqual(t, "oom_kill_disable unset", *d.OomKillDisable, false)
}

const engineYAML = `
services:
  data:
    image: busybox
    command: ["true"]
    volumes: [cache:/cache]
  web:
    image: busybox
    command: [sleep, "60"]
    init: true
    user: "0:0"
    working_dir: /srv
    hostname: www
    domainname: example.test
    environment: {A: "1"}
    env_file: [web.env]
    labels: {app: web}
    ports: ["127.0.0.1::80", "127.0.0.1::53/udp"]
    expose: ["8080-8081"]
    volumes:
      - ./data:/data:ro
      - ./created:/created
      - {type: bind, source: ./strict, target: /strict, bind: {create_host_path: false}}
      - named:/named:nocopy
      - {type: tmpfs, target: /scratch, tmpfs: {size: 1m, mode: 0o1777}}
    volumes_from: ["data:ro"]
    networks:
      front: {aliases: [www-alias], priority: 10}
      back: {}
    healthcheck: {test: [CMD, "true"], interval: 5s, timeout: 2s, retries: 3, start_period: 1s}
    restart: on-failure:2
    stop_signal: SIGTERM
    stop_grace_period: 5s
    cap_add: [NET_ADMIN]
    cap_drop: [MKNOD]
    read_only: true
    tmpfs: [/run]
    sysctls: {net.core.somaxconn: "1024"}
    ulimits: {nofile: {soft: 1024, hard: 2048}, nproc: 512}
    extra_hosts: ["db=10.0.0.2"]
    dns: [127.0.0.1]
    dns_search: [example.test]
    dns_opt: [ndots:2]
    security_opt: [no-new-privileges]
    logging: {driver: json-file, options: {max-size: 1m}}
    shm_size: 8m
    mem_limit: 64m
    cpus: 0.5
    pids_limit: 64
    oom_score_adj: 100
    group_add: ["100"]
    devices: ["/dev/null:/dev/null2"]
    secrets: [token]
    configs: [site]
  strict:
    image: busybox
    command: ["true"]
    volumes: [{type: bind, source: ./absent, target: /absent, bind: {create_host_path: false}}]
networks:
  front: {}
  back: {}
volumes:
  named: {}
  cache: {}
secrets:
  token: {file: ./token.txt}
configs:
  site: {file: ./site.conf}
`

// engineProject creates, labelled for removal, the networks and volumes of
// a project as the lead's converge step would.
func engineProject(ctx context.Context, t *testing.T, c *client.Client, p *types.Project, labels map[string]string) {
	t.Helper()
	for _, nw := range p.Networks {
		if _, err := c.NetworkCreate(ctx, nw.Name, client.NetworkCreateOptions{Driver: "bridge", Labels: labels}); err != nil {
			t.Fatalf("network %s: %v", nw.Name, err)
		}
	}
	for _, v := range p.Volumes {
		if _, err := c.VolumeCreate(ctx, client.VolumeCreateOptions{Name: v.Name, Labels: labels}); err != nil {
			t.Fatalf("volume %s: %v", v.Name, err)
		}
	}
}

// engineCreate creates the container of a service and connects it to its
// other networks, as API 1.41 requires.
func engineCreate(ctx context.Context, c *client.Client, p *types.Project, service, image string, labels map[string]string, resolve Resolve) (string, error) {
	svc, err := p.GetService(service)
	if err != nil {
		return "", err
	}
	s, err := NewContainerSpec(p, svc, 1, image, labels, resolve)
	if err != nil {
		return "", err
	}
	res, err := c.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name: s.Name, Config: s.Config, HostConfig: s.Host, NetworkingConfig: s.Network,
	})
	if err != nil {
		return "", err
	}
	for _, name := range s.ExtraOrder {
		if _, err := c.NetworkConnect(ctx, name, client.NetworkConnectOptions{Container: res.ID, EndpointConfig: s.Extra[name]}); err != nil {
			return "", fmt.Errorf("connect %s: %w", name, err)
		}
	}
	return res.ID, nil
}

func TestEngineAcceptsARichService(t *testing.T) {
	c := dockertest.Client(t)
	image := dockertest.Busybox(t, c)
	// The directory goes after the containers that mount it: cleanups run
	// last registered first.
	dir := t.TempDir()
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	dockertest.Cleanup(t, c, "spec-"+suffix)
	labels := map[string]string{dockertest.Label: "spec-" + suffix}
	for _, d := range []string{"data", "strict"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	p := specProjectIn(t, dir, "hawserspec"+suffix, engineYAML, map[string]string{
		"web.env": "B=from-file\n", "token.txt": "s3cret\n", "site.conf": "site\n",
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	engineProject(ctx, t, c, p, labels)

	dataID, err := engineCreate(ctx, c, p, "data", image, labels, nil)
	if err != nil {
		t.Fatalf("create data: %v", err)
	}
	resolve := func(service string) (string, error) {
		if service != "data" {
			return "", fmt.Errorf("unexpected reference to %s", service)
		}
		return dataID, nil
	}
	webID, err := engineCreate(ctx, c, p, "web", image, labels, resolve)
	if err != nil {
		t.Fatalf("create web: %v", err)
	}
	if _, err := c.ContainerStart(ctx, webID, client.ContainerStartOptions{}); err != nil {
		t.Fatalf("start web: %v", err)
	}
	res, err := c.ContainerInspect(ctx, webID, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkEngineContainer(t, p, res.Container, dataID)
	if _, err := os.Stat(filepath.Join(dir, "created")); err != nil {
		t.Errorf("missing bind source was not created: %v", err)
	}

	// create_host_path: false goes through the Mount API, which refuses a
	// missing source instead of creating it.
	if _, err := engineCreate(ctx, c, p, "strict", image, labels, nil); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("strict bind of a missing path: got %v, want the engine to refuse it", err)
	}
}

func checkEngineContainer(t *testing.T, p *types.Project, ct container.InspectResponse, dataID string) {
	t.Helper()
	if ct.State == nil || !ct.State.Running {
		t.Errorf("web is not running: %+v", ct.State)
	}
	loopback := netip.MustParseAddr("127.0.0.1")
	for port, bindings := range ct.NetworkSettings.Ports {
		for _, b := range bindings {
			if b.HostIP != loopback || b.HostPort == "" {
				t.Errorf("port %s published on %s:%s, want 127.0.0.1 and a port", port, b.HostIP, b.HostPort)
			}
		}
	}
	if len(ct.NetworkSettings.Ports[network.MustParsePort("80/tcp")]) != 1 || len(ct.NetworkSettings.Ports[network.MustParsePort("53/udp")]) != 1 {
		t.Errorf("published ports: %v", ct.NetworkSettings.Ports)
	}
	if _, ok := ct.Config.ExposedPorts[network.MustParsePort("8081/tcp")]; !ok {
		t.Errorf("exposed ports: %v", ct.Config.ExposedPorts)
	}
	mounts := map[string]container.MountPoint{}
	for _, m := range ct.Mounts {
		mounts[m.Destination] = m
	}
	for _, dest := range []string{"/data", "/created", "/strict", "/named", "/cache", "/run/secrets/token", "/site"} {
		if _, ok := mounts[dest]; !ok {
			t.Errorf("no mount at %s: %+v", dest, ct.Mounts)
		}
	}
	checkEqual(t, "named volume", mounts["/named"].Name, p.Volumes["named"].Name)
	checkEqual(t, "read-only bind", mounts["/data"].RW, false)
	checkEqual(t, "read-only secret", mounts["/run/secrets/token"].RW, false)
	checkEqual(t, "read-only volumes_from", mounts["/cache"].RW, false)
	checkEqual(t, "volumes_from", ct.HostConfig.VolumesFrom, []string{dataID + ":ro"})
	i := slices.IndexFunc(ct.HostConfig.Mounts, func(m mount.Mount) bool { return m.Target == "/scratch" })
	if i < 0 {
		t.Fatalf("no tmpfs mount at /scratch: %+v", ct.HostConfig.Mounts)
	}
	checkEqual(t, "tmpfs mount", ct.HostConfig.Mounts[i].TmpfsOptions, &mount.TmpfsOptions{SizeBytes: 1 << 20, Mode: 0o1777})
	checkEqual(t, "tmpfs", ct.HostConfig.Tmpfs, map[string]string{"/run": ""})
	checkEqual(t, "healthcheck", ct.Config.Healthcheck, &container.HealthConfig{
		Test: []string{"CMD", "true"}, Interval: 5 * time.Second, Timeout: 2 * time.Second,
		StartPeriod: time.Second, Retries: 3,
	})
	checkEqual(t, "ulimits", ct.HostConfig.Ulimits, []*container.Ulimit{
		{Name: "nofile", Soft: 1024, Hard: 2048}, {Name: "nproc", Soft: 512, Hard: 512},
	})
	checkEqual(t, "label", ct.Config.Labels["app"], "web")
	checkEqual(t, "restart", ct.HostConfig.RestartPolicy, container.RestartPolicy{Name: "on-failure", MaximumRetryCount: 2})
	checkEqual(t, "env has", slices.Contains(ct.Config.Env, "B=from-file") && slices.Contains(ct.Config.Env, "A=1"), true)
	checkEqual(t, "stop timeout", *ct.Config.StopTimeout, 5)
	checkEqual(t, "init", *ct.HostConfig.Init, true)
	checkEqual(t, "hostname", ct.Config.Hostname, "www")
	checkEqual(t, "memory", ct.HostConfig.Memory, int64(64<<20))
	checkEqual(t, "cpus", ct.HostConfig.NanoCPUs, int64(0.5e9))
	checkEqual(t, "pids", *ct.HostConfig.PidsLimit, int64(64))
	checkEqual(t, "sysctls", ct.HostConfig.Sysctls, map[string]string{"net.core.somaxconn": "1024"})
	checkEqual(t, "log driver", ct.HostConfig.LogConfig.Type, "json-file")
	front := ct.NetworkSettings.Networks[p.Networks["front"].Name]
	back := ct.NetworkSettings.Networks[p.Networks["back"].Name]
	if front == nil || back == nil {
		t.Fatalf("networks: %v", maps.Keys(ct.NetworkSettings.Networks))
	}
	checkEqual(t, "network mode", string(ct.HostConfig.NetworkMode), p.Networks["front"].Name)
	for _, alias := range []string{"web", "www-alias"} {
		if !slices.Contains(front.Aliases, alias) {
			t.Errorf("front aliases %v lack %s", front.Aliases, alias)
		}
	}
	if !slices.Contains(back.Aliases, "web") {
		t.Errorf("back aliases %v lack web", back.Aliases)
	}
}
