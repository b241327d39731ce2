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
	cerrdefs "github.com/containerd/errdefs"
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

// Error names the service and the log and shows the tail of the output.
// Error names the service, the engine's message and the log; the output
// itself stays in Tail and the log file, out of logs and API answers.
func (e *BuildError) Error() string {
	return fmt.Sprintf("build of service %q failed: %v (full output in %s)", e.Service, e.Err, e.Log)
}

// Unwrap returns what the engine reported.
func (e *BuildError) Unwrap() error { return e.Err }

// ensureBuilt builds svc's image for commit unless an image with its tag was
// built from the same build section: a commit's sources never change, but
// build args from the host's .env can.
func (i *Images) ensureBuilt(ctx context.Context, project string, svc types.ServiceConfig, commit string) (Image, error) {
	if svc.Build == nil {
		return Image{}, fmt.Errorf("service %q: pull_policy is build but there is no build section", svc.Name)
	}
	if commit == "" {
		return Image{}, fmt.Errorf("service %q: no commit to tag the build with", svc.Name)
	}
	ref := Tag(project, svc.Name, commit)
	res, err := i.docker.ImageInspect(ctx, ref)
	if err != nil && !cerrdefs.IsNotFound(err) {
		return Image{}, fmt.Errorf("service %q: inspect image %s: %w", svc.Name, ref, err)
	}
	logPath := i.logPath(project, svc.Name, commit)
	digest, err := buildDigest(*svc.Build)
	if err != nil {
		return Image{}, fmt.Errorf("service %q: %w", svc.Name, err)
	}
	if err == nil && res.Config != nil && res.Config.Labels[LabelBuild] == digest {
		return Image{Ref: ref, ID: res.ID, Log: logPath}, nil
	}
	start := time.Now()
	if err := i.build(ctx, project, svc, commit, ref, logPath, digest); err != nil {
		return Image{}, err
	}
	took := time.Since(start)
	id, found, err := i.imageID(ctx, ref)
	if err == nil && !found {
		err = fmt.Errorf("image %s missing after build", ref)
	}
	if err != nil {
		return Image{}, fmt.Errorf("service %q: %w", svc.Name, err)
	}
	i.log.InfoContext(ctx, "built image", "service", svc.Name, "ref", ref, "duration", took)
	return Image{Ref: ref, ID: id, Built: true, BuildDuration: took, Log: logPath}, nil
}

// logPath is where the build of a service at a commit writes its output.
func (i *Images) logPath(project, service, commit string) string {
	return filepath.Join(i.logDir, project, shortCommit(commit)+"-"+service+".log")
}

// build runs one build, writing its output to the service's log file.
func (i *Images) build(ctx context.Context, project string, svc types.ServiceConfig, commit, ref, logPath, digest string) error {
	if err := unsupported(*svc.Build); err != nil {
		return fmt.Errorf("service %q: %w", svc.Name, err)
	}
	logFile, err := createLog(logPath)
	if err != nil {
		return fmt.Errorf("service %q: %w", svc.Name, err)
	}
	defer logFile.Close()
	i.log.InfoContext(ctx, "building image", "service", svc.Name, "ref", ref, "log", logPath)
	var last tail
	out := io.MultiWriter(logFile, &last)
	if err := i.runBuild(ctx, project, svc, commit, ref, digest, out); err != nil {
		if _, werr := fmt.Fprintf(logFile, "ERROR: %v\n", err); werr != nil {
			i.log.WarnContext(ctx, "cannot write build log", "log", logPath, "err", werr)
		}
		return &BuildError{Service: svc.Name, Log: logPath, Tail: last.lines(tailLines), Err: err}
	}
	if err := logFile.Close(); err != nil {
		return fmt.Errorf("service %q: build log: %w", svc.Name, err)
	}
	return nil
}

// runBuild sends the build context and reads the whole output stream: the
// engine reports a failed step inside the stream, not as the call's error.
func (i *Images) runBuild(ctx context.Context, project string, svc types.ServiceConfig, commit, ref, digest string, out io.Writer) error {
	tarball, dockerfile, err := contextTar(*svc.Build)
	if err != nil {
		return err
	}
	defer tarball.Close()
	opts := buildOptions(project, svc, commit, ref)
	opts.Labels[LabelBuild] = digest
	opts.Dockerfile = dockerfile
	res, err := i.docker.ImageBuild(ctx, tarball, opts)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	return copyStream(res.Body, out)
}

// buildOptions maps the compose build section to the classic builder's
// options, with the labels that tie the image to its project and commit.
func buildOptions(project string, svc types.ServiceConfig, commit, ref string) client.ImageBuildOptions {
	b := svc.Build
	labels := maps.Clone(b.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[converge.LabelProject] = project
	labels[converge.LabelService] = svc.Name
	labels[converge.LabelCommit] = commit
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
