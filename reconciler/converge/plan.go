// Package converge makes the containers of one compose project match the
// desired state: it plans which services to recreate and why from the labels
// of one container list, then applies the plan in dependency order, keeping
// the old containers aside until the new ones are up.
package converge

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/compose-spec/compose-go/v2/graph"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/moby/api/types/container"

	"hawser.dev/hawser/reconciler/compose"
)

// Image is the image a service runs.
type Image struct {
	Ref string
	ID  string
	// RepoDigests are the registry digests the local image is known by.
	RepoDigests []string
}

// Desired is the state one commit and one configuration ask for, computed
// once per change so an idle tick only compares labels.
type Desired struct {
	Project *types.Project
	Commit  string
	// Order lists the services in dependency order.
	Order    []string
	Services map[string]DesiredService
	// Updated maps services whose image a registry check found updated to
	// the new digest, so their recreate says so.
	Updated map[string]string
}

// DesiredService is what one service should look like.
type DesiredService struct {
	Config      types.ServiceConfig
	Image       Image
	Replicas    int
	Fingerprint compose.Fingerprint
	// Routed services are served by the front end, as Routing says.
	Routed  bool
	Routing Routing
}

// NewDesired fingerprints every service of the project with its image;
// root is the checkout the project was loaded from.
func NewDesired(ctx context.Context, p *types.Project, imgs map[string]Image, commit, root string) (*Desired, error) {
	d := &Desired{Project: p, Commit: commit, Services: make(map[string]DesiredService, len(p.Services))}
	for name, svc := range p.Services {
		img, ok := imgs[name]
		if !ok {
			return nil, fmt.Errorf("service %q: no image", name)
		}
		fp, err := compose.ServiceFingerprint(p, svc, root)
		if err != nil {
			return nil, err
		}
		routing, routed, err := RoutingOf(svc)
		if err != nil {
			return nil, err
		}
		d.Services[name] = DesiredService{Config: svc, Image: img, Replicas: replicas(svc), Fingerprint: fp, Routed: routed, Routing: routing}
	}
	err := graph.InDependencyOrder(ctx, p, func(_ context.Context, name string, _ types.ServiceConfig) error {
		d.Order = append(d.Order, name)
		return nil
	}, graph.WithMaxConcurrency(1))
	if err != nil {
		return nil, fmt.Errorf("service dependencies: %w", err)
	}
	return d, nil
}

func replicas(svc types.ServiceConfig) int {
	if svc.Scale != nil {
		return *svc.Scale
	}
	if svc.Deploy != nil && svc.Deploy.Replicas != nil {
		return *svc.Deploy.Replicas
	}
	return 1
}

// Reasons a container is (re)created; they are also metric label values.
const (
	ReasonMissing    = "missing"
	ReasonConfig     = "config changed"
	ReasonImage      = "image changed"
	ReasonUpdated    = "image updated"
	ReasonDependency = "dependency recreated"
	ReasonDrifted    = "drifted"
	ReasonForced     = "forced"
)

// Reason says why one replica is (re)created.
type Reason struct {
	Kind   string
	Detail string
}

func (r Reason) String() string {
	if r.Detail == "" {
		return r.Kind
	}
	return r.Kind + ": " + r.Detail
}

// Replace is one replica to create, replacing Old when it exists.
type Replace struct {
	Number int
	Old    *container.Summary
	Reason Reason
}

// ServicePlan is the work for one service.
type ServicePlan struct {
	Name    string
	Replace []Replace
	// Remove holds replicas beyond the desired scale.
	Remove []container.Summary
}

// Plan is the work for a whole project, services in dependency order.
type Plan struct {
	Services []ServicePlan
	// Orphans are containers of services no longer in the project.
	Orphans []container.Summary
	// Aside are containers left aside by an interrupted deployment.
	Aside []container.Summary
	// current maps each service to the ID of its first container.
	current map[string]string
}

// Empty reports whether the plan changes nothing.
func (p Plan) Empty() bool {
	return len(p.Services) == 0 && len(p.Orphans) == 0 && len(p.Aside) == 0
}

