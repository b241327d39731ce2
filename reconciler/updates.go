package reconciler

import (
	"context"
	"maps"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"

	"hawser.dev/hawser/reconciler/converge"
	"hawser.dev/hawser/reconciler/images"
	"hawser.dev/hawser/reconciler/store"
	"hawser.dev/hawser/registry"
)

// Registry tells whether a followed tag has a newer image than the local one.
type Registry interface {
	Check(ctx context.Context, chk registry.Check) (registry.Result, error)
}

// ImageStatus is what `hawser status` shows of one followed image.
type ImageStatus struct {
	Service string    `json:"service"`
	Ref     string    `json:"ref"`
	Policy  string    `json:"policy"`
	Local   string    `json:"local_digest,omitempty"`
	Remote  string    `json:"remote_digest,omitempty"`
	Checked time.Time `json:"last_check,omitempty"`
	Result  string    `json:"result,omitempty"`
}

// updates are the image updates one reconcile found, by service.
type updates struct {
	digests map[string]string // the new digest
	follow  map[string]string // the newer tag a semver policy chose
	checked map[string]checked
}

// checked is a registry's answer for one image in one tick: services that
// share an image share the check.
type checked struct {
	res registry.Result
	err error
}

// check asks the registry once per tick for each image and policy.
func (r *Reconciler) check(ctx context.Context, chk registry.Check, u updates) (registry.Result, error) {
	key := string(chk.Policy) + " " + chk.Ref + " " + strings.Join(chk.LocalRepoDigests, ",")
	if c, ok := u.checked[key]; ok {
		return c.res, c.err
	}
	res, err := r.registry.Check(ctx, chk)
	u.checked[key] = checked{res, err}
	return res, err
}

func (u updates) empty() bool { return len(u.digests) == 0 }

// checkImages asks the registries about every followed image of the applied
// state, pulls or rebuilds what has an update, and returns the updates. An
// update that failed to deploy before is not tried again; a registry that
// cannot be asked only leaves its own images as they are.
func (r *Reconciler) checkImages(ctx context.Context) updates {
	u := updates{digests: map[string]string{}, follow: map[string]string{}, checked: map[string]checked{}}
	d := r.applied.desired
	for _, name := range d.Order {
		svc := d.Services[name].Config
		policy, err := registry.PolicyFor(name, svc.Labels)
		if err != nil {
			r.log.Error("image policy", "service", name, "err", err)
			continue
		}
		if policy == registry.PolicyNone {
			continue
		}
		if svc.Build == nil {
			r.checkPulled(ctx, name, d.Services[name].Image, policy, u)
		} else {
			r.checkBase(ctx, d, svc, u)
		}
	}
	return u
}

// checkPulled checks an image: service's tag and pulls the update. An
// image the engine knows by no registry digest was built or imported on this
// host: there is no registry to follow.
func (r *Reconciler) checkPulled(ctx context.Context, service string, img converge.Image, policy registry.Policy, u updates) {
	if len(img.RepoDigests) == 0 {
		return
	}
	res, err := r.check(ctx, registry.Check{Ref: img.Ref, Policy: policy, LocalRepoDigests: img.RepoDigests}, u)
	r.noteImage(service, img.Ref, policy, res, err)
	if err != nil || !res.Update || r.updateFailed(service, res.Remote) {
		return
	}
	if _, err := r.images.Pull(ctx, res.Ref); err != nil {
		r.log.Error("pull image update", "service", service, "ref", res.Ref, "err", err)
		return
	}
	r.log.Info("image update pulled", "service", service, "ref", res.Ref, "digest", res.Remote, "reason", res.Reason)
	u.digests[service] = res.Remote
	if res.Ref != img.Ref {
		u.follow[service] = res.Ref
	}
}

// updateFailed reports an image update that was deployed before and did
// not succeed: it waits for the next digest.
func (r *Reconciler) updateFailed(service, digest string) bool {
	list, err := r.store.List(r.project.Name, historyScan)
	if err != nil {
		r.log.Warn("read deployment history", "err", err)
		return false
	}
	for _, d := range list {
		if d.Updated[service] == digest {
			return d.Result != store.ResultSucceeded
		}
	}
	return false
}

