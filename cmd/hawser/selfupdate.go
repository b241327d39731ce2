package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"github.com/robfig/cron/v3"

	"hawser.dev/hawser/reconciler"
	"hawser.dev/hawser/reconciler/config"
	"hawser.dev/hawser/reconciler/images"
	"hawser.dev/hawser/registry"
)

// hawser updates itself when it runs in a container and the tag that
// container was created from gets a new image. The process cannot replace
// itself: its listeners and its store are held until it exits. So it waits
// until no deployment runs, starts a one-shot handover container (see
// handover.go), which stops it, starts its successor under its name and
// puts it back if the successor does not become healthy.

// selfUpdateFile, in the state directory, remembers the last attempt: a
// digest whose handover failed is not tried again.
const selfUpdateFile = "self-update.json"

const (
	// selfCheckTimeout bounds one check of the own tag, the pull included.
	selfCheckTimeout = 10 * time.Minute
	// handoverStartTimeout is how long the handover container may take to
	// stop this hawser; it does so first.
	handoverStartTimeout = 5 * time.Minute
)

// selfUpdate follows the tag of hawser's own container.
type selfUpdate struct {
	docker   *client.Client
	registry reconciler.Registry
	images   *images.Images
	rec      *reconciler.Reconciler
	schedule cron.Schedule
	record   string // the path of selfUpdateFile
	log      *slog.Logger
}

// watchOwnImage runs hawser's self-update until ctx ends. It does nothing
// when HAWSER_SELF_UPDATE is false or when hawser does not run in a
// container of the engine it drives. Its failures are logged, never fatal:
// hawser goes on running the version it runs.
func watchOwnImage(ctx context.Context, cfg *config.Config, docker *client.Client, rec *reconciler.Reconciler, log *slog.Logger) {
	if !cfg.SelfUpdate {
		return
	}
	self, err := ownContainer(ctx, docker)
	if err != nil {
		log.Debug("self-update off: not in a container of this engine", "err", err)
		return
	}
	// A checker of its own, with records in memory: a second SeenFile on
	// the reconciler's file would overwrite its records.
	checker, err := registry.New(registry.Options{Auth: cfg.RegistryAuth, Insecure: cfg.InsecureRegistries, Log: log})
	if err != nil {
		log.Error("self-update off", "err", err)
		return
	}
	s := &selfUpdate{
		docker: docker, registry: checker, rec: rec, log: log,
		images:   images.New(docker, "", log, images.WithRegistryAuth(checker.PullAuth)),
		schedule: cmp.Or(cfg.RegistrySchedule, cfg.Schedule),
		record:   filepath.Join(cfg.StateDir, selfUpdateFile),
	}
	s.run(ctx, self)
}

// run checks the own tag at every activation of the schedule.
func (s *selfUpdate) run(ctx context.Context, self container.InspectResponse) {
	if self.HostConfig != nil && self.HostConfig.AutoRemove {
		s.log.Warn("self-update off: hawser's container is removed when it stops (--rm), so it could not be put back")
		return
	}
	s.log.Info("self-update on", "container", containerName(self), "image", self.Config.Image)
	if a, ok := s.lastAttempt(); ok {
		s.log.Info("self-update: the last attempt", "digest", a.Digest, "started", a.Started, "result", a.Result, "reason", a.Reason)
	}
	for {
		t := time.NewTimer(time.Until(s.schedule.Next(time.Now())))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		s.check(ctx, self.ID)
	}
}

// successor is a newer image of the own tag, pulled.
type successor struct {
	digest string // the tag's digest in the registry
	image  string // the image ID
}

// check hands over when the own tag has a newer image.
func (s *selfUpdate) check(ctx context.Context, id string) {
	cctx, cancel := context.WithTimeout(ctx, selfCheckTimeout)
	defer cancel()
	res, err := s.docker.ContainerInspect(cctx, id, client.ContainerInspectOptions{})
	if err != nil {
		s.log.Warn("self-update: inspect own container", "err", err)
		return
	}
	next, err := s.newerImage(cctx, res.Container)
	if err != nil {
		s.log.Warn("self-update: check", "image", res.Container.Config.Image, "err", err)
		return
	}
	if next != nil {
		s.handOver(ctx, res.Container, *next)
	}
}

