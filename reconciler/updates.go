package reconciler

import (
	"context"
	"errors"
	"maps"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/distribution/reference"

	"hawser.dev/hawser/reconciler/converge"
	"hawser.dev/hawser/reconciler/images"
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

// checkImages asks the registries about every followed image of the applied
// state, pulls or rebuilds what has an update, and returns the updated
// services with their new digests. A registry that cannot be asked only
// leaves its own images as they are.
func (r *Reconciler) checkImages(ctx context.Context) map[string]string {
	updated := map[string]string{}
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
		var digest string
		if svc.Build == nil {
			digest = r.checkPulled(ctx, name, d.Services[name].Image, policy)
		} else {
			digest = r.checkBase(ctx, d, svc)
		}
		if digest != "" {
			updated[name] = digest
			r.metrics.imageUpdates.WithLabelValues(name).Inc()
		}
	}
	return updated
}

// checkPulled checks an image: service's tag and pulls the update. An
// image the engine knows by no registry digest was built or imported on this
// host: there is no registry to follow.
func (r *Reconciler) checkPulled(ctx context.Context, service string, img converge.Image, policy registry.Policy) string {
	if len(img.RepoDigests) == 0 {
		return ""
	}
	res, err := r.registry.Check(ctx, registry.Check{Ref: img.Ref, Policy: policy, LocalRepoDigests: img.RepoDigests})
	r.noteImage(service, img.Ref, policy, res, err)
	if err != nil || !res.Update {
		return ""
	}
	if _, err := r.images.Pull(ctx, res.Ref); err != nil {
		r.log.Error("pull image update", "service", service, "ref", res.Ref, "err", err)
		return ""
	}
	if res.Ref != img.Ref {
		if err := r.store.SetFollowed(r.project.Name, service, res.Ref); err != nil {
			r.log.Error("remember followed tag", "service", service, "err", err)
			return ""
		}
	}
	r.log.Info("image updated", "service", service, "ref", res.Ref, "digest", res.Remote, "reason", res.Reason)
	return res.Remote
}

// checkBase checks the images a build: service's Dockerfile builds FROM and
// rebuilds it, pulling them afresh, when one has a new digest.
func (r *Reconciler) checkBase(ctx context.Context, d *converge.Desired, svc types.ServiceConfig) string {
	bases, err := images.BaseImages(svc)
	if err != nil {
		r.log.Error("base images", "service", svc.Name, "err", err)
		return ""
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
		res, err := r.registry.Check(ctx, registry.Check{Ref: base, Policy: registry.PolicyDigest, LocalRepoDigests: local})
		r.noteImage(svc.Name, base, registry.PolicyDigest, res, err)
		if err != nil || !res.Update {
			continue
		}
		delete(r.bases, base) // the rebuild pulls it afresh
		img, err := r.images.Rebuild(ctx, d.Project, svc, d.Commit)
		if err != nil {
			r.log.Error("rebuild on base image update", "service", svc.Name, "base", base, "err", err)
			return ""
		}
		r.log.Info("rebuilt on base image update", "service", svc.Name, "base", base, "digest", res.Remote, "image", img.ID)
		return res.Remote
	}
	return ""
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

// followedRefs applies the tags semver policies moved services to, as long
// as the compose file still names the same repository.
func (r *Reconciler) followedRefs(p *types.Project) (map[string]string, error) {
	followed, err := r.store.Followed(r.project.Name)
	if err != nil {
		return nil, err
	}
	out := maps.Clone(followed)
	for service, ref := range followed {
		svc, ok := p.Services[service]
		if !ok || svc.Build != nil || !sameRepository(svc.Image, ref) {
			delete(out, service)
		}
	}
	return out, nil
}

func sameRepository(a, b string) bool {
	ra, errA := reference.ParseNormalizedNamed(a)
	rb, errB := reference.ParseNormalizedNamed(b)
	return errors.Join(errA, errB) == nil && ra.Name() == rb.Name()
}
