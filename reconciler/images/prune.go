package images

import (
	"context"
	"errors"
	"fmt"
	"slices"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"hawser.dev/hawser/reconciler/converge"
)

// Prune removes the images that project no longer needs: those built for it
// (labelled with its name) and candidates, references or IDs of images
// pulled for it, that no container of any project, running or stopped,
// uses and that keep (references or IDs: the deployed images and the last
// known-good deployment's) does not name. It never forces: an image the
// engine refuses to remove (a container made since, another tag, a child
// image) is left alone without an error. It returns the IDs it removed;
// failures to remove the others are joined in the error.
func (i *Images) Prune(ctx context.Context, project string, candidates, keep []string) ([]string, error) {
	ids, err := i.pruneCandidates(ctx, project, candidates)
	if err != nil {
		return nil, err
	}
	spared, err := i.spared(ctx, keep)
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, id := range ids {
		if spared[id] {
			continue
		}
		gone, err := i.remove(ctx, id)
		if err != nil {
			errs = append(errs, err)
		}
		if gone {
			removed = append(removed, id)
		}
	}
	return removed, errors.Join(errs...)
}

// pruneCandidates returns the IDs of project's built images and of the
// candidates that exist, each once.
func (i *Images) pruneCandidates(ctx context.Context, project string, candidates []string) ([]string, error) {
	built, err := i.docker.ImageList(ctx, client.ImageListOptions{
		Filters: client.Filters{}.Add("label", converge.LabelProject+"="+project),
	})
	if err != nil {
		return nil, fmt.Errorf("list images of project %s: %w", project, err)
	}
	var ids []string
	for _, img := range built.Items {
		ids = append(ids, img.ID)
	}
	pulled, err := i.resolve(ctx, candidates)
	if err != nil {
		return nil, err
	}
	for id := range pulled {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return slices.Compact(ids), nil
}

// spared returns the IDs of the images that containers use or keep names.
func (i *Images) spared(ctx context.Context, keep []string) (map[string]bool, error) {
	spared, err := i.resolve(ctx, keep)
	if err != nil {
		return nil, err
	}
	cs, err := i.docker.ContainerList(ctx, client.ContainerListOptions{All: true})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	for _, c := range cs.Items {
		spared[c.ImageID] = true
	}
	return spared, nil
}

// resolve returns the IDs of the images refs (references or IDs) name;
// those not present are left out.
func (i *Images) resolve(ctx context.Context, refs []string) (map[string]bool, error) {
	ids := map[string]bool{}
	for _, ref := range refs {
		res, found, err := i.inspect(ctx, ref)
		if err != nil {
			return nil, err
		}
		if found {
			ids[res.ID] = true
		}
	}
	return ids, nil
}

// remove removes the image id, unforced, and reports whether it is gone.
// A conflict (the image in use, tagged twice, or a parent) or an image
// already gone is no error: pruning is best effort and runs again.
func (i *Images) remove(ctx context.Context, id string) (bool, error) {
	_, err := i.docker.ImageRemove(ctx, id, client.ImageRemoveOptions{PruneChildren: true})
	switch {
	case err == nil:
		i.log.InfoContext(ctx, "removed image", "id", id)
		return true, nil
	case cerrdefs.IsConflict(err), cerrdefs.IsNotFound(err):
		i.log.DebugContext(ctx, "image not removed", "id", id, "err", err)
		return false, nil
	default:
		return false, fmt.Errorf("remove image %s: %w", id, err)
	}
}
