package compose

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
)

// Fingerprint identifies the resolved configuration of one service: a
// container whose fingerprint differs from the desired one must be recreated.
type Fingerprint struct {
	// Hash covers the whole configuration.
	Hash string
	// Keys holds a short hash per top-level field, so a change can be
	// explained by naming the fields that changed.
	Keys map[string]string
}

// contentKey is the fingerprint key of the files a service mounts from the
// checkout.
const contentKey = "mounted files"

// ServiceFingerprint hashes the service the way docker compose decides on a
// recreate: the resolved definition, leaving out what is applied without
// recreating a container (how the image is built or pulled, the replica
// count, dependencies and profiles). The image itself is compared by ID,
// separately, so a per-commit tag does not change every built service.
//
// Files the service bind-mounts from below root (the checkout) are hashed by
// content: each commit has its own directory, so a container sees a changed
// file only when it is recreated.
func ServiceFingerprint(p *types.Project, svc types.ServiceConfig, root string) (Fingerprint, error) {
	fp, err := configFingerprint(svc)
	if err != nil {
		return fp, err
	}
	content, err := mountedContent(p, svc, root)
	if err != nil {
		return fp, fmt.Errorf("hash service %q: %w", svc.Name, err)
	}
	if content != "" {
		fp.Keys[contentKey] = content[:8]
		fp.Hash = digest([]byte(fp.Hash + content))
	}
	return fp, nil
}

func configFingerprint(svc types.ServiceConfig) (Fingerprint, error) {
	svc.Build = nil
	svc.PullPolicy = ""
	svc.Scale = nil
	svc.DependsOn = nil
	svc.Profiles = nil
	if svc.Deploy != nil {
		deploy := *svc.Deploy
		deploy.Replicas = nil
		svc.Deploy = &deploy
	}
	whole, err := json.Marshal(svc)
	if err != nil {
		return Fingerprint{}, fmt.Errorf("hash service %q: %w", svc.Name, err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(whole, &fields); err != nil {
		return Fingerprint{}, fmt.Errorf("hash service %q: %w", svc.Name, err)
	}
	fp := Fingerprint{Hash: digest(whole), Keys: make(map[string]string, len(fields))}
	for k, v := range fields {
		fp.Keys[k] = digest(v)[:8]
	}
	return fp, nil
}

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// EncodeKeys renders the per-field hashes as a label value.
func (f Fingerprint) EncodeKeys() string {
	parts := make([]string, 0, len(f.Keys))
	for _, k := range slices.Sorted(maps.Keys(f.Keys)) {
		parts = append(parts, k+"="+f.Keys[k])
	}
	return strings.Join(parts, ",")
}

// ChangedKeys names the fields whose hash differs between an encoded label
// value (from a running container) and this fingerprint, sorted.
func (f Fingerprint) ChangedKeys(encoded string) []string {
	old := map[string]string{}
	for _, part := range strings.Split(encoded, ",") {
		if k, v, ok := strings.Cut(part, "="); ok {
			old[k] = v
		}
	}
	var changed []string
	for k, v := range f.Keys {
		if old[k] != v {
			changed = append(changed, k)
		}
	}
	for k := range old {
		if _, ok := f.Keys[k]; !ok {
			changed = append(changed, k)
		}
	}
	slices.Sort(changed)
	return changed
}

// mountedContent hashes the files and directories the service bind-mounts
// (volumes, file-based secrets and configs) that lie below root; "" when
// there are none.
func mountedContent(p *types.Project, svc types.ServiceConfig, root string) (string, error) {
	var sources []string
	for _, v := range svc.Volumes {
		if v.Type == types.VolumeTypeBind {
			sources = append(sources, v.Source)
		}
	}
	for _, ref := range svc.Secrets {
		sources = append(sources, p.Secrets[ref.Source].File)
	}
	for _, ref := range svc.Configs {
		sources = append(sources, p.Configs[ref.Source].File)
	}
	h := sha256.New()
	found := false
	for _, src := range sources {
		rel, err := filepath.Rel(root, src)
		if root == "" || src == "" || err != nil || !filepath.IsLocal(rel) {
			continue
		}
		found = true
		if err := hashTree(h, src); err != nil {
			return "", err
		}
	}
	if !found {
		return "", nil
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// hashTree writes the names, kinds and contents below path into h. A path
// that does not exist hashes as such: the engine creates it empty.
func hashTree(h io.Writer, path string) error {
	return filepath.WalkDir(path, func(name string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			fmt.Fprintf(h, "missing %q\n", name)
			return nil
		}
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(path, name)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%q %v\n", rel, d.Type())
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(name)
			fmt.Fprintf(h, "-> %q\n", target)
			return err
		case d.Type().IsRegular():
			return hashFile(h, name)
		}
		return nil
	})
}

func hashFile(h io.Writer, name string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(h, f)
	return err
}
