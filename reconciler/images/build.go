package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/client"

	"hawser.dev/hawser/reconciler/converge"
)

// tailLines is how many of a failed build's last output lines its error carries.
const tailLines = 15

// BuildError is a failed build. It names the service and the log file that
// holds the whole output, and carries the last lines of that output.
type BuildError struct {
	Service string   // the compose service
	Log     string   // the file with the build's whole output
	Tail    []string // the output's last lines
	Err     error    // what the engine reported
}

// Error names the service, the engine's message and the log; the output
// itself stays in Tail and the log file, out of logs and API answers.
func (e *BuildError) Error() string {
	return fmt.Sprintf("build of service %q failed: %v (full output in %s)", e.Service, e.Err, e.Log)
}

// Unwrap returns what the engine reported.
func (e *BuildError) Unwrap() error { return e.Err }

// buildJob is one build of a service's image for a commit.
type buildJob struct {
	project string
	svc     types.ServiceConfig
	commit  string
	ref     string // the tag the image gets
	digest  string // of the build section, the image's LabelBuild
	log     string // the file the output goes to
	// pullBase pulls the base images even when they are present, as a
	// rebuild on a base image update needs.
	pullBase bool
}

// key identifies the image job makes, for sharing a build in progress: the
// tag (project, service, commit) and the build section's digest, so a build
// with other build args is another build. A rebuild is never shared with a
// plain build, which would not pull the base images afresh.
func (j buildJob) key() string {
	if j.pullBase {
		return "rebuild " + j.ref + " " + j.digest
	}
	return j.ref + " " + j.digest
}

// newBuildJob checks that svc can be built for commit.
func (i *Images) newBuildJob(project string, svc types.ServiceConfig, commit string) (buildJob, error) {
	if svc.Build == nil {
		return buildJob{}, fmt.Errorf("service %q: pull_policy is build but there is no build section", svc.Name)
	}
	if commit == "" {
		return buildJob{}, fmt.Errorf("service %q: no commit to tag the build with", svc.Name)
	}
	digest, err := buildDigest(*svc.Build)
	if err != nil {
		return buildJob{}, fmt.Errorf("service %q: %w", svc.Name, err)
	}
	return buildJob{
		project: project, svc: svc, commit: commit, digest: digest,
		ref: Tag(project, svc.Name, commit), log: i.logPath(project, svc.Name, commit),
	}, nil
}

// ensureBuilt builds svc's image for commit unless an image with its tag was
// built from the same build section: a commit's sources never change, but
// build args from the host's .env can.
func (i *Images) ensureBuilt(ctx context.Context, project string, svc types.ServiceConfig, commit string) (Image, error) {
	job, err := i.newBuildJob(project, svc, commit)
	if err != nil {
		return Image{}, err
	}
	if img, found, err := i.built(ctx, job); err != nil || found {
		return img, err
	}
	return i.sharedBuild(ctx, job.key(), func() (Image, error) {
		// A build that finished since the look above, or while this one
		// waited for a slot, needs no second run.
		if img, found, err := i.built(ctx, job); err != nil || found {
			return img, err
		}
		return i.buildImage(ctx, job)
	})
}

// built returns the image job would build, if it is there already: an image
// with its tag built from the same build section.
func (i *Images) built(ctx context.Context, job buildJob) (Image, bool, error) {
	res, found, err := i.inspect(ctx, job.ref)
	if err != nil {
		return Image{}, false, fmt.Errorf("service %q: %w", job.svc.Name, err)
	}
	if !found || res.Config == nil || res.Config.Labels[LabelBuild] != job.digest {
		return Image{}, false, nil
	}
	img := imageOf(job.ref, res)
	img.Log = job.log
	return img, true, nil
}

// Rebuild builds svc's image for commit even when it exists, pulling its
// base images afresh, and moves the commit's tag to the result: for when a
// base image has a new digest. The build's output replaces the commit's
// build log. The image it replaces keeps its labels, so Prune finds it.
func (i *Images) Rebuild(ctx context.Context, p *types.Project, svc types.ServiceConfig, commit string) (Image, error) {
	if svc.Build == nil {
		return Image{}, fmt.Errorf("service %q has no build section to rebuild", svc.Name)
	}
	job, err := i.newBuildJob(p.Name, svc, commit)
	if err != nil {
		return Image{}, err
	}
	job.pullBase = true
	return i.sharedBuild(ctx, job.key(), func() (Image, error) { return i.buildImage(ctx, job) })
}

