package preview

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
)

const (
	testSlug    = "feat-x"
	testProject = "shop-feat-x"
)

// checkout makes a checkout root with the compose project in its app/
// directory, so that "../" paths can stay inside the checkout.
func checkout(t *testing.T, compose string) (root, dir string) {
	t.Helper()
	root = filepath.Join(t.TempDir(), "checkout")
	dir = filepath.Join(root, "app")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "compose.yaml"), compose)
	return root, dir
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func load(t *testing.T, dir, name string) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{filepath.Join(dir, "compose.yaml")},
		cli.WithWorkingDirectory(dir), cli.WithName(name))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// isolated loads compose as the preview project and isolates it.
func isolated(t *testing.T, compose string, limits Limits) *types.Project {
	t.Helper()
	root, dir := checkout(t, compose)
	p := load(t, dir, testProject)
	if err := Isolate(p, testSlug, root, limits); err != nil {
		t.Fatal(err)
	}
	return p
}

// reload checks that p is still a project compose-go accepts, as written
// out and read back.
func reload(t *testing.T, p *types.Project) {
	t.Helper()
	raw, err := p.MarshalYAML()
	if err != nil {
		t.Fatal(err)
	}
	_, err = loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  p.WorkingDir,
		ConfigFiles: []types.ConfigFile{{Filename: "isolated.yaml", Content: raw}},
	}, func(o *loader.Options) { o.SetProjectName(p.Name, true) })
	if err != nil {
		t.Fatalf("the isolated project does not load again: %v\n%s", err, raw)
	}
}

func TestIsolatedServicesPublishNoHostPortsAndHaveNoContainerName(t *testing.T) {
	p := isolated(t, `
services:
  web:
    image: busybox:1.36
    container_name: shop-web
    ports: ["8080:80", "127.0.0.1:9000:9000/udp", "3000"]
    expose: ["4000"]
`, Limits{})
	web := p.Services["web"]
	if len(web.Ports) != 0 {
		t.Errorf("ports = %+v, want none", web.Ports)
	}
	if web.ContainerName != "" {
		t.Errorf("container_name = %q, want none", web.ContainerName)
	}
	if !slices.Equal(web.Expose, []string{"4000"}) {
		t.Errorf("expose = %v, want [4000] kept", web.Expose)
	}
}

func TestIsolatedServicesAreLabelledAndClaimNoProductionHost(t *testing.T) {
	p := isolated(t, `
services:
  web:
    image: busybox:1.36
    labels:
      dev.hawser.http.port: "80"
      dev.hawser.http.host: shop.example.com
      dev.hawser.preview: someone-else
      team: checkout
  worker:
    image: busybox:1.36
`, Limits{})
	for name, svc := range p.Services {
		if got := svc.Labels[LabelPreview]; got != testSlug {
			t.Errorf("%s: label %s = %q, want %q", name, LabelPreview, got, testSlug)
		}
	}
	web := p.Services["web"]
	if host, ok := web.Labels["dev.hawser.http.host"]; ok {
		t.Errorf("web keeps the production host %q", host)
	}
	if web.Labels["dev.hawser.http.port"] != "80" || web.Labels["team"] != "checkout" {
		t.Errorf("web lost its other labels: %v", web.Labels)
	}
}

func TestEveryForbiddenSettingIsReportedAtOnce(t *testing.T) {
	root, dir := checkout(t, `
services:
  hostnet:
    image: busybox:1.36
    network_mode: host
    container_name: prod-hostnet
  spaces:
    image: busybox:1.36
    pid: host
    ipc: host
    uts: host
    userns_mode: host
    privileged: true
  joined:
    image: busybox:1.36
    network_mode: container:shop-db-1
    volumes_from: ["container:shop-db-1"]
  bynetwork:
    image: busybox:1.36
    network_mode: shop_backend
  device:
    image: busybox:1.36
    devices: ["/dev/fuse:/dev/fuse"]
  fine:
    image: busybox:1.36
    network_mode: service:device
    pid: service:device
    ipc: shareable
    volumes_from: [device]
    ports: ["8080:80"]
volumes:
  hostdir:
    driver_opts: {type: none, o: bind, device: /srv/shop}
`)
	p := load(t, dir, testProject)
	err := Isolate(p, testSlug, root, Limits{CPUs: 1})
	var iso *IsolationError
	if !errors.As(err, &iso) {
		t.Fatalf("Isolate = %v, want an *IsolationError", err)
	}
	want := map[string][]string{
		"hostnet":   {"network_mode: host"},
		"spaces":    {"ipc: host", "pid: host", "privileged: true", "userns_mode: host", "uts: host"},
		"joined":    {"network_mode: container:shop-db-1", "volumes_from: container:shop-db-1"},
		"bynetwork": {"network_mode: shop_backend"},
		"device":    {"devices: /dev/fuse"},
	}
	for name, problems := range want {
		if !slices.Equal(iso.Services[name], problems) {
			t.Errorf("service %s: problems %q, want %q", name, iso.Services[name], problems)
		}
	}
	if got, ok := iso.Services["fine"]; ok {
		t.Errorf("service fine reported: %q", got)
	}
	if got := iso.Volumes["hostdir"]; len(got) != 1 || !strings.Contains(got[0], "/srv/shop") {
		t.Errorf("volume hostdir: problems %q, want its device named", got)
	}
	for _, s := range []string{`service "hostnet"`, `service "spaces"`, `volume "hostdir"`} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not name %s", err, s)
		}
	}
	if p.Services["hostnet"].ContainerName == "" || len(p.Services["fine"].Ports) == 0 {
		t.Error("a refused project was changed")
	}
}