// NewPlan compares the desired state with the project's containers, as one
// container list returned them. force names services to recreate anyway.
func NewPlan(d *Desired, actual []container.Summary, force ...string) Plan {
	plan := Plan{current: map[string]string{}}
	byService := map[string]map[int]container.Summary{}
	for _, c := range actual {
		if InTransition(c) {
			plan.Aside = append(plan.Aside, c)
			continue
		}
		name := c.Labels[LabelService]
		if _, ok := d.Services[name]; !ok || c.Labels[LabelOneoff] == "True" {
			if c.Labels[LabelOneoff] != "True" {
				plan.Orphans = append(plan.Orphans, c)
			}
			continue
		}
		n, _ := strconv.Atoi(c.Labels[LabelNumber])
		if byService[name] == nil {
			byService[name] = map[int]container.Summary{}
		}
		byService[name][n] = c
		if n == 1 {
			plan.current[name] = c.ID
		}
	}
	recreated := map[string]bool{}
	for _, name := range d.Order {
		sp := planService(d, name, byService[name], recreated, slices.Contains(force, name))
		if len(sp.Replace) > 0 {
			recreated[name] = true
		}
		if len(sp.Replace) > 0 || len(sp.Remove) > 0 {
			plan.Services = append(plan.Services, sp)
		}
	}
	return plan
}

func planService(d *Desired, name string, have map[int]container.Summary, recreated map[string]bool, forced bool) ServicePlan {
	want := d.Services[name]
	sp := ServicePlan{Name: name}
	depReason := dependencyReason(want.Config, recreated)
	for n := 1; n <= want.Replicas; n++ {
		c, ok := have[n]
		var r Reason
		switch {
		case !ok:
			r = Reason{Kind: ReasonMissing}
		case forced:
			r = Reason{Kind: ReasonForced}
		case c.Labels[LabelConfigHash] != want.Fingerprint.Hash:
			r = Reason{Kind: ReasonConfig, Detail: strings.Join(want.Fingerprint.ChangedKeys(c.Labels[LabelConfigKeys]), ", ")}
		case c.Labels[LabelImage] != want.Image.ID && d.Updated[name] != "":
			r = Reason{Kind: ReasonUpdated, Detail: want.Image.Ref + "@" + d.Updated[name]}
		case c.Labels[LabelImage] != want.Image.ID:
			r = Reason{Kind: ReasonImage, Detail: want.Image.Ref}
		case depReason != "":
			r = Reason{Kind: ReasonDependency, Detail: depReason}
		case stoppedUnexpectedly(c, want.Config):
			r = Reason{Kind: ReasonDrifted, Detail: "container " + string(c.State)}
		default:
			continue
		}
		rep := Replace{Number: n, Reason: r}
		if ok {
			rep.Old = &c
		}
		sp.Replace = append(sp.Replace, rep)
	}
	for _, n := range slices.Sorted(maps.Keys(have)) {
		if n > want.Replicas || n < 1 {
			sp.Remove = append(sp.Remove, have[n])
		}
	}
	return sp
}

// dependencyReason names the recreated services this one must follow: those
// whose namespaces it shares, and depends_on entries with restart: true.
func dependencyReason(svc types.ServiceConfig, recreated map[string]bool) string {
	var deps []string
	for dep, cond := range svc.DependsOn {
		if recreated[dep] && (cond.Restart || sharesNamespace(svc, dep)) {
			deps = append(deps, dep)
		}
	}
	slices.Sort(deps)
	return strings.Join(deps, ", ")
}

func sharesNamespace(svc types.ServiceConfig, dep string) bool {
	ref := types.ServicePrefix + dep
	if svc.NetworkMode == ref || svc.Ipc == ref || svc.Pid == ref {
		return true
	}
	for _, v := range svc.VolumesFrom {
		if v == dep || strings.HasPrefix(v, dep+":") {
			return true
		}
	}
	return false
}

// stoppedUnexpectedly is a container that should be up by its restart policy
// but is not: stopped by hand, or never started.
func stoppedUnexpectedly(c container.Summary, svc types.ServiceConfig) bool {
	switch c.State {
	case container.StateCreated:
		return true
	case container.StateExited, container.StateDead:
		return svc.Restart == types.RestartPolicyAlways || svc.Restart == types.RestartPolicyUnlessStopped
	}
	return false
}
