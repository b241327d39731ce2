package images

import (
	"context"
	"encoding/base64"
	"fmt"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/moby/client"
)

// anonymousAuth is an empty auth config ("{}") as the X-Registry-Auth header
// carries it. The client leaves the header out when it is empty, which the
// 20.10 engine accepts for a pull; sending "{}" keeps pulls and the pushes
// that do require the header alike.
var anonymousAuth = base64.URLEncoding.EncodeToString([]byte("{}"))

func anonymous(context.Context, string) (string, error) { return "", nil }

// ensurePulled pulls svc's image when its pull policy asks for it. Policies
// that refresh on a schedule count as "missing" here: noticing a new digest
// of a followed tag is the registry watcher's job, which then calls Pull.
func (i *Images) ensurePulled(ctx context.Context, svc types.ServiceConfig, policy string) (Image, error) {
	ref := svc.Image
	if ref == "" {
		return Image{}, fmt.Errorf("service %q has neither image nor build", svc.Name)
	}
	res, found, err := i.inspect(ctx, ref)
	switch {
	case err != nil:
		return Image{}, fmt.Errorf("service %q: %w", svc.Name, err)
	case found && policy != types.PullPolicyAlways:
		return imageOf(ref, res), nil
	case !found && policy == types.PullPolicyNever:
		return Image{}, fmt.Errorf("service %q: image %s is not present and pull_policy is never", svc.Name, ref)
	}
	img, err := i.Pull(ctx, ref)
	if err != nil {
		return Image{}, fmt.Errorf("service %q: %w", svc.Name, err)
	}
	return img, nil
}

// Pull pulls ref, present or not, with the registry credentials of
// WithRegistryAuth, and returns the image ref names afterwards: a new one
// when the registry had a new digest for the tag.
func (i *Images) Pull(ctx context.Context, ref string) (Image, error) {
	if err := i.pull(ctx, ref); err != nil {
		return Image{}, fmt.Errorf("pull %s: %w", ref, err)
	}
	img, err := i.present(ctx, ref, "pull")
	if err != nil {
		return Image{}, err
	}
	img.Pulled = true
	return img, nil
}

// pull pulls ref and waits for the end of the stream, where the engine
// reports most failures.
func (i *Images) pull(ctx context.Context, ref string) error {
	auth, err := i.auth(ctx, ref)
	if err != nil {
		return fmt.Errorf("registry auth: %w", err)
	}
	if auth == "" {
		auth = anonymousAuth
	}
	i.log.InfoContext(ctx, "pulling image", "ref", ref)
	res, err := i.docker.ImagePull(ctx, ref, client.ImagePullOptions{RegistryAuth: auth})
	if err != nil {
		return err
	}
	return res.Wait(ctx)
}
