package images_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/moby/client"

	"hawser.dev/hawser/reconciler/converge"
	"hawser.dev/hawser/reconciler/dockertest"
	"hawser.dev/hawser/reconciler/images"
)

var _ images.Docker = (*client.Client)(nil)

const commit = "0123456789abcdef0123456789abcdef01234567"

// spy counts the builds and pulls that reach the real engine.
type spy struct {
	images.Docker
	builds, pulls atomic.Int32
}

func (s *spy) ImageBuild(ctx context.Context, r io.Reader, o client.ImageBuildOptions) (client.ImageBuildResult, error) {
	s.builds.Add(1)
	return s.Docker.ImageBuild(ctx, r, o)
}

func (s *spy) ImagePull(ctx context.Context, ref string, o client.ImagePullOptions) (client.ImagePullResponse, error) {
	s.pulls.Add(1)
	return s.Docker.ImagePull(ctx, ref, o)
}

// env is one test's engine, project name and Images.
type env struct {
	t      *testing.T
	c      *client.Client
	docker *spy
	images *images.Images
	name   string
	logDir string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	c := dockertest.Client(t)
	dockertest.Busybox(t, c)
	name := "hawser-images-" + strings.ToLower(regexp.MustCompile(`[^A-Za-z0-9]`).ReplaceAllString(t.Name(), "")) +
		fmt.Sprintf("-%d", time.Now().UnixNano()%1e6)
	t.Cleanup(func() { dockertest.RemoveLabelled(t, c, converge.LabelProject+"="+name) })
	s := &spy{Docker: c}
	logDir := t.TempDir()
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	return &env{t: t, c: c, docker: s, images: images.New(s, logDir, log), name: name, logDir: logDir}
}

// project writes files (path → content) to a fresh directory and loads its
// compose.yaml.
func (e *env) project(files map[string]string) *types.Project {
	e.t.Helper()
	dir := e.t.TempDir()
	for path, content := range files {
		full := filepath.Join(dir, path)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			e.t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			e.t.Fatal(err)
		}
	}
	opts, err := cli.NewProjectOptions([]string{filepath.Join(dir, "compose.yaml")},
		cli.WithName(e.name), cli.WithWorkingDirectory(dir))
	if err != nil {
		e.t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		e.t.Fatalf("load project: %v", err)
	}
	return p
}

func (e *env) ensure(p *types.Project, service string) (images.Image, error) {
	e.t.Helper()
	svc, err := p.GetService(service)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return e.images.Ensure(ctx, p, svc, commit)
}

func (e *env) labels(ref string) map[string]string {
	e.t.Helper()
	res, err := e.c.ImageInspect(context.Background(), ref)
	if err != nil {
		e.t.Fatalf("inspect %s: %v", ref, err)
	}
	return res.Config.Labels
}

// buildProject is a build service whose Dockerfile fails unless the build
// arg and the copied file arrive. unique makes its layers the test's own.
// Every building test starts with such a step of its own, so that tests can
// build in parallel and remove their images without touching another's.
func buildProject(unique string) map[string]string {
	return map[string]string{
		"compose.yaml": `
services:
  web:
    build:
      context: .
      args:
        GREETING: hello
        UNSET:
      labels:
        org.example.team: blue
`,
		"Dockerfile": `FROM hawser-test/busybox:1.36
COPY unique.txt /unique.txt
ARG GREETING
ARG UNSET=default
RUN test "$GREETING" = hello && test "$UNSET" = default && echo built-ok
`,
		"unique.txt": unique,
	}
}

func TestBuildIsTaggedForCommitAndLabelled(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	img, err := e.ensure(e.project(buildProject(e.name)), "web")
	if err != nil {
		t.Fatal(err)
	}
	if want := e.name + "-web:0123456789ab"; img.Ref != want {
		t.Errorf("ref = %q, want %q", img.Ref, want)
	}
	if !img.Built || img.BuildDuration <= 0 || !strings.HasPrefix(img.ID, "sha256:") {
		t.Errorf("image = %+v, want built with a duration and a sha256 ID", img)
	}
	want := map[string]string{
		converge.LabelProject: e.name, converge.LabelService: "web",
		"org.example.team": "blue",
	}
	got := e.labels(img.Ref)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("label %s = %q, want %q", k, got[k], v)
		}
	}
	log, err := os.ReadFile(filepath.Join(e.logDir, e.name, "0123456789ab-web.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), "built-ok") {
		t.Errorf("build log lacks the build's output:\n%s", log)
	}
}