// buildImage runs job and returns the image it tagged.
func (i *Images) buildImage(ctx context.Context, job buildJob) (Image, error) {
	start := time.Now()
	if err := i.build(ctx, job); err != nil {
		return Image{}, err
	}
	took := time.Since(start)
	img, err := i.present(ctx, job.ref, "build")
	if err != nil {
		return Image{}, fmt.Errorf("service %q: %w", job.svc.Name, err)
	}
	i.log.InfoContext(ctx, "built image", "service", job.svc.Name, "ref", job.ref,
		"pulled_base", job.pullBase, "duration", took)
	img.Built, img.BuildDuration, img.Log = true, took, job.log
	return img, nil
}

// logPath is where the build of a service at a commit writes its output.
func (i *Images) logPath(project, service, commit string) string {
	return filepath.Join(i.logDir, project, shortCommit(commit)+"-"+service+".log")
}

// build runs one build, writing its output to the service's log file.
func (i *Images) build(ctx context.Context, job buildJob) error {
	name := job.svc.Name
	if err := unsupported(*job.svc.Build); err != nil {
		return fmt.Errorf("service %q: %w", name, err)
	}
	logFile, err := createLog(job.log)
	if err != nil {
		return fmt.Errorf("service %q: %w", name, err)
	}
	defer logFile.Close()
	i.log.InfoContext(ctx, "building image", "service", name, "ref", job.ref, "log", job.log)
	var last tail
	out := io.MultiWriter(logFile, &last)
	if err := i.runBuild(ctx, job, out); err != nil {
		if _, werr := fmt.Fprintf(logFile, "ERROR: %v\n", err); werr != nil {
			i.log.WarnContext(ctx, "cannot write build log", "log", job.log, "err", werr)
		}
		return &BuildError{Service: name, Log: job.log, Tail: last.lines(tailLines), Err: err}
	}
	if err := logFile.Close(); err != nil {
		return fmt.Errorf("service %q: build log: %w", name, err)
	}
	return nil
}

// runBuild sends the build context and reads the whole output stream: the
// engine reports a failed step inside the stream, not as the call's error.
func (i *Images) runBuild(ctx context.Context, job buildJob, out io.Writer) error {
	tarball, dockerfile, err := contextTar(*job.svc.Build)
	if err != nil {
		return err
	}
	defer tarball.Close()
	opts := buildOptions(job.project, job.svc, job.ref)
	opts.Labels[LabelBuild] = job.digest
	opts.Dockerfile = dockerfile
	opts.PullParent = opts.PullParent || job.pullBase
	res, err := i.docker.ImageBuild(ctx, tarball, opts)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	return copyStream(res.Body, out)
}

// buildOptions maps the compose build section to the classic builder's
// options, with the labels that tie the image to its project. The commit is
// not among them: a commit that leaves a service's build context alone then
// builds, from the layer cache, the very image the running container has,
// and the service is not recreated. The commit is on the container.
func buildOptions(project string, svc types.ServiceConfig, ref string) client.ImageBuildOptions {
	b := svc.Build
	labels := maps.Clone(b.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[converge.LabelProject] = project
	labels[converge.LabelService] = svc.Name
	return client.ImageBuildOptions{
		Tags:        []string{ref},
		Version:     build.BuilderV1,
		Remove:      true,
		ForceRemove: true,
		NoCache:     b.NoCache,
		PullParent:  b.Pull,
		Target:      b.Target,
		NetworkMode: b.Network,
		ExtraHosts:  b.ExtraHosts.AsList(":"),
		ShmSize:     int64(b.ShmSize),
		BuildArgs:   setArgs(b.Args),
		Labels:      labels,
	}
}

// setArgs keeps the build args that have a value: an arg without one stays
// unset so the Dockerfile's ARG default applies, as with docker compose.
func setArgs(args types.MappingWithEquals) map[string]*string {
	set := map[string]*string{}
	for k, v := range args {
		if v != nil {
			set[k] = v
		}
	}
	return set
}

// unsupported rejects build options the classic builder cannot honour, rather
// than building something other than what the file asks for.
func unsupported(b types.BuildConfig) error {
	switch {
	case len(b.Secrets) > 0:
		return fmt.Errorf("build secrets need BuildKit, which hawser does not use")
	case len(b.SSH) > 0:
		return fmt.Errorf("build ssh needs BuildKit, which hawser does not use")
	case len(b.AdditionalContexts) > 0:
		return fmt.Errorf("build additional_contexts need BuildKit, which hawser does not use")
	}
	return nil
}

func createLog(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("build log: %w", err)
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("build log: %w", err)
	}
	return f, nil
}

// buildDigest identifies a resolved build section, build args included.
func buildDigest(b types.BuildConfig) (string, error) {
	data, err := json.Marshal(b)
	if err != nil {
		return "", fmt.Errorf("hash build section: %w", err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]), nil
}