func TestHostPathsOutsideTheCheckoutAreRefused(t *testing.T) {
	outside := t.TempDir()
	writeFile(t, filepath.Join(outside, "secret.txt"), "hunter2")
	writeFile(t, filepath.Join(outside, "prod.env"), "DB_PASSWORD=hunter2\n")
	writeFile(t, filepath.Join(outside, "Dockerfile"), "FROM busybox:1.36\n")
	for _, tc := range []struct {
		name    string
		service string // the service's attributes, indented by four spaces
		top     string // top-level sections
		setup   func(t *testing.T, root string)
		want    string // a problem that must be reported; "" for none
	}{
		{name: "relative bind in the project", service: "volumes: [./data:/data]"},
		{name: "relative bind elsewhere in the checkout", service: "volumes: [../shared:/shared:ro]"},
		{name: "bind of the checkout itself", service: "volumes: [..:/src]"},
		{name: "bind that does not exist yet", service: "volumes: [./cache/new:/cache]"},
		{name: "symlink within the checkout", service: "volumes: [./link:/data]",
			setup: func(t *testing.T, root string) {
				if err := os.Mkdir(filepath.Join(root, "shared"), 0o755); err != nil {
					t.Fatal(err)
				}
				symlink(t, filepath.Join(root, "shared"), filepath.Join(root, "app", "link"))
			}},
		{name: "secret file in the checkout", service: "secrets: [token]", top: "secrets:\n  token:\n    file: ./token.txt",
			setup: func(t *testing.T, root string) { writeFile(t, filepath.Join(root, "app", "token.txt"), "x") }},
		{name: "absolute host path", service: "volumes: [/etc:/host-etc:ro]", want: "volumes: /etc is outside the checkout"},
		{name: "docker socket", service: "volumes: [/var/run/docker.sock:/var/run/docker.sock]", want: "volumes: /var/run/docker.sock is outside the checkout"},
		{name: "relative path climbing out", service: "volumes: [../../..:/up]", want: "is outside the checkout"},
		{name: "symlink pointing out", service: "volumes: [./escape/sub:/data]", want: "volumes: " + "ROOT/app/escape/sub is outside the checkout",
			setup: func(t *testing.T, root string) { symlink(t, outside, filepath.Join(root, "app", "escape")) }},
		{name: "dangling symlink", service: "volumes: [./dangling:/data]", want: "dangling symlink",
			setup: func(t *testing.T, root string) {
				symlink(t, filepath.Join(outside, "missing"), filepath.Join(root, "app", "dangling"))
			}},
		{name: "secret file outside", service: "secrets: [db]", top: "secrets:\n  db:\n    file: " + filepath.Join(outside, "secret.txt"),
			want: "secrets.db: " + filepath.Join(outside, "secret.txt") + " is outside the checkout"},
		{name: "config file outside", service: "configs: [app]", top: "configs:\n  app:\n    file: " + filepath.Join(outside, "secret.txt"),
			want: "configs.app: "},
		{name: "env_file outside", service: "env_file: [" + filepath.Join(outside, "prod.env") + "]", want: "env_file: "},
		{name: "build context outside", service: "build: " + outside, want: "build.context: " + outside + " is outside the checkout"},
		{name: "dockerfile outside", service: "build: {context: ., dockerfile: " + filepath.Join(outside, "Dockerfile") + "}",
			want: "build.dockerfile: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, dir := checkout(t, "services:\n  app:\n    image: busybox:1.36\n    "+tc.service+"\n"+tc.top+"\n")
			if tc.setup != nil {
				tc.setup(t, root)
			}
			p := load(t, dir, testProject)
			err := Isolate(p, testSlug, root, Limits{})
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Isolate = %v, want the path accepted", err)
				}
				return
			}
			var iso *IsolationError
			if !errors.As(err, &iso) {
				t.Fatalf("Isolate = %v, want an *IsolationError", err)
			}
			want := strings.ReplaceAll(tc.want, "ROOT", root)
			if got := iso.Services["app"]; len(got) != 1 || !strings.Contains(got[0], want) {
				t.Errorf("problems %q, want one containing %q", got, want)
			}
		})
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func TestVolumesAndNetworksBelongToThePreview(t *testing.T) {
	for _, tc := range []struct {
		name     string
		compose  string
		volumes  []string
		networks []string
	}{
		{name: "declared, external and named", compose: `
services:
  db:
    image: busybox:1.36
    volumes: [data:/data, shared:/shared, fixed:/fixed]
    networks: [back, prod, default]
volumes:
  data: {}
  shared: {external: true}
  fixed: {name: shop-db-data}
networks:
  back: {}
  prod: {external: true, name: shop_backend}
`, volumes: []string{"data", "shared", "fixed"}, networks: []string{"back", "prod", "default"}},
		{name: "explicit default network", compose: `
services:
  web:
    image: busybox:1.36
networks:
  default: {name: shop-net, external: true}
`, networks: []string{"default"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, dir := checkout(t, tc.compose)
			prod := load(t, dir, "shop")
			p := load(t, dir, testProject)
			if err := Isolate(p, testSlug, root, Limits{}); err != nil {
				t.Fatal(err)
			}
			reload(t, p)
			for _, key := range tc.volumes {
				v := p.Volumes[key]
				if v.Name == prod.Volumes[key].Name || v.Name != testProject+"_"+key || v.External {
					t.Errorf("volume %s: name %q external %v; production's is %q", key, v.Name, v.External, prod.Volumes[key].Name)
				}
				if v.Labels[LabelPreview] != testSlug {
					t.Errorf("volume %s: labels %v", key, v.Labels)
				}
			}
			for _, key := range tc.networks {
				n := p.Networks[key]
				if n.Name == prod.Networks[key].Name || n.Name != testProject+"_"+key || n.External {
					t.Errorf("network %s: name %q external %v; production's is %q", key, n.Name, n.External, prod.Networks[key].Name)
				}
				if n.Labels[LabelPreview] != testSlug {
					t.Errorf("network %s: labels %v", key, n.Labels)
				}
			}
		})
	}
}

