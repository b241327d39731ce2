package registrytest

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"hawser.dev/hawser/reconciler/dockertest"
)

// pushTimeout bounds one push to the in-process registry.
const pushTimeout = time.Minute

// PushBusybox pushes to repo:tag a runnable linux/amd64 image: busybox (the
// host's busybox-static with its applet links in /bin), /marker holding
// marker, and the command "sleep 3600". Other markers make other digests; the busybox layer
// is the same in all, so the engine pulls it once. The image carries the
// label dockertest.Label=t.Name(), so dockertest.Cleanup(t, c, t.Name())
// removes what the engine pulled of it. It returns the manifest digest.
func (r *Registry) PushBusybox(t testing.TB, repo, tag, marker string) string {
	t.Helper()
	img := busybox(t, marker)
	r.write(t, repo, tag, img)
	return digestOf(t, img)
}

// PushIndex pushes to repo:tag a Docker manifest list of a runnable
// linux/amd64 busybox image with amd64Marker (as PushBusybox) and a
// linux/arm64 image that only holds /marker with arm64Marker, not
// runnable anywhere. Changing only arm64Marker changes the index digest but
// not the amd64 manifest. It returns the index digest.
func (r *Registry) PushIndex(t testing.TB, repo, tag, amd64Marker, arm64Marker string) string {
	t.Helper()
	arm64 := configured(t, markerImage(t, arm64Marker), "arm64", nil)
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.DockerManifestList),
		mutate.IndexAddendum{Add: busybox(t, amd64Marker), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm64, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
	)
	ctx, cancel := context.WithTimeout(t.Context(), pushTimeout)
	defer cancel()
	if err := remote.WriteIndex(r.adminRef(t, repo, tag), idx, remote.WithContext(ctx)); err != nil {
		t.Fatalf("push index %s:%s: %v", repo, tag, err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// PushTags pushes a runnable busybox image (as PushBusybox) under each of
// tags, with the tag as its marker, so a test can tell by digest or by
// /marker which tag a service runs. It returns the digests in tags' order.
func (r *Registry) PushTags(t testing.TB, repo string, tags ...string) []string {
	t.Helper()
	digests := make([]string, len(tags))
	for i, tag := range tags {
		digests[i] = r.PushBusybox(t, repo, tag, tag)
	}
	return digests
}

// write pushes img to repo:tag through the private server.
func (r *Registry) write(t testing.TB, repo, tag string, img v1.Image) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), pushTimeout)
	defer cancel()
	if err := remote.Write(r.adminRef(t, repo, tag), img, remote.WithContext(ctx)); err != nil {
		t.Fatalf("push %s:%s: %v", repo, tag, err)
	}
}

func (r *Registry) adminRef(t testing.TB, repo, tag string) name.Reference {
	t.Helper()
	ref, err := name.ParseReference(strings.TrimPrefix(r.admin.URL, "http://")+"/"+repo+":"+tag, name.Insecure)
	if err != nil {
		t.Fatalf("reference %s:%s: %v", repo, tag, err)
	}
	return ref
}

// busybox is the runnable linux/amd64 image with /marker.
func busybox(t testing.TB, marker string) v1.Image {
	t.Helper()
	rootfs, err := dockertest.BusyboxRootfs()
	if err != nil {
		t.Fatalf("busybox rootfs: %v", err)
	}
	base, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(rootfs)), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, base)
	if err != nil {
		t.Fatal(err)
	}
	img, err = mutate.AppendLayers(img, markerLayer(t, marker))
	if err != nil {
		t.Fatal(err)
	}
	return configured(t, img, "amd64", []string{"sleep", "3600"})
}

// markerImage is an image of nothing but /marker.
func markerImage(t testing.TB, marker string) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, markerLayer(t, marker))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func markerLayer(t testing.TB, marker string) v1.Layer {
	t.Helper()
	layer, err := crane.Layer(map[string][]byte{"marker": []byte(marker)})
	if err != nil {
		t.Fatal(err)
	}
	return layer
}

// configured sets img's platform (linux/arch), command and test label.
func configured(t testing.TB, img v1.Image, arch string, cmd []string) v1.Image {
	t.Helper()
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", arch
	cfg.Config.Cmd = cmd
	cfg.Config.Labels = map[string]string{dockertest.Label: t.Name()}
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func digestOf(t testing.TB, img v1.Image) string {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}
