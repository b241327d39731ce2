package compose

import (
	"slices"
	"testing"

	"github.com/compose-spec/compose-go/v2/schema"
	"github.com/compose-spec/compose-go/v2/tree"
)

func TestServiceUsingOnlySupportedFieldsHasNothingUnsupported(t *testing.T) {
	p := specProject(t, `
x-common: &common
  image: busybox
services:
  db: {image: busybox}
  web:
    <<: *common
    x-hawser: anything
    build: {context: .}
    pull_policy: missing
    container_name: web
    profiles: [app]
    depends_on: [db]
    deploy:
      mode: replicated
      replicas: 1
      resources:
        limits: {cpus: "1", memory: 64m, pids: 10}
        reservations: {memory: 32m}
      restart_policy: {condition: on-failure, max_attempts: 3}
    env_file: [web.env]
    environment: [A=1]
    labels: [a=b]
    command: ["true"]
    entrypoint: [sh]
    healthcheck: {test: [CMD, "true"], interval: 1s, timeout: 1s, retries: 1, start_period: 1s}
    logging: {driver: json-file, options: {max-size: 1m}}
    ports: ["127.0.0.1:80:80", {target: 81, published: "81", host_ip: 127.0.0.1, protocol: tcp, mode: host, name: web, app_protocol: http}]
    expose: [82]
    networks:
      front: {aliases: [www], priority: 1, ipv4_address: 172.30.0.2, gw_priority: 1, driver_opts: {a: b}}
    volumes:
      - ./data:/data:ro,z
      - {type: bind, source: ./x, target: /x, bind: {create_host_path: false, propagation: rslave, recursive: disabled}}
      - {type: volume, source: v, target: /v, read_only: true, volume: {nocopy: true, subpath: s, labels: {a: b}}}
      - {type: tmpfs, target: /t, tmpfs: {size: 1m, mode: 0o700}}
    volumes_from: [db]
    secrets: [{source: s, target: s}]
    configs: [{source: c, target: /c}]
    ulimits: {nofile: {soft: 1, hard: 2}}
    devices: [/dev/null]
    blkio_config: {weight: 10}
    tmpfs: /run
    sysctls: [a=b]
    cap_add: [ALL]
    user: nobody
    init: true
    restart: always
    stop_grace_period: 1s
    tty: true
    stdin_open: true
networks:
  front: {}
volumes:
  v: {}
secrets:
  s: {file: ./s}
configs:
  c: {file: ./c}
`, map[string]string{"web.env": "B=2\n"})
	// The profile is not enabled: the service is loaded but disabled.
	svc, ok := p.DisabledServices["web"]
	if !ok {
		t.Fatal("service web not loaded")
	}
	if got := UnsupportedIn(p, svc); len(got) != 0 {
		t.Errorf("Unsupported = %q, want nothing", got)
	}
}

func TestUnsupportedNamesEachFieldThatIsSet(t *testing.T) {
	p := specProject(t, `
services:
  swarm:
    image: busybox
    deploy:
      mode: global
      labels: {a: b}
      placement: {constraints: [node.role==manager]}
      update_config: {parallelism: 1}
      resources:
        limits: {cpus: "1"}
        reservations: {cpus: "0.5", devices: [{capabilities: [gpu]}]}
      restart_policy: {condition: any, delay: 5s}
  legacy:
    image: busybox
    cgroup_parent: /custom
    links: [swarm]
    platform: linux/amd64
    gpus: all
    isolation: default
    umask: "0022"
    networks:
      default: {interface_name: eth7}
    secrets: [{source: s, uid: "1000"}]
    volumes: [{type: image, source: busybox, target: /img}]
    develop: {watch: [{path: ., action: sync, target: /app}]}
secrets:
  s: {file: ./s}
`, nil)
	tests := map[string][]string{
		"swarm": {
			"deploy.labels", "deploy.mode: global", "deploy.placement",
			"deploy.resources.reservations.cpus", "deploy.resources.reservations.devices",
			"deploy.restart_policy.delay", "deploy.update_config",
		},
		"legacy": {
			"cgroup_parent", "develop", "gpus", "isolation", "links", "networks.default.interface_name",
			"platform", "secrets[].uid", "umask", "volumes[].type: image",
		},
	}
	for service, want := range tests {
		svc, err := p.GetService(service)
		if err != nil {
			t.Fatal(err)
		}
		if got := Unsupported(svc); !slices.Equal(got, want) {
			t.Errorf("%s:\n got %q\nwant %q", service, got, want)
		}
	}
}

// A typo in the supported list would silently accept nothing and reject a
// supported attribute; every entry must name an attribute of the
// specification.
func TestSupportedAttributesAreAttributesOfTheSpecification(t *testing.T) {
	spec := map[tree.Path]bool{}
	for _, p := range schema.AttributePaths() {
		spec[p] = true
	}
	for _, p := range supportedAttributes() {
		if !spec[tree.Path("services.*."+p)] {
			t.Errorf("%s is not a service attribute of the compose specification", p)
		}
	}
}

func TestAPIRequirementsNameWhatOldEnginesIgnore(t *testing.T) {
	p := specProject(t, `
services:
  old: {image: busybox, healthcheck: {test: [CMD, "true"]}}
  new:
    image: busybox
    annotations: {a: b}
    mac_address: "02:42:ac:11:00:02"
    healthcheck: {test: [CMD, "true"], start_period: 1s, start_interval: 1s}
    networks:
      front: {gw_priority: 1, mac_address: "02:42:ac:11:00:02"}
    volumes:
      - {type: volume, source: v, target: /v, volume: {subpath: s}}
      - {type: bind, source: ., target: /b, bind: {recursive: readonly}}
networks:
  front: {}
volumes:
  v: {}
`, nil)
	old, _ := p.GetService("old")
	if got := APIRequirements(old); len(got) != 0 {
		t.Errorf("old: got %v, want none", got)
	}
	svc, _ := p.GetService("new")
	checkEqual(t, "new", APIRequirements(svc), []APIRequirement{
		{"annotations", "1.43"},
		{"healthcheck.start_interval", "1.44"},
		{"mac_address", "1.44"},
		{"networks.front.mac_address", "1.44"},
		{"networks.front.gw_priority", "1.48"},
		{"volumes[].volume.subpath", "1.45"},
		{"volumes[].bind.recursive", "1.44"},
	})
}