// newerImage asks the registry about the tag the container was created
// from, against the image the container runs (the tag may have moved
// locally since), and pulls the update. It returns nil when there is none,
// or when the handover to it failed before.
func (s *selfUpdate) newerImage(ctx context.Context, self container.InspectResponse) (*successor, error) {
	ref := self.Config.Image
	if strings.HasPrefix(strings.TrimPrefix(self.Image, "sha256:"), strings.TrimPrefix(ref, "sha256:")) {
		s.log.Debug("self-update: created from an image ID; no tag to follow", "image", ref)
		return nil, nil
	}
	img, err := s.docker.ImageInspect(ctx, self.Image)
	if err != nil {
		return nil, err
	}
	if len(img.RepoDigests) == 0 {
		s.log.Debug("self-update: the image was built on this host; no registry to follow", "image", ref)
		return nil, nil
	}
	res, err := s.registry.Check(ctx, registry.Check{Ref: ref, LocalRepoDigests: img.RepoDigests})
	if err != nil || !res.Update {
		return nil, err
	}
	if a, ok := s.lastAttempt(); ok && a.Digest == res.Remote && a.From == self.Image {
		s.log.Debug("self-update: the handover to this digest failed; waiting for the next", "digest", res.Remote, "reason", a.Reason)
		return nil, nil
	}
	pulled, err := s.images.Pull(ctx, res.Ref)
	if err != nil || pulled.ID == self.Image {
		return nil, err
	}
	return &successor{digest: res.Remote, image: pulled.ID}, nil
}

// handOver waits until no deployment runs, takes no new one, and starts
// the handover container, which stops this hawser: ctx ends then. If the
// handover ends without doing so, this hawser carries on.
func (s *selfUpdate) handOver(ctx context.Context, self container.InspectResponse, next successor) {
	qctx, cancel := context.WithTimeout(ctx, reconcileTimeout)
	resume, err := s.rec.Quiesce(qctx)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("self-update: deployments did not end; trying again at the next check", "err", err)
		}
		return
	}
	defer resume()
	s.log.Info("self-update: handing over to the new image", "image", self.Config.Image, "digest", next.digest, "id", next.image)
	id, err := s.startHandover(ctx, self, next)
	if err != nil {
		s.log.Error("self-update: start the handover", "err", err)
		return
	}
	reason := s.awaitHandover(ctx, id)
	if reason == "" {
		return
	}
	// The handover records why it gave up; one that crashed cannot.
	if a, ok := s.lastAttempt(); ok && a.Result != "" {
		reason = a.Reason
	} else {
		s.noteResult(resultNotStarted, reason)
	}
	s.log.Error("self-update: the handover did not take place; this version keeps running", "reason", reason)
}

// startHandover creates and starts the handover container, recording the
// attempt in between so that the handover finds it.
func (s *selfUpdate) startHandover(ctx context.Context, self container.InspectResponse, next successor) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	created, err := s.docker.ContainerCreate(ctx, handoverOptions(self, exe, next.image, s.record))
	if err != nil {
		return "", fmt.Errorf("create handover container: %w", err)
	}
	a := attempt{Digest: next.digest, From: self.Image, To: next.image, Started: time.Now()}
	if err = writeAttempt(s.record, a); err == nil {
		_, err = s.docker.ContainerStart(ctx, created.ID, client.ContainerStartOptions{})
	}
	if err != nil {
		_, rmErr := s.docker.ContainerRemove(ctx, created.ID, client.ContainerRemoveOptions{Force: true})
		return "", errors.Join(err, rmErr, removeMissing(s.record))
	}
	return created.ID, nil
}

