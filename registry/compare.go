package registry

import (
	"bytes"
	"context"
	"fmt"
	"slices"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// verdict is the outcome of comparing a remote digest with the local image.
type verdict struct {
	update   bool
	reason   string
	local    string
	platform string
}

// compare decides whether remote (what tag points at now) is an update for
// the local image with localRepoDigests. An index whose manifest for the
// local platform is unchanged is no update: the engine records the index
// digest it pulled, so the platform digest is learnt once per index digest
// and kept in the Seen store.
func (c *Checker) compare(ctx context.Context, p *remote.Puller, tag name.Tag, remoteDesc v1.Descriptor, localRepoDigests []string) (verdict, error) {
	local := localDigests(tag.Context(), localRepoDigests)
	if len(local) == 0 {
		return verdict{update: true, reason: "no local image pulled from " + tag.Context().Name()}, nil
	}
	remoteDigest := remoteDesc.Digest.String()
	seen, ok, err := c.seen.Seen(ctx, tag.Name())
	if err != nil {
		return verdict{}, fmt.Errorf("seen digests: %w", err)
	}
	if ok && seen.Remote == remoteDigest && slices.Contains(local, seen.Local) {
		return verdict{reason: upToDate(seen), local: seen.Local, platform: seen.Platform}, nil
	}
	if !remoteDesc.MediaType.IsIndex() {
		if slices.Contains(local, remoteDigest) {
			return c.remember(ctx, tag, Seen{Remote: remoteDigest, Local: remoteDigest})
		}
		return verdict{update: true, reason: "digest changed", local: local[0]}, nil
	}
	platform, err := c.platformDigest(ctx, p, tag.Context(), remoteDesc.Digest)
	if slices.Contains(local, remoteDigest) {
		if err != nil {
			// The local image is this index; only the fallback for a later
			// change of another platform is missing. Try again next time if
			// the registry may answer then.
			c.log.Warn("no platform digest for a followed image", "ref", tag.Name(), "error", err)
			if IsTransient(err) || isUnavailable(err) {
				return verdict{reason: "up to date", local: remoteDigest}, nil
			}
		}
		return c.remember(ctx, tag, Seen{Remote: remoteDigest, Platform: platform, Local: remoteDigest})
	}
	if err != nil {
		return verdict{}, err
	}
	switch {
	case slices.Contains(local, platform):
		return c.remember(ctx, tag, Seen{Remote: remoteDigest, Platform: platform, Local: platform})
	case ok && seen.Platform == platform && slices.Contains(local, seen.Local):
		return c.remember(ctx, tag, Seen{Remote: remoteDigest, Platform: platform, Local: seen.Local})
	}
	return verdict{update: true, reason: "digest changed for " + c.platform.String(), local: local[0], platform: platform}, nil
}

// remember records s as matching the local image and returns that verdict.
func (c *Checker) remember(ctx context.Context, tag name.Tag, s Seen) (verdict, error) {
	s.Time = c.now()
	if err := c.seen.Remember(ctx, tag.Name(), s); err != nil {
		return verdict{}, fmt.Errorf("remember digests of %s: %w", tag.Name(), err)
	}
	return verdict{reason: upToDate(s), local: s.Local, platform: s.Platform}, nil
}

func upToDate(s Seen) string {
	if s.Local != s.Remote {
		return "up to date (only other platforms changed)"
	}
	return "up to date"
}

// localDigests returns the digests of repoDigests that belong to repo;
// digests of the same image pulled under other names do not count.
func localDigests(repo name.Repository, repoDigests []string) []string {
	var out []string
	for _, rd := range repoDigests {
		d, err := name.NewDigest(rd)
		if err == nil && d.Context().Name() == repo.Name() {
			out = append(out, d.DigestStr())
		}
	}
	return out
}

// platformDigest fetches the index (by digest, so it is the one HEAD saw)
// and returns the digest of its manifest for the local platform.
func (c *Checker) platformDigest(ctx context.Context, p *remote.Puller, repo name.Repository, index v1.Hash) (string, error) {
	desc, err := p.Get(ctx, repo.Digest(index.String()))
	if err != nil {
		return "", err
	}
	im, err := v1.ParseIndexManifest(bytes.NewReader(desc.Manifest))
	if err != nil {
		return "", fmt.Errorf("index %s: %w", index, err)
	}
	for _, m := range im.Manifests {
		if m.Platform != nil && m.Platform.Satisfies(c.platform) {
			return m.Digest.String(), nil
		}
	}
	return "", fmt.Errorf("index %s has no image for platform %s", index, c.platform.String())
}
