package converge

import (
	"context"
	"errors"
	"fmt"

	"github.com/moby/moby/client"
)

// Down removes a project entirely: its containers with their anonymous
// volumes, its networks, its named volumes and the images built for it.
// It is for projects hawser owns whole, such as a preview; production
// volumes are state and never go this way.
func (c *Converger) Down(ctx context.Context, project string) error {
	filter := client.Filters{}.Add("label", LabelProject+"="+project)
	actual, err := List(ctx, c.Docker, project)
	if err != nil {
		return err
	}
	for _, ct := range actual {
		c.stopAndRemove(ctx, ct, "project torn down", true)
	}
	var errs []error
	nets, err := c.Docker.NetworkList(ctx, client.NetworkListOptions{Filters: filter})
	errs = append(errs, err)
	for _, n := range nets.Items {
		if _, err := c.Docker.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{}); err != nil {
			errs = append(errs, fmt.Errorf("remove network %s: %w", n.Name, err))
		}
	}
	vols, err := c.Docker.VolumeList(ctx, client.VolumeListOptions{Filters: filter})
	errs = append(errs, err)
	for _, v := range vols.Items {
		if _, err := c.Docker.VolumeRemove(ctx, v.Name, client.VolumeRemoveOptions{}); err != nil {
			errs = append(errs, fmt.Errorf("remove volume %s: %w", v.Name, err))
		}
	}
	imgs, err := c.Docker.ImageList(ctx, client.ImageListOptions{Filters: filter})
	errs = append(errs, err)
	for _, im := range imgs.Items {
		if _, err := c.Docker.ImageRemove(ctx, im.ID, client.ImageRemoveOptions{PruneChildren: true}); err != nil {
			errs = append(errs, fmt.Errorf("remove image %s: %w", im.ID, err))
		}
	}
	return errors.Join(errs...)
}