// checkBase checks the images a build: service's Dockerfile builds FROM and
// rebuilds it, pulling them afresh, when one has a new digest.
func (r *Reconciler) checkBase(ctx context.Context, d *converge.Desired, svc types.ServiceConfig, u updates) {
	bases, err := images.BaseImages(svc)
	if err != nil {
		r.log.Error("base images", "service", svc.Name, "err", err)
		return
	}
	for _, base := range bases {
		local, err := r.baseDigests(ctx, base)
		if err != nil {
			r.log.Warn("inspect base image", "service", svc.Name, "ref", base, "err", err)
			continue
		}
		if len(local) == 0 {
			continue // built or imported here: no registry to follow
		}
		res, err := r.check(ctx, registry.Check{Ref: base, Policy: registry.PolicyDigest, LocalRepoDigests: local}, u)
		r.noteImage(svc.Name, base, registry.PolicyDigest, res, err)
		if err != nil || !res.Update || r.updateFailed(svc.Name, res.Remote) {
			continue
		}
		delete(r.bases, base) // the rebuild pulls it afresh
		img, err := r.images.Rebuild(ctx, d.Project, svc, d.Commit)
		if err != nil {
			r.log.Error("rebuild on base image update", "service", svc.Name, "base", base, "err", err)
			return
		}
		r.log.Info("rebuilt on base image update", "service", svc.Name, "base", base, "digest", res.Remote, "image", img.ID)
		u.digests[svc.Name] = res.Remote
		return
	}
}

// baseDigests returns the repo digests of a local base image, inspecting it
// once: it changes only when a rebuild pulls it again.
func (r *Reconciler) baseDigests(ctx context.Context, ref string) ([]string, error) {
	if digests, ok := r.bases[ref]; ok {
		return digests, nil
	}
	img, err := r.images.Inspect(ctx, ref)
	if err != nil {
		return nil, err
	}
	if r.bases == nil {
		r.bases = map[string][]string{}
	}
	r.bases[ref] = img.RepoDigests
	return img.RepoDigests, nil
}

func (r *Reconciler) noteImage(service, ref string, policy registry.Policy, res registry.Result, err error) {
	st := ImageStatus{Service: service, Ref: ref, Policy: string(policy), Local: res.Local, Remote: res.Remote, Checked: res.Checked, Result: res.Reason}
	switch {
	case err != nil && registry.IsTransient(err):
		r.log.Warn("registry check", "service", service, "ref", ref, "err", err)
		st.Result = "unavailable: " + err.Error()
	case err != nil:
		r.log.Error("registry check", "service", service, "ref", ref, "err", err)
		st.Result = "error: " + err.Error()
	case res.Ref != ref:
		st.Result = res.Reason + "; follows " + res.Ref
	}
	r.setStatus(func(s *Status) {
		if s.images == nil {
			s.images = map[string]ImageStatus{}
		}
		s.images[service+" "+ref] = st
	})
}

// followedRefs returns the tags semver policies moved services to, plus the
// ones this reconcile found, as long as the compose file still names the
// tag it named when the follow began.
func (r *Reconciler) followedRefs(p *types.Project, found map[string]string) (map[string]string, error) {
	followed, err := r.store.Followed(r.project.Name)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	maps.Copy(out, found)
	for service, f := range followed {
		if svc, ok := p.Services[service]; ok && svc.Build == nil && svc.Image == f.From && out[service] == "" {
			out[service] = f.Ref
		}
	}
	return out, nil
}

// rememberUpdates counts the deployed updates and keeps the tags semver
// policies moved to.
func (r *Reconciler) rememberUpdates(p *types.Project, u updates) error {
	for service := range u.digests {
		r.metrics.imageUpdates.WithLabelValues(service).Inc()
	}
	for service, ref := range u.follow {
		if err := r.store.SetFollowed(r.project.Name, service, store.Follow{Ref: ref, From: p.Services[service].Image}); err != nil {
			return err
		}
	}
	return nil
}
