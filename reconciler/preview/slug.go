// Package preview names a branch's preview: the DNS label it is served
// under, the labels of its other routed services and its compose project.
//
// A branch name is chosen by whoever can push, so it is hostile input: it
// never reaches a host name or a project name except through these functions.
package preview

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"strings"

	"github.com/compose-spec/compose-go/v2/loader"
)

const (
	// maxLabel is the longest DNS label (RFC 1035) and the longest name kept.
	maxLabel = 63
	// hashLen is how many hex digits of sha256 tell apart names that
	// sanitise alike. Hex rather than base32: a base32 suffix ([a-z2-7]{8})
	// is the shape of everyday words ("frontend", "password"), so reserving
	// it would hash ordinary branches; eight hex digits are rarely a word.
	hashLen = 8
	// stemMax leaves room for "-" and the hash within maxLabel.
	stemMax = maxLabel - 1 - hashLen
)

var (
	labelPattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	// commitPattern is the label of a per-commit preview, c-<commit12>.
	commitPattern = regexp.MustCompile(`^c-[0-9a-f]{12}$`)
	// hashedPattern is the tail every hashed name ends with; a branch
	// that already looks like that is hashed too, or "feat-x-<hash>" pushed
	// as a branch would take over the preview of "feat/x".
	hashedPattern = regexp.MustCompile(`-[0-9a-f]{8}$`)
)

// Slug returns the DNS label a branch's preview is served under.
//
// A branch that is already a lowercase DNS label is kept as it is; any other
// is lowercased, has every run of other characters turned into one "-", is
// cut to leave room, and gets "-" and the first 8 hex digits of the sha256 of
// the full branch name appended, so names that sanitise alike still differ.
// Branch names of the shape the hash or a per-commit preview (c-<commit12>)
// take are hashed as well, so no branch can claim another's label. The
// result is the same on every run. Pass the short name, without refs/heads/.
func Slug(branch string) string {
	if ValidLabel(branch) && !IsCommitLabel(branch) && !hashedPattern.MatchString(branch) {
		return branch
	}
	return hashed(labelStem(branch), "b", branch)
}

// Host joins a slug (or a service-and-slug) and the preview domain, e.g.
// Host("web-feat-x-1a2b3c4d", "preview.example.com"). The domain is written
// the way the proxy keys its routes: lowercase, without a trailing dot.
func Host(label, domain string) string {
	return label + "." + strings.ToLower(strings.TrimSuffix(domain, "."))
}

// ServiceLabel is the label of a non-primary routed service of a preview:
// "<service>-<slug>", kept one valid label (≤63, hashed the same way as Slug
// if too long or not a label as it is). It never takes the shape of a
// per-commit preview's label.
func ServiceLabel(service, slug string) string {
	label := service + "-" + slug
	if ValidLabel(label) && !IsCommitLabel(label) {
		return label
	}
	return hashed(labelStem(label), "s", service+"\x00"+slug)
}

// ProjectName is the compose project of a preview: "<project>-<slug>", valid
// for docker compose (lowercase, [a-z0-9_-], starts with a letter or digit),
// hashed like Slug if needed to stay ≤ 63.
func ProjectName(project, slug string) string {
	name := project + "-" + slug
	if len(name) <= maxLabel && loader.NormalizeProjectName(name) == name {
		return name
	}
	return hashed(projectStem(name), "p", project+"\x00"+slug)
}

// ValidLabel reports whether s is one lowercase DNS label: 1–63 of a-z0-9-,
// not starting or ending with "-", and without the "--" at positions 3–4 that
// IDNA reserves for "xn--" and its kin.
func ValidLabel(s string) bool {
	return labelPattern.MatchString(s) && !(len(s) >= 4 && s[2:4] == "--")
}

// IsCommitLabel reports whether label has the shape of a per-commit
// preview's label, c-<commit12>, which no branch's slug ever takes.
func IsCommitLabel(label string) bool {
	return commitPattern.MatchString(label)
}

// hashed appends the hash of the full name to a sanitised stem; fallback
// stands in for a stem left empty, so the result starts with a letter.
func hashed(stem, fallback, full string) string {
	if stem == "" {
		stem = fallback
	}
	sum := sha256.Sum256([]byte(full))
	return stem + "-" + hex.EncodeToString(sum[:])[:hashLen]
}

// labelStem is s cut down to what a DNS label may hold.
func labelStem(s string) string {
	return stem(s, func(b byte) bool { return isLower(b) || isDigit(b) })
}

// projectStem is s cut down to what a compose project name may hold.
func projectStem(s string) string {
	return stem(s, func(b byte) bool { return isLower(b) || isDigit(b) || b == '_' })
}

// stem lowercases ASCII letters, turns each run of other bytes into one "-",
// and trims separators from both ends, also after cutting it to stemMax.
// It works on bytes, not runes: a multi-byte or invalid UTF-8 sequence is
// just another run of unwanted bytes.
func stem(s string, keep func(byte) bool) string {
	var b strings.Builder
	for i := range len(s) {
		c := toLower(s[i])
		switch {
		case keep(c):
			b.WriteByte(c)
		case b.Len() > 0 && !strings.HasSuffix(b.String(), "-"):
			b.WriteByte('-')
		}
	}
	out := strings.Trim(b.String(), "-_")
	return strings.TrimRight(out[:min(len(out), stemMax)], "-_")
}

func toLower(b byte) byte {
	if 'A' <= b && b <= 'Z' {
		return b + 'a' - 'A'
	}
	return b
}

func isLower(b byte) bool { return 'a' <= b && b <= 'z' }
func isDigit(b byte) bool { return '0' <= b && b <= '9' }
