package converge

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/moby/moby/api/types/container"

	"hawser.dev/hawser/reconciler/compose"
)

const planCompose = `
services:
  db:
    image: busybox:1.36
    environment: {LEVEL: "${LEVEL:-1}"}
  app:
    image: busybox:1.36
    depends_on:
      db: {condition: service_started, restart: true}
  sidecar:
    image: busybox:1.36
    network_mode: "service:app"
  web:
    image: busybox:1.36
    scale: 2
    depends_on: [app]
    restart: always
`

func desired(t *testing.T, env map[string]string) *Desired {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(planCompose), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := compose.Load(context.Background(), compose.Source{Dir: dir, Name: "proj", Env: env})
	if err != nil {
		t.Fatal(err)
	}
	imgs := map[string]Image{}
	for name := range p.Services {
		imgs[name] = Image{Ref: "busybox:1.36", ID: "sha256:one"}
	}
	d, err := NewDesired(context.Background(), p, imgs, "c1", dir)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// running returns the containers a successful apply of d leaves behind.
func running(d *Desired) []container.Summary {
	var out []container.Summary
	for _, name := range d.Order {
		s := d.Services[name]
		for n := 1; n <= s.Replicas; n++ {
			out = append(out, summary(d, name, n))
		}
	}
	return out
}

func summary(d *Desired, service string, n int) container.Summary {
	s := d.Services[service]
	return container.Summary{
		ID:    service + strconv.Itoa(n),
		Names: []string{"/proj-" + service + "-" + strconv.Itoa(n)},
		State: container.StateRunning,
		Labels: map[string]string{
			LabelProject: "proj", LabelService: service, LabelNumber: strconv.Itoa(n), LabelOneoff: "False",
			LabelConfigHash: s.Fingerprint.Hash, LabelConfigKeys: s.Fingerprint.EncodeKeys(), LabelImage: s.Image.ID,
		},
	}
}

// reasons flattens a plan to service -> reasons, in plan order.
func reasons(p Plan) map[string][]string {
	out := map[string][]string{}
	for _, s := range p.Services {
		for _, r := range s.Replace {
			out[s.Name] = append(out[s.Name], r.Reason.String())
		}
	}
	return out
}

func TestOrderFollowsDependencies(t *testing.T) {
	d := desired(t, nil)
	pos := func(s string) int { return slices.Index(d.Order, s) }
	if !(pos("db") < pos("app") && pos("app") < pos("sidecar") && pos("app") < pos("web")) {
		t.Fatalf("order = %v", d.Order)
	}
}

func TestFirstDeployCreatesEveryReplica(t *testing.T) {
	d := desired(t, nil)
	got := reasons(NewPlan(d, nil))
	if len(got) != 4 || len(got["web"]) != 2 || got["db"][0] != ReasonMissing {
		t.Fatalf("plan = %v", got)
	}
}

func TestConvergedProjectPlansNothing(t *testing.T) {
	d := desired(t, nil)
	if p := NewPlan(d, running(d)); !p.Empty() {
		t.Fatalf("plan = %v", reasons(p))
	}
}

func TestConfigChangeRecreatesTheServiceAndNamespaceAndRestartDependants(t *testing.T) {
	old := desired(t, nil)
	d := desired(t, map[string]string{"LEVEL": "2"})
	got := reasons(NewPlan(d, running(old)))
	want := map[string][]string{
		"db":      {"config changed: environment"},
		"app":     {"dependency recreated: db"},
		"sidecar": {"dependency recreated: app"},
	}
	if len(got) != len(want) {
		t.Fatalf("plan = %v, want %v", got, want)
	}
	for k, v := range want {
		if !slices.Equal(got[k], v) {
			t.Errorf("%s: %v, want %v", k, got[k], v)
		}
	}
}

func TestImageChangeIsItsOwnReason(t *testing.T) {
	d := desired(t, nil)
	actual := running(d)
	for i := range actual {
		if actual[i].Labels[LabelService] == "web" && actual[i].Labels[LabelNumber] == "2" {
			actual[i].Labels[LabelImage] = "sha256:old"
		}
	}
	got := reasons(NewPlan(d, actual))
	if len(got) != 1 || !slices.Equal(got["web"], []string{"image changed: busybox:1.36"}) {
		t.Fatalf("plan = %v", got)
	}
}

func TestScaleDownRemovesTheHighestReplicas(t *testing.T) {
	d := desired(t, nil)
	actual := append(running(d), summary(d, "web", 3))
	p := NewPlan(d, actual)
	if len(p.Services) != 1 || len(p.Services[0].Remove) != 1 || p.Services[0].Remove[0].ID != "web3" {
		t.Fatalf("plan = %+v", p.Services)
	}
}

func TestContainersOfRemovedServicesAreOrphansAndOneoffsAreLeftAlone(t *testing.T) {
	d := desired(t, nil)
	gone := summary(d, "db", 1)
	gone.ID, gone.Labels[LabelService] = "gone", "gone"
	oneoff := summary(d, "db", 1)
	oneoff.ID, oneoff.Labels[LabelOneoff] = "run", "True"
	p := NewPlan(d, append(running(d), gone, oneoff))
	if len(p.Orphans) != 1 || p.Orphans[0].ID != "gone" || len(p.Services) != 0 {
		t.Fatalf("plan = %+v", p)
	}
}

func TestStoppedContainerOfAnAlwaysServiceHasDrifted(t *testing.T) {
	d := desired(t, nil)
	actual := running(d)
	for i := range actual {
		switch actual[i].ID {
		case "web1", "db1":
			actual[i].State = container.StateExited // db has no restart policy: a finished job
		}
	}
	got := reasons(NewPlan(d, actual))
	if len(got) != 1 || !slices.Equal(got["web"], []string{"drifted: container exited"}) {
		t.Fatalf("plan = %v", got)
	}
}

func TestForcedServiceIsRecreated(t *testing.T) {
	d := desired(t, nil)
	got := reasons(NewPlan(d, running(d), "db"))
	if !slices.Equal(got["db"], []string{ReasonForced}) || !slices.Equal(got["app"], []string{"dependency recreated: db"}) {
		t.Fatalf("plan = %v", got)
	}
}

func TestContainersLeftAsideAreReported(t *testing.T) {
	d := desired(t, nil)
	aside := summary(d, "db", 1)
	aside.ID, aside.Names = "old", []string{"/proj-db-1" + asideSuffix}
	p := NewPlan(d, append(running(d), aside))
	if len(p.Aside) != 1 || p.Aside[0].ID != "old" || len(p.Services) != 0 {
		t.Fatalf("plan = %+v", p)
	}
}
