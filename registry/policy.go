package registry

import (
	"fmt"
	"strings"

	"github.com/Masterminds/semver/v3"
)

// PolicyLabel is the service label that chooses a service's update policy.
const PolicyLabel = "dev.hawser.update"

// Policy says how a service follows its image.
type Policy string

// The update policies, the values of PolicyLabel.
const (
	// PolicyDigest follows the tag: a new digest under it is an update.
	PolicyDigest Policy = "digest"
	// PolicyNone never touches the service's image.
	PolicyNone Policy = "none"
	// PolicySemver moves to the newest higher version, major jumps included.
	PolicySemver Policy = "semver"
	// PolicySemverMinor moves to the newest higher version of the same major.
	PolicySemverMinor Policy = "semver:minor"
	// PolicySemverPatch moves to the newest higher version of the same
	// major.minor.
	PolicySemverPatch Policy = "semver:patch"
)

var policies = []Policy{PolicyDigest, PolicyNone, PolicySemver, PolicySemverMinor, PolicySemverPatch}

// ParsePolicy parses a PolicyLabel value; empty means PolicyDigest.
func ParsePolicy(value string) (Policy, error) {
	value = strings.TrimSpace(value)
	if value == "" {
		return PolicyDigest, nil
	}
	for _, p := range policies {
		if string(p) == value {
			return p, nil
		}
	}
	return "", fmt.Errorf("invalid value %q, want one of %s", value, joinPolicies())
}

// PolicyFor returns the policy a service's labels ask for; errors name the
// service and the label.
func PolicyFor(service string, labels map[string]string) (Policy, error) {
	p, err := ParsePolicy(labels[PolicyLabel])
	if err != nil {
		return "", fmt.Errorf("service %q: label %s: %w", service, PolicyLabel, err)
	}
	return p, nil
}

func joinPolicies() string {
	names := make([]string, len(policies))
	for i, p := range policies {
		names[i] = string(p)
	}
	return strings.Join(names, ", ")
}

// semverPolicy reports whether p picks among the repository's tags.
func (p Policy) semverPolicy() bool {
	return p == PolicySemver || p == PolicySemverMinor || p == PolicySemverPatch
}

// tagVersion is a tag read as a semantic version, remembering its "v".
type tagVersion struct {
	tag     string
	vPrefix bool
	version *semver.Version
}

// parseTag reads tag as a strict semantic version (MAJOR.MINOR.PATCH, with
// optional pre-release), optionally prefixed with "v".
func parseTag(tag string) (tagVersion, bool) {
	rest, vPrefix := strings.CutPrefix(tag, "v")
	v, err := semver.StrictNewVersion(rest)
	if err != nil {
		return tagVersion{}, false
	}
	return tagVersion{tag: tag, vPrefix: vPrefix, version: v}, true
}

// newestTag picks, among tags, the newest version p allows relative to
// current: same "v" style, no pre-releases unless current is one, and
// within the major (semver:minor) or major.minor (semver:patch). It returns
// current when nothing newer is allowed.
func newestTag(current string, tags []string, p Policy) (string, error) {
	cur, ok := parseTag(current)
	if !ok {
		return "", fmt.Errorf("tag %q is not a semantic version (MAJOR.MINOR.PATCH), which policy %s needs", current, p)
	}
	best := cur
	for _, t := range tags {
		cand, ok := parseTag(t)
		if ok && allowed(cur, cand, p) && cand.version.GreaterThan(best.version) {
			best = cand
		}
	}
	return best.tag, nil
}

func allowed(cur, cand tagVersion, p Policy) bool {
	if cand.vPrefix != cur.vPrefix {
		return false
	}
	if cand.version.Prerelease() != "" && cur.version.Prerelease() == "" {
		return false
	}
	switch p {
	case PolicySemverMinor:
		return cand.version.Major() == cur.version.Major()
	case PolicySemverPatch:
		return cand.version.Major() == cur.version.Major() && cand.version.Minor() == cur.version.Minor()
	default:
		return true
	}
}