func TestPreviewLimitsCapServicesAndKeepLowerOnes(t *testing.T) {
	const mib = 1 << 20
	p := isolated(t, `
services:
  unlimited:
    image: busybox:1.36
  higher:
    image: busybox:1.36
    deploy: {resources: {limits: {cpus: "2", memory: 1g}, reservations: {memory: 512m}}}
  lower:
    image: busybox:1.36
    deploy: {resources: {limits: {cpus: "0.25", memory: 64m}}}
  short:
    image: busybox:1.36
    cpus: 4
    mem_limit: 2g
    mem_reservation: 1g
  quota:
    image: busybox:1.36
    cpu_quota: 200000
`, Limits{CPUs: 0.5, Memory: 256 * mib})
	reload(t, p)
	for _, tc := range []struct {
		service string
		cpus    float32
		memory  int64
	}{
		{"unlimited", 0.5, 256 * mib},
		{"higher", 0.5, 256 * mib},
		{"lower", 0.25, 64 * mib},
		{"short", 0.5, 256 * mib},
	} {
		svc := p.Services[tc.service]
		lim := svc.Deploy.Resources.Limits
		if float32(lim.NanoCPUs) != tc.cpus || int64(lim.MemoryBytes) != tc.memory {
			t.Errorf("%s: limits cpus %v memory %d, want %v and %d", tc.service, lim.NanoCPUs, lim.MemoryBytes, tc.cpus, tc.memory)
		}
	}
	// compose-go refuses short and long forms that differ, and the engine a
	// reservation above the limit.
	short := p.Services["short"]
	if short.CPUS != 0.5 || short.MemLimit != 256*mib || short.MemReservation != 256*mib {
		t.Errorf("short: cpus %v mem_limit %d mem_reservation %d, want them capped too", short.CPUS, short.MemLimit, short.MemReservation)
	}
	if r := p.Services["higher"].Deploy.Resources.Reservations.MemoryBytes; r != 256*mib {
		t.Errorf("higher: reservation %d, want it lowered to the limit", r)
	}
	// The engine refuses a CPU limit next to a CFS quota.
	quota := p.Services["quota"]
	if quota.CPUQuota != 50_000 || quota.Deploy.Resources.Limits.NanoCPUs != 0 {
		t.Errorf("quota: cpu_quota %d cpus %v, want the quota lowered to 50000 and no cpus", quota.CPUQuota, quota.Deploy.Resources.Limits.NanoCPUs)
	}
}

func TestZeroLimitsLeaveResourcesAlone(t *testing.T) {
	p := isolated(t, `
services:
  web:
    image: busybox:1.36
  db:
    image: busybox:1.36
    mem_limit: 2g
`, Limits{})
	if p.Services["web"].Deploy != nil {
		t.Errorf("web: deploy %+v, want none", p.Services["web"].Deploy)
	}
	if db := p.Services["db"]; db.MemLimit != 2<<30 || db.Deploy != nil {
		t.Errorf("db: mem_limit %d deploy %+v, want 2g and no deploy", db.MemLimit, db.Deploy)
	}
}
