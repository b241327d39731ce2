package compose

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
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

// ServiceFingerprint hashes the service the way docker compose decides on a
// recreate: the resolved definition, leaving out what is applied without
// recreating a container (how the image is built or pulled, the replica
// count, dependencies and profiles). The image itself is compared by ID,
// separately, so a per-commit tag does not change every built service.
func ServiceFingerprint(svc types.ServiceConfig) (Fingerprint, error) {
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