// awaitHandover waits until the handover stops this hawser (ctx ends) and
// returns "". Otherwise it returns why the handover is over without that.
func (s *selfUpdate) awaitHandover(ctx context.Context, id string) string {
	wctx, cancel := context.WithTimeout(ctx, handoverStartTimeout)
	defer cancel()
	wait := s.docker.ContainerWait(wctx, id, client.ContainerWaitOptions{Condition: container.WaitConditionRemoved})
	var reason string
	select {
	case <-ctx.Done():
		return ""
	case res := <-wait.Result:
		reason = fmt.Sprintf("the handover container exited with code %d", res.StatusCode)
	case err := <-wait.Error:
		if ctx.Err() != nil {
			return ""
		}
		reason = fmt.Sprintf("waiting for the handover container: %v", err)
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if _, err := s.docker.ContainerRemove(rctx, id, client.ContainerRemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
		s.log.Warn("self-update: remove the handover container", "err", err)
	}
	return reason
}

func (s *selfUpdate) lastAttempt() (attempt, bool) {
	a, ok, err := readAttempt(s.record)
	if err != nil {
		s.log.Warn("self-update: read the last attempt", "err", err)
	}
	return a, ok
}

func (s *selfUpdate) noteResult(result, reason string) {
	if err := noteAttempt(s.record, result, reason); err != nil {
		s.log.Warn("self-update: record the result", "err", err)
	}
}

// ownContainer finds the container this process runs in, by the ID in the
// mount of /etc/hostname the engine sets up (also with the host's network
// and hostname) or else by the hostname, the short ID by default. Either is
// confirmed by the engine.
func ownContainer(ctx context.Context, docker *client.Client) (container.InspectResponse, error) {
	var candidates []string
	if f, err := os.Open("/proc/self/mountinfo"); err == nil {
		id := containerIDFromMountinfo(f)
		f.Close()
		if id != "" {
			candidates = append(candidates, id)
		}
	}
	if h, err := os.Hostname(); err == nil && shortID.MatchString(h) {
		candidates = append(candidates, h)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for _, id := range candidates {
		res, err := docker.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
		// By prefix: the engine also finds a container by a name.
		if err == nil && strings.HasPrefix(res.Container.ID, id) && res.Container.Config != nil {
			return res.Container, nil
		}
	}
	return container.InspectResponse{}, errors.New("no container of this engine has this process's ID or hostname")
}

var (
	shortID       = regexp.MustCompile(`^[0-9a-f]{12}$`)
	hostnameMount = regexp.MustCompile(`/containers/([0-9a-f]{64})/hostname$`)
)

// containerIDFromMountinfo finds the container ID in the source of the
// /etc/hostname mount, as /proc/self/mountinfo lists it: root is the
// fourth field, the mount point the fifth.
func containerIDFromMountinfo(r io.Reader) string {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 || f[4] != "/etc/hostname" {
			continue
		}
		if m := hostnameMount.FindStringSubmatch(f[3]); m != nil {
			return m[1]
		}
	}
	return ""
}

func containerName(ct container.InspectResponse) string {
	return strings.TrimPrefix(ct.Name, "/")
}

// attempt is one self-update, as selfUpdateFile keeps it.
type attempt struct {
	Digest  string    `json:"digest"` // the tag's new digest
	From    string    `json:"from"`   // the image ID that ran
	To      string    `json:"to"`     // the image ID of the successor
	Started time.Time `json:"started"`
	Result  string    `json:"result,omitempty"`
	Reason  string    `json:"reason,omitempty"`
}

// Results of an attempt.
const (
	resultHandedOver = "handed over"
	resultRolledBack = "rolled back"
	resultNotStarted = "not started"
)

func readAttempt(path string) (attempt, bool, error) {
	var a attempt
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return a, false, nil
	}
	if err == nil {
		err = json.Unmarshal(data, &a)
	}
	if err != nil {
		return a, false, fmt.Errorf("%s: %w", path, err)
	}
	return a, true, nil
}

// writeAttempt replaces the record whole: a crash leaves the old one or
// the new one.
func writeAttempt(path string, a attempt) error {
	data, err := json.MarshalIndent(a, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// noteAttempt sets the result of the recorded attempt.
func noteAttempt(path, result, reason string) error {
	a, ok, err := readAttempt(path)
	if err != nil || !ok {
		return cmp.Or(err, fmt.Errorf("%s: no attempt recorded", path))
	}
	a.Result, a.Reason = result, reason
	return writeAttempt(path, a)
}

func removeMissing(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
