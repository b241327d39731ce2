package main

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

const testID = "3eaf06fc8b6049f86e4bf9aa2b655077123b9953338b5f5d32b5849d39196861"

func TestOwnContainerIDComesFromTheHostnameMount(t *testing.T) {
	inContainer := `107 80 0:52 / / rw,relatime master:41 - overlay overlay rw
124 107 254:0 /var/lib/docker/containers/` + testID + `/resolv.conf /etc/resolv.conf rw,relatime - ext4 /dev/vda rw
125 107 254:0 /var/lib/docker/containers/` + testID + `/hostname /etc/hostname rw,relatime - ext4 /dev/vda rw
`
	if got := containerIDFromMountinfo(strings.NewReader(inContainer)); got != testID {
		t.Errorf("in a container: got %q, want %q", got, testID)
	}
	// On the host, the engine's mounts of other containers are listed too,
	// but none of them is /etc/hostname.
	onHost := `30 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
210 30 0:60 / /var/lib/docker/containers/` + testID + `/mounts/shm rw - tmpfs shm rw
`
	if got := containerIDFromMountinfo(strings.NewReader(onHost)); got != "" {
		t.Errorf("on the host: got %q, want none", got)
	}
}

// oldHawser is a container as the engine reports it: the image's settings
// merged with those it was created with.
func oldHawser() (container.InspectResponse, image.InspectResponse) {
	tcp8080, _ := network.ParsePort("8080/tcp")
	tcp9999, _ := network.ParsePort("9999/tcp")
	imageHealth := &container.HealthConfig{Test: []string{"CMD", "/hawser", "health"}, Interval: 30 * time.Second}
	img := image.InspectResponse{Config: &dockerspec.DockerOCIImageConfig{
		ImageConfig: ocispec.ImageConfig{
			User: "65532:65532", Entrypoint: []string{"/hawser"}, Cmd: []string{"serve"},
			Env:          []string{"PATH=/bin"},
			Labels:       map[string]string{"org.opencontainers.image.version": "v1"},
			ExposedPorts: map[string]struct{}{"8080/tcp": {}},
			Volumes:      map[string]struct{}{"/state": {}},
		},
		DockerOCIImageConfigExt: dockerspec.DockerOCIImageConfigExt{Healthcheck: imageHealth},
	}}
	old := container.InspectResponse{
		ID: testID, Name: "/hawserd-hawser-1", Image: "sha256:old",
		Config: &container.Config{
			Hostname: testID[:12], Image: "registry.example/hawser:edge",
			User: "65532:65532", Entrypoint: []string{"/hawser"}, Cmd: []string{"serve"},
			Env:          []string{"PATH=/bin", "DOCKER_HOST=unix:///run/docker.sock"},
			Labels:       map[string]string{"org.opencontainers.image.version": "v1", "com.docker.compose.service": "hawser"},
			ExposedPorts: network.PortSet{tcp8080: {}, tcp9999: {}},
			Volumes:      map[string]struct{}{"/state": {}},
			Healthcheck:  imageHealth,
		},
		HostConfig: &container.HostConfig{
			NetworkMode:   "hawser",
			RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyUnlessStopped},
			GroupAdd:      []string{"998"},
			Binds:         []string{"/var/run/docker.sock:/var/run/docker.sock"},
			PortBindings:  network.PortMap{tcp8080: {{HostPort: "80"}}},
		},
		Mounts: []container.MountPoint{
			{Type: mount.TypeBind, Source: "/var/run/docker.sock", Destination: "/var/run/docker.sock"},
			{Type: mount.TypeVolume, Name: strings.Repeat("ab", 32), Destination: "/state"},
		},
		NetworkSettings: &container.NetworkSettings{Networks: map[string]*network.EndpointSettings{
			"hawser":  {NetworkID: "n1", Aliases: []string{"hawser", testID[:12]}, EndpointID: "e1"},
			"metrics": {NetworkID: "n2", Aliases: []string{"hawser", testID[:12]}},
		}},
	}
	return old, img
}

func TestSuccessorKeepsWhatTheContainerWasCreatedWith(t *testing.T) {
	old, img := oldHawser()
	opts, extra := successorOptions(old, img)
	cfg, host := opts.Config, opts.HostConfig
	if opts.Name != "hawserd-hawser-1" || cfg.Image != "registry.example/hawser:edge" {
		t.Errorf("name %q, image %q: want the old name and the tag", opts.Name, cfg.Image)
	}
	if !slices.Equal(cfg.Env, []string{"DOCKER_HOST=unix:///run/docker.sock"}) {
		t.Errorf("env %q: want only what the container set", cfg.Env)
	}
	if len(cfg.Labels) != 1 || cfg.Labels["com.docker.compose.service"] != "hawser" {
		t.Errorf("labels %v: want compose's, not the image's", cfg.Labels)
	}
	if len(cfg.ExposedPorts) != 1 || len(cfg.Volumes) != 0 {
		t.Errorf("exposed %v, volumes %v: want 9999/tcp and none", cfg.ExposedPorts, cfg.Volumes)
	}
	if cfg.Cmd != nil || cfg.Entrypoint != nil || cfg.User != "" || cfg.Healthcheck != nil || cfg.Hostname != "" {
		t.Errorf("the image's command, user, healthcheck and the old short ID as hostname were kept: %+v", cfg)
	}
	if host.RestartPolicy.Name != container.RestartPolicyUnlessStopped || len(host.PortBindings) != 1 || !slices.Equal(host.GroupAdd, []string{"998"}) {
		t.Errorf("host config lost restart policy, ports or groups: %+v", host)
	}
	if len(host.Mounts) != 1 || host.Mounts[0].Source != strings.Repeat("ab", 32) || host.Mounts[0].Target != "/state" {
		t.Errorf("mounts %+v: want the anonymous state volume again", host.Mounts)
	}
	if old.Config.Cmd == nil || len(old.Config.Labels) != 2 {
		t.Error("the old container's config was changed")
	}
	ep := opts.NetworkingConfig.EndpointsConfig["hawser"]
	if ep == nil || !slices.Equal(ep.Aliases, []string{"hawser"}) || ep.EndpointID != "" {
		t.Errorf("endpoint on the network mode's network: %+v, want alias hawser only and no runtime data", ep)
	}
	if len(extra) != 1 || extra["metrics"] == nil {
		t.Errorf("other networks: %v, want metrics", extra)
	}
}

