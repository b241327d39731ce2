// Package images gets the image every service of a compose project needs:
// `build:` services are built once per commit and tagged with it, `image:`
// services are pulled as their pull_policy asks. It reports each image's ID,
// which the planner hashes into the service's config hash, and its repo
// digests, which the registry checks compare with the registry's. It also
// rebuilds on a base image update, pulls a followed tag's new digest, and
// removes the images no container uses any more.
package images

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
	"golang.org/x/sync/singleflight"
)

// LabelBuild on a built image identifies the build section it was built
// from, so a change to build args rebuilds the same commit.
const LabelBuild = "dev.hawser.build"

// Docker is the part of the Docker API this package uses; *client.Client
// satisfies it.
type Docker interface {
	ImageInspect(ctx context.Context, ref string, opts ...client.ImageInspectOption) (client.ImageInspectResult, error)
	ImageBuild(ctx context.Context, buildContext io.Reader, opts client.ImageBuildOptions) (client.ImageBuildResult, error)
	ImagePull(ctx context.Context, ref string, opts client.ImagePullOptions) (client.ImagePullResponse, error)
	ImageList(ctx context.Context, opts client.ImageListOptions) (client.ImageListResult, error)
	ImageRemove(ctx context.Context, image string, opts client.ImageRemoveOptions) (client.ImageRemoveResult, error)
	ContainerList(ctx context.Context, opts client.ContainerListOptions) (client.ContainerListResult, error)
}

// Image is the image a service runs.
type Image struct {
	// Ref is the reference to create the service's containers from.
	Ref string
	// ID is the image's content-addressed ID ("sha256:...").
	ID string
	// RepoDigests are the registry digests the engine knows the image by
	// ("host/repo@sha256:..."); empty for an image never pulled or pushed.
	RepoDigests []string
	// Built is true when this call built the image.
	Built bool
	// Pulled is true when this call pulled the image.
	Pulled bool
	// BuildDuration is how long the build took, zero unless Built.
	BuildDuration time.Duration
	// Log is the build's log file, for built services.
	Log string
}

// AuthFunc returns the encoded X-Registry-Auth value to pull ref with; an
// empty string means anonymous.
type AuthFunc func(ctx context.Context, ref string) (string, error)

// Option configures Images.
type Option func(*Images)

// WithRegistryAuth sets how pulls find their registry credentials; without it
// every pull is anonymous.
func WithRegistryAuth(auth AuthFunc) Option {
	return func(i *Images) { i.auth = auth }
}

// Images builds and pulls the images of one Docker host. Concurrent calls
// that need the same build share it.
type Images struct {
	docker Docker
	logDir string
	log    *slog.Logger
	auth   AuthFunc

	// builds holds the builds in progress, by buildJob.key; a Queue's when
	// one is shared.
	builds   *singleflight.Group
	queue    *Queue // nil: builds start at once
	priority Priority
}

// New returns Images that talks to docker and writes each build's output
// under logDir.
func New(docker Docker, logDir string, log *slog.Logger, opts ...Option) *Images {
	i := &Images{docker: docker, logDir: logDir, log: log, auth: anonymous, builds: &singleflight.Group{}}
	for _, opt := range opts {
		opt(i)
	}
	return i
}

// Tag is the reference a `build:` service's image gets for a commit:
// <project>-<service>:<first 12 hex of commit>. Docker repository names must
// be lower case, compose service names need not be.
func Tag(project, service, commit string) string {
	return strings.ToLower(project+"-"+service) + ":" + shortCommit(commit)
}

// Ensure makes sure the image svc of project p needs at commit is present,
// building or pulling it, and returns its reference and ID.
func (i *Images) Ensure(ctx context.Context, p *types.Project, svc types.ServiceConfig, commit string) (Image, error) {
	policy, _, err := svc.GetPullPolicy()
	if err != nil {
		return Image{}, fmt.Errorf("service %q: %w", svc.Name, err)
	}
	if svc.Build != nil || policy == types.PullPolicyBuild {
		return i.ensureBuilt(ctx, p.Name, svc, commit)
	}
	return i.ensurePulled(ctx, svc, policy)
}

// Inspect returns the local image ref (a reference or an ID) names, with its
// repo digests for the registry checks. An image the engine does not have
// is no error: it comes back with an empty ID (and no repo digests), which
// a registry check takes as "missing, pull it".
func (i *Images) Inspect(ctx context.Context, ref string) (Image, error) {
	res, found, err := i.inspect(ctx, ref)
	if err != nil || !found {
		return Image{Ref: ref}, err
	}
	return imageOf(ref, res), nil
}

// inspect returns the local image ref, and whether it exists.
func (i *Images) inspect(ctx context.Context, ref string) (client.ImageInspectResult, bool, error) {
	res, err := i.docker.ImageInspect(ctx, ref)
	if cerrdefs.IsNotFound(err) {
		return res, false, nil
	}
	if err != nil {
		return res, false, fmt.Errorf("inspect image %s: %w", ref, err)
	}
	return res, true, nil
}

// present returns the image ref that a pull or build (what) just made.
func (i *Images) present(ctx context.Context, ref, what string) (Image, error) {
	res, found, err := i.inspect(ctx, ref)
	if err == nil && !found {
		err = fmt.Errorf("image %s missing after %s", ref, what)
	}
	if err != nil {
		return Image{}, err
	}
	return imageOf(ref, res), nil
}

// imageOf is the image ref names, as the engine reported it.
func imageOf(ref string, res client.ImageInspectResult) Image {
	return Image{Ref: ref, ID: res.ID, RepoDigests: res.RepoDigests}
}

func shortCommit(commit string) string {
	if len(commit) > 12 {
		return strings.ToLower(commit[:12])
	}
	return strings.ToLower(commit)
}
