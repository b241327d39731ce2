// Package dockertest gives tests a real Docker engine and the images they need
// on a machine that cannot pull: busybox is imported from the host's
// busybox-static binary, and everything a test creates is labelled and removed.
package dockertest

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
)

// BusyboxImage is the reference tests use for busybox: a local-only name,
// so no test follows a tag a registry also has.
const BusyboxImage = "hawser-test/busybox:1.36"

// Label marks every object a test creates; its value is the test's name.
const Label = "dev.hawser.test"

// busyboxBinary is where Debian's busybox-static installs its binary.
const busyboxBinary = "/bin/busybox"

// Client returns a client for the local engine. When the engine cannot be
// reached the test fails in CI (CI=true) and is skipped elsewhere, with the
// reason either way.
func Client(t testing.TB) *client.Client {
	t.Helper()
	c, err := client.New(client.FromEnv)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err = c.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true})
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("docker engine required in CI but not reachable: %v", err)
		}
		t.Skipf("docker engine not reachable (set CI=true to make this a failure): %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

var importMu sync.Mutex

// Busybox makes sure BusyboxImage exists, importing it from the host's
// busybox-static binary (package busybox-static) when it is missing. The image
// is shared by tests and left in place: it is the stand-in for an image a real
// host would pull, and re-importing it per test would only cost time.
func Busybox(t testing.TB, c *client.Client) string {
	t.Helper()
	importMu.Lock()
	defer importMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := c.ImageInspect(ctx, BusyboxImage); err == nil {
		return BusyboxImage
	}
	rootfs, err := BusyboxRootfs()
	if err != nil {
		t.Fatalf("busybox rootfs: %v", err)
	}
	res, err := c.ImageImport(ctx, client.ImageImportSource{Source: bytes.NewReader(rootfs), SourceName: "-"},
		BusyboxImage, client.ImageImportOptions{})
	if err != nil {
		t.Fatalf("import %s: %v", BusyboxImage, err)
	}
	defer res.Close()
	if _, err := io.Copy(io.Discard, res); err != nil {
		t.Fatalf("import %s: %v", BusyboxImage, err)
	}
	return BusyboxImage
}

// BusyboxRootfs returns a tar of a minimal root file system: the static
// busybox binary and a symlink for each of its applets.
func BusyboxRootfs() ([]byte, error) {
	bin, err := os.ReadFile(busyboxBinary)
	if err != nil {
		return nil, fmt.Errorf("%w (install Debian's busybox-static)", err)
	}
	if err := static(bin); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	list, err := exec.CommandContext(ctx, busyboxBinary, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("busybox --list: %w", err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, dir := range []string{"bin/", "tmp/", "etc/", "www/"} {
		mode := int64(0o755)
		if dir == "tmp/" {
			mode = 0o1777
		}
		if err := tw.WriteHeader(&tar.Header{Name: dir, Typeflag: tar.TypeDir, Mode: mode}); err != nil {
			return nil, err
		}
	}
	if err := tw.WriteHeader(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bin))}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(bin); err != nil {
		return nil, err
	}
	for _, applet := range strings.Fields(string(list)) {
		if applet == "busybox" {
			continue
		}
		if err := tw.WriteHeader(&tar.Header{Name: "bin/" + applet, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777}); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Cleanup removes, when the test ends (also on failure), every container,
// network, volume and image that carries Label=value.
func Cleanup(t testing.TB, c *client.Client, value string) {
	t.Helper()
	t.Cleanup(func() { RemoveLabelled(t, c, Label+"="+value) })
}

// RemoveLabelled removes every container, network, volume and image that
// matches the label filter, reporting failures to t.
func RemoveLabelled(t testing.TB, c *client.Client, label string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	filters := client.Filters{}.Add("label", label)
	cs, err := c.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: filters})
	if err != nil {
		t.Errorf("cleanup list containers: %v", err)
	}
	var anonymous []string
	for _, ct := range cs.Items {
		if _, err := c.ContainerRemove(ctx, ct.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil {
			t.Errorf("cleanup container %s: %v", ct.ID, err)
		}
		for _, m := range ct.Mounts {
			if m.Type == "volume" && len(m.Name) == 64 {
				anonymous = append(anonymous, m.Name)
			}
		}
	}
	// A volume a replacement container mounted by name outlives rm -v.
	for _, v := range anonymous {
		if _, err := c.VolumeRemove(ctx, v, client.VolumeRemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("cleanup volume %s: %v", v, err)
		}
	}
	ns, err := c.NetworkList(ctx, client.NetworkListOptions{Filters: filters})
	if err != nil {
		t.Errorf("cleanup list networks: %v", err)
	}
	for _, n := range ns.Items {
		if _, err := c.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{}); err != nil {
			t.Errorf("cleanup network %s: %v", n.Name, err)
		}
	}
	vs, err := c.VolumeList(ctx, client.VolumeListOptions{Filters: filters})
	if err != nil {
		t.Errorf("cleanup list volumes: %v", err)
	}
	for _, v := range vs.Items {
		if _, err := c.VolumeRemove(ctx, v.Name, client.VolumeRemoveOptions{Force: true}); err != nil {
			t.Errorf("cleanup volume %s: %v", v.Name, err)
		}
	}
	is, err := c.ImageList(ctx, client.ImageListOptions{Filters: filters})
	if err != nil {
		t.Errorf("cleanup list images: %v", err)
	}
	for _, im := range is.Items {
		if _, err := c.ImageRemove(ctx, im.ID, client.ImageRemoveOptions{Force: true, PruneChildren: true}); err != nil {
			t.Errorf("cleanup image %s: %v", im.ID, err)
		}
	}
}

// static makes sure the busybox binary needs no loader: Debian's plain
// busybox package installs a dynamic one at the same path, which cannot run
// in an image that has nothing else.
func static(bin []byte) error {
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		return fmt.Errorf("%s: %w", busyboxBinary, err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked: install Debian's busybox-static instead of busybox", busyboxBinary)
		}
	}
	return nil
}

// CountingClient is a client for the local engine that tells count about
// every request it sends, by method and path, through the client's own
// request hook: benchmarks and tests count a tick's Docker calls with it.
func CountingClient(t testing.TB, count func(method, path string)) *client.Client {
	t.Helper()
	c, err := client.New(client.FromEnv, client.WithHTTPRequestHook(func(r *http.Request) error {
		count(r.Method, r.URL.Path)
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		t.Fatalf("docker engine not reachable: %v", err)
	}
	return c
}

// NormalPath drops the API version from a Docker API path and replaces
// object IDs and names by {id}, so /v1.41/containers/3f2a/json counts as
// /containers/{id}/json.
func NormalPath(path string) string {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	if len(parts) > 0 && strings.HasPrefix(parts[0], "v1.") {
		parts = parts[1:]
	}
	collections := map[string]bool{"containers": true, "images": true, "networks": true, "volumes": true}
	collectionOps := map[string]bool{"json": true, "create": true, "prune": true, "load": true, "search": true, "get": true}
	if len(parts) >= 2 && collections[parts[0]] && !collectionOps[parts[1]] {
		parts[1] = "{id}"
	}
	return "/" + strings.Join(parts, "/")
}

// Breakdown lists counted requests as "key=n, ...", sorted; "none" when
// there are none.
func Breakdown(counts map[string]int) string {
	if len(counts) == 0 {
		return "none"
	}
	parts := make([]string, 0, len(counts))
	for _, k := range slices.Sorted(maps.Keys(counts)) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, counts[k]))
	}
	return strings.Join(parts, ", ")
}