func TestSuccessorKeepsAHealthcheckTheContainerChanged(t *testing.T) {
	old, img := oldHawser()
	faster := *old.Config.Healthcheck
	faster.Interval = time.Second
	old.Config.Healthcheck = &faster
	opts, _ := successorOptions(old, img)
	if opts.Config.Healthcheck == nil || opts.Config.Healthcheck.Interval != time.Second {
		t.Errorf("healthcheck %+v, want the container's own", opts.Config.Healthcheck)
	}
}

func TestHandoverContainerPublishesNothingAndIsNoComposeService(t *testing.T) {
	old, _ := oldHawser()
	opts := handoverOptions(old, "/hawser", "sha256:0123456789abcdef", "/state/self-update.json")
	cfg, host := opts.Config, opts.HostConfig
	if opts.Name != "hawserd-hawser-1-handover-0123456789ab" {
		t.Errorf("name %q", opts.Name)
	}
	if cfg.Image != "sha256:old" || !slices.Equal(cfg.Cmd, []string{"handover", testID, "sha256:0123456789abcdef", "/state/self-update.json"}) {
		t.Errorf("image %q, cmd %q: want the old image running the handover", cfg.Image, cfg.Cmd)
	}
	if _, ok := cfg.Labels["com.docker.compose.service"]; ok || cfg.Labels[labelHandover] != testID {
		t.Errorf("labels %v", cfg.Labels)
	}
	if !host.AutoRemove || len(host.PortBindings) != 0 || host.RestartPolicy.Name != "" || len(host.Mounts) != 1 || len(host.Binds) != 1 {
		t.Errorf("host config %+v: want removed when done, no ports, no restart, the socket and state", host)
	}
}

func TestSuccessorState(t *testing.T) {
	running := &container.State{Status: container.StateRunning, Running: true}
	health := func(s container.HealthStatus) *container.State {
		return &container.State{Status: container.StateRunning, Running: true, Health: &container.Health{Status: s,
			Log: []*container.HealthcheckResult{{Output: "connection refused\n"}}}}
	}
	cases := []struct {
		name     string
		st       *container.State
		restarts int
		settled  bool
		up       bool
		reason   string
	}{
		{"healthy", health(container.Healthy), 0, false, true, ""},
		{"starting", health(container.Starting), 0, true, false, ""},
		{"unhealthy", health(container.Unhealthy), 0, false, false, "unhealthy: connection refused"},
		{"no healthcheck, settling", running, 0, false, false, ""},
		{"no healthcheck, settled", running, 0, true, true, ""},
		{"restarted once", running, 1, true, false, "restarting (exit code 0)"},
		{"exited", &container.State{Status: container.StateExited, ExitCode: 1}, 0, true, false, "exited with code 1"},
	}
	for _, tc := range cases {
		up, reason := successorState(container.InspectResponse{State: tc.st, RestartCount: tc.restarts}, tc.settled)
		if up != tc.up || reason != tc.reason {
			t.Errorf("%s: got (%v, %q), want (%v, %q)", tc.name, up, reason, tc.up, tc.reason)
		}
	}
}

func TestHealthWaitCoversStartPeriodAndRetries(t *testing.T) {
	image := &container.HealthConfig{Test: []string{"CMD", "/hawser", "health"}, Interval: 30 * time.Second, Timeout: 5 * time.Second, StartPeriod: 20 * time.Second, Retries: 3}
	if got, want := healthWait(image), 20*time.Second+4*35*time.Second; got != want {
		t.Errorf("deployment image's healthcheck: %s, want %s", got, want)
	}
	if got, want := healthWait(&container.HealthConfig{Test: []string{"CMD", "true"}}), 4*time.Minute; got != want {
		t.Errorf("engine defaults: %s, want %s", got, want)
	}
	if got := healthWait(&container.HealthConfig{Test: []string{"NONE"}}); got <= successorSettle {
		t.Errorf("without a healthcheck: %s, want more than the settle time", got)
	}
}

func TestAttemptRecordKeepsTheResult(t *testing.T) {
	path := filepath.Join(t.TempDir(), selfUpdateFile)
	if _, ok, err := readAttempt(path); ok || err != nil {
		t.Fatalf("no record yet: got %v, %v", ok, err)
	}
	if err := noteAttempt(path, resultRolledBack, "late"); err == nil {
		t.Error("a result without an attempt was recorded")
	}
	want := attempt{Digest: "sha256:d2", From: "sha256:i1", To: "sha256:i2", Started: time.Now().UTC().Round(time.Second)}
	if err := writeAttempt(path, want); err != nil {
		t.Fatal(err)
	}
	if err := noteAttempt(path, resultRolledBack, "successor: exited with code 1"); err != nil {
		t.Fatal(err)
	}
	got, ok, err := readAttempt(path)
	want.Result, want.Reason = resultRolledBack, "successor: exited with code 1"
	if !ok || err != nil || got != want {
		t.Errorf("got %+v (%v, %v), want %+v", got, ok, err, want)
	}
}