func TestSecondEnsureForSameCommitDoesNotBuild(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.project(buildProject(e.name))
	first, err := e.ensure(p, "web")
	if err != nil {
		t.Fatal(err)
	}
	second, err := e.ensure(p, "web")
	if err != nil {
		t.Fatal(err)
	}
	if n := e.docker.builds.Load(); n != 1 {
		t.Errorf("%d builds, want 1", n)
	}
	if second.Built || second.ID != first.ID || second.Ref != first.Ref {
		t.Errorf("second = %+v, want the first build's image %+v, not built", second, first)
	}
}

func TestChangedBuildArgRebuildsTheSameCommit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	files := func(level string) map[string]string {
		return map[string]string{
			"compose.yaml": "services:\n  web:\n    build:\n      context: .\n      args: {LEVEL: \"" + level + "\"}\n",
			"Dockerfile":   "FROM hawser-test/busybox:1.36\nARG LEVEL\nRUN echo $LEVEL > /level\n",
		}
	}
	first, err := e.ensure(e.project(files("one")), "web")
	if err != nil {
		t.Fatal(err)
	}
	second, err := e.ensure(e.project(files("two")), "web")
	if err != nil {
		t.Fatal(err)
	}
	if n := e.docker.builds.Load(); n != 2 || !second.Built || second.ID == first.ID || second.Ref != first.Ref {
		t.Fatalf("%d builds; first %+v, second %+v: want a rebuild under the same tag", n, first, second)
	}
}

func TestDockerignoredFilesAreNotSentButDockerfileIs(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.project(map[string]string{
		"compose.yaml": "services:\n  web:\n    build: .\n",
		// Excluding the Dockerfile too, as some projects do: it must still be sent.
		".dockerignore": "secret.txt\nDockerfile\n",
		"Dockerfile": "FROM hawser-test/busybox:1.36\nCOPY . /ctx/\n" +
			"RUN test -e /ctx/kept.txt && test ! -e /ctx/secret.txt\n",
		"kept.txt":   e.name,
		"secret.txt": "do not ship",
	})
	if _, err := e.ensure(p, "web"); err != nil {
		t.Fatal(err)
	}
}

func TestInlineDockerfileIsBuiltAndNotCopied(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.project(map[string]string{
		"compose.yaml": `
services:
  web:
    build:
      context: .
      dockerfile_inline: |
        FROM hawser-test/busybox:1.36
        COPY . /ctx/
        RUN test -e /ctx/kept.txt && test ! -e /ctx/.hawser.Dockerfile
`,
		"kept.txt": e.name,
	})
	if _, err := e.ensure(p, "web"); err != nil {
		t.Fatal(err)
	}
}

