package preview

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/compose-spec/compose-go/v2/dotenv"
)

// OverlayFile is the host's file of preview-only configuration, read from
// the directory of .env: configuration, like .env, and never in the
// repository.
const OverlayFile = ".env.preview"

// inheritPattern is what one entry of HAWSER_PREVIEW_INHERIT may hold: a
// variable name, possibly with glob characters. A space or "=" in it is a
// typo that would otherwise silently inherit nothing.
var inheritPattern = regexp.MustCompile(`^[A-Za-z0-9_*?\[\]^\\-]+$`)

// Env returns the interpolation environment of a preview: the keys of the
// host's .env that inherit names (exactly or by a path.Match glob such as
// PUBLIC_*), and then every key of the repository's overlay on top.
//
// A preview runs a branch's code, which anyone who can push may write, so
// it starts from nothing: a production secret reaches a branch only when an
// operator lists it. The overlay is the operator's own file of values for
// previews, so it may override anything.
func Env(host map[string]string, inherit []string, overlay map[string]string) map[string]string {
	env := make(map[string]string, len(overlay))
	for k, v := range host {
		if inherited(k, inherit) {
			env[k] = v
		}
	}
	for k, v := range overlay {
		env[k] = v
	}
	return env
}

func inherited(key string, patterns []string) bool {
	for _, p := range patterns {
		// A malformed pattern matches nothing; ParseInherit refuses them
		// before they get here.
		if ok, _ := path.Match(p, key); ok {
			return true
		}
	}
	return false
}

// ParseInherit reads HAWSER_PREVIEW_INHERIT: comma-separated variable names
// or globs, blanks around them ignored. An entry that is not a valid glob,
// or holds characters no variable name has, is an error naming it.
func ParseInherit(v string) ([]string, error) {
	var out []string
	for _, entry := range strings.Split(v, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		if !inheritPattern.MatchString(entry) {
			return nil, fmt.Errorf("%q is not a variable name or glob", entry)
		}
		if _, err := path.Match(entry, ""); err != nil {
			return nil, fmt.Errorf("%q: %w", entry, err)
		}
		out = append(out, entry)
	}
	return out, nil
}

// LoadOverlay reads dir's .env.preview in docker compose's dialect; no file
// means no overlay. Variables in it expand only from the file itself, never
// from hawser's process environment, which may hold production secrets. The file is opened inside dir,
// so a symlink cannot point it at a file elsewhere.
func LoadOverlay(dir string) (map[string]string, error) {
	name := filepath.Join(dir, OverlayFile)
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("checkout %s: %w", dir, err)
	}
	defer root.Close()
	f, err := root.Open(OverlayFile)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	defer f.Close()
	env, err := dotenv.Parse(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return env, nil
}
