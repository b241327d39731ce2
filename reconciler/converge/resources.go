package converge

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/compose-spec/compose-go/v2/types"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
)

// ensureNetworks creates the project's networks that do not exist yet.
// External networks must already exist.
func (c *Converger) ensureNetworks(ctx context.Context, p *types.Project) error {
	for key, n := range p.Networks {
		if n.Name == "" || n.Name == "host" || n.Name == "none" || n.Name == "bridge" {
			continue
		}
		_, err := c.Docker.NetworkInspect(ctx, n.Name, client.NetworkInspectOptions{})
		if err == nil {
			continue
		}
		if !cerrdefs.IsNotFound(err) {
			return fmt.Errorf("network %s: %w", n.Name, err)
		}
		if bool(n.External) {
			return fmt.Errorf("network %s is declared external but does not exist", n.Name)
		}
		opts, err := networkOptions(p.Name, key, n)
		if err != nil {
			return err
		}
		if _, err := c.Docker.NetworkCreate(ctx, n.Name, opts); err != nil {
			return fmt.Errorf("create network %s: %w", n.Name, err)
		}
		c.Log.Info("network created", "network", n.Name)
	}
	return nil
}

func networkOptions(project, key string, n types.NetworkConfig) (client.NetworkCreateOptions, error) {
	opts := client.NetworkCreateOptions{
		Driver:     n.Driver,
		Options:    n.DriverOpts,
		Internal:   n.Internal,
		Attachable: n.Attachable,
		EnableIPv6: n.EnableIPv6,
		Labels:     resourceLabels(n.Labels, project, LabelNetwork, key),
	}
	if n.Ipam.Driver == "" && len(n.Ipam.Config) == 0 {
		return opts, nil
	}
	opts.IPAM = &network.IPAM{Driver: n.Ipam.Driver}
	for _, pool := range n.Ipam.Config {
		cfg, err := ipamConfig(pool)
		if err != nil {
			return opts, fmt.Errorf("network %s: %w", n.Name, err)
		}
		opts.IPAM.Config = append(opts.IPAM.Config, cfg)
	}
	return opts, nil
}

func ipamConfig(pool *types.IPAMPool) (network.IPAMConfig, error) {
	var cfg network.IPAMConfig
	var err error
	if pool.Subnet != "" {
		if cfg.Subnet, err = netip.ParsePrefix(pool.Subnet); err != nil {
			return cfg, fmt.Errorf("ipam subnet: %w", err)
		}
	}
	if pool.IPRange != "" {
		if cfg.IPRange, err = netip.ParsePrefix(pool.IPRange); err != nil {
			return cfg, fmt.Errorf("ipam ip_range: %w", err)
		}
	}
	if pool.Gateway != "" {
		if cfg.Gateway, err = netip.ParseAddr(pool.Gateway); err != nil {
			return cfg, fmt.Errorf("ipam gateway: %w", err)
		}
	}
	for name, addr := range pool.AuxiliaryAddresses {
		a, err := netip.ParseAddr(addr)
		if err != nil {
			return cfg, fmt.Errorf("ipam aux_addresses %s: %w", name, err)
		}
		if cfg.AuxAddress == nil {
			cfg.AuxAddress = map[string]netip.Addr{}
		}
		cfg.AuxAddress[name] = a
	}
	return cfg, nil
}

// ensureVolumes creates the project's named volumes that do not exist yet.
// Volumes are state: hawser creates them but never removes one.
func (c *Converger) ensureVolumes(ctx context.Context, p *types.Project) error {
	for key, v := range p.Volumes {
		_, err := c.Docker.VolumeInspect(ctx, v.Name, client.VolumeInspectOptions{})
		if err == nil {
			continue
		}
		if !cerrdefs.IsNotFound(err) {
			return fmt.Errorf("volume %s: %w", v.Name, err)
		}
		if bool(v.External) {
			return fmt.Errorf("volume %s is declared external but does not exist", v.Name)
		}
		_, err = c.Docker.VolumeCreate(ctx, client.VolumeCreateOptions{
			Name:       v.Name,
			Driver:     v.Driver,
			DriverOpts: v.DriverOpts,
			Labels:     resourceLabels(v.Labels, p.Name, LabelVolume, key),
		})
		if err != nil {
			return fmt.Errorf("create volume %s: %w", v.Name, err)
		}
		c.Log.Info("volume created", "volume", v.Name)
	}
	return nil
}

func resourceLabels(own types.Labels, project, keyLabel, key string) map[string]string {
	labels := map[string]string{LabelProject: project, keyLabel: key, LabelVersion: composeVersion}
	for k, v := range own {
		labels[k] = v
	}
	return labels
}