func TestFailedBuildNamesServiceLogAndOutput(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	marker := "marker-" + e.name
	p := e.project(map[string]string{
		"compose.yaml": "services:\n  api:\n    build: .\n",
		"Dockerfile":   "FROM hawser-test/busybox:1.36\nRUN echo " + marker + " && false\n",
	})
	_, err := e.ensure(p, "api")
	if err == nil {
		t.Fatal("build of a failing Dockerfile succeeded")
	}
	t.Logf("build error: %v", err)
	logPath := filepath.Join(e.logDir, e.name, "0123456789ab-api.log")
	var be *images.BuildError
	if !errors.As(err, &be) || be.Service != "api" || be.Log != logPath {
		t.Fatalf("error = %#v, want a BuildError for api with log %s", err, logPath)
	}
	for _, want := range []string{`"api"`, logPath, "non-zero code"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if tail := strings.Join(be.Tail, "\n"); !strings.Contains(tail, marker) {
		t.Errorf("tail lacks the build's output:\n%s", tail)
	}
	log, rerr := os.ReadFile(logPath)
	if rerr != nil {
		t.Fatal(rerr)
	}
	if !strings.Contains(string(log), marker) || !strings.Contains(string(log), "non-zero code") {
		t.Errorf("log lacks the output and the failure:\n%s", log)
	}
}

func TestNeverPolicyWithMissingImageFails(t *testing.T) {
	e := newEnv(t)
	ref := "127.0.0.1:1/hawser/" + e.name + ":1"
	p := e.project(map[string]string{
		"compose.yaml": "services:\n  db:\n    image: " + ref + "\n    pull_policy: never\n",
	})
	_, err := e.ensure(p, "db")
	t.Logf("error: %v", err)
	if err == nil || !strings.Contains(err.Error(), ref) || !strings.Contains(err.Error(), "never") {
		t.Fatalf("error = %v, want one naming %s and the never policy", err, ref)
	}
	if n := e.docker.pulls.Load(); n != 0 {
		t.Errorf("%d pulls, want none", n)
	}
}

func TestPresentImageIsNotPulled(t *testing.T) {
	e := newEnv(t)
	p := e.project(map[string]string{
		"compose.yaml": "services:\n  db:\n    image: " + dockertest.BusyboxImage + "\n",
	})
	img, err := e.ensure(p, "db")
	if err != nil {
		t.Fatal(err)
	}
	busybox, err := e.c.ImageInspect(context.Background(), dockertest.BusyboxImage)
	if err != nil {
		t.Fatal(err)
	}
	if img.Ref != dockertest.BusyboxImage || img.ID != busybox.ID || img.Pulled || img.Built {
		t.Errorf("image = %+v, want busybox %s as it is", img, busybox.ID)
	}
	if n := e.docker.pulls.Load(); n != 0 {
		t.Errorf("%d pulls, want none", n)
	}
}

func TestMissingImageIsPulledAndPullFailureReported(t *testing.T) {
	e := newEnv(t)
	ref := "127.0.0.1:1/hawser/" + e.name + ":1"
	p := e.project(map[string]string{"compose.yaml": "services:\n  db:\n    image: " + ref + "\n"})
	_, err := e.ensure(p, "db")
	t.Logf("pull error: %v", err)
	if err == nil || !strings.Contains(err.Error(), `"db"`) || !strings.Contains(err.Error(), "pull "+ref) {
		t.Fatalf("error = %v, want a pull failure naming db and %s", err, ref)
	}
	if n := e.docker.pulls.Load(); n != 1 {
		t.Errorf("%d pulls, want 1", n)
	}
}

func TestAlwaysPolicyPullsPresentImage(t *testing.T) {
	e := newEnv(t)
	ref := "127.0.0.1:1/hawser/" + e.name + ":1"
	ctx := context.Background()
	if _, err := e.c.ImageTag(ctx, client.ImageTagOptions{Source: dockertest.BusyboxImage, Target: ref}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Untags only: busybox keeps its own tag.
		if _, err := e.c.ImageRemove(ctx, ref, client.ImageRemoveOptions{}); err != nil {
			t.Errorf("untag %s: %v", ref, err)
		}
	})
	p := e.project(map[string]string{
		"compose.yaml": "services:\n  db:\n    image: " + ref + "\n    pull_policy: always\n",
	})
	_, err := e.ensure(p, "db")
	if err == nil || !strings.Contains(err.Error(), "pull "+ref) {
		t.Fatalf("error = %v, want the pull of %s to be tried and fail", err, ref)
	}
	if n := e.docker.pulls.Load(); n != 1 {
		t.Errorf("%d pulls, want 1", n)
	}
}

func TestTagUsesFirstTwelveHexOfCommit(t *testing.T) {
	if got, want := images.Tag("shop", "Web", commit), "shop-web:0123456789ab"; got != want {
		t.Errorf("Tag = %q, want %q", got, want)
	}
}

func TestBuildPolicyWithoutBuildSectionFails(t *testing.T) {
	i := images.New(nil, t.TempDir(), slog.New(slog.NewTextHandler(t.Output(), nil)))
	svc := types.ServiceConfig{Name: "web"}
	svc.Image, svc.PullPolicy = "hawser-test/busybox:1.36", types.PullPolicyBuild
	_, err := i.Ensure(context.Background(), &types.Project{Name: "shop"}, svc, commit)
	if err == nil || !strings.Contains(err.Error(), `"web"`) || !strings.Contains(err.Error(), "no build section") {
		t.Fatalf("error = %v, want one saying web has no build section", err)
	}
}
