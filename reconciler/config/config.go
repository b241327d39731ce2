// Package config reads hawser's configuration from the host's .env file.
//
// The file is parsed by compose-go's dotenv package, the dialect docker
// compose uses. Keys named HAWSER_* configure hawser (see Keys); every other
// key belongs to the compose project, for ${VAR} interpolation, and its value
// is treated as a secret. The file is the whole configuration: the process
// environment is never consulted, not even for ${VAR} references inside the
// file or for a key written without a value.
//
// A key that is absent takes its default; a key that is present is validated
// as written: `HAWSER_PATH=` means the repository's root, and
// `HAWSER_SCHEDULE=` is an error rather than the default.
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/robfig/cron/v3"

	"hawser.dev/hawser/proxy"
	"hawser.dev/hawser/registry"
)

// Config is hawser's configuration for one compose project. Printing or
// logging it (fmt, slog) shows secrets masked; see Redacted.
type Config struct {
	File string // the .env file, as named to Load or Parse
	Dir  string // absolute; relative paths in the file are resolved against it

	Repo           string        // a URL, or an absolute local path
	Branch         string        // empty: the remote's default branch
	Path           string        // clean, relative to the repository root; "." for the root
	ComposeFiles   []string      // relative to Path; empty: compose's default names
	Project        string        // a valid compose project name
	Profiles       []string      // compose profiles to enable
	ScheduleSpec   string        // as written
	Schedule       cron.Schedule // parsed ScheduleSpec
	ScheduleJitter time.Duration // at most this random delay is added to each tick
	StateDir       string        // absolute
	AdminAddr      string        // host:port
	APIToken       Secret        // empty: API writes are refused
	AdminURL       string        // empty: http://AdminAddr
	WebhookSecret  Secret        // empty: webhooks off
	AdminHost      string        // empty: admin only on AdminAddr
	LogFormat      string        // "text" or "json"
	LogLevel       slog.Level
	GitToken       Secret
	GitSSHKey      string // absolute path of an existing file, or empty
	GitKnownHosts  string // absolute path of an existing file, or empty
	KeepCheckouts  int
	HealthTimeout  time.Duration

	Domain          string // empty: local mode, plain HTTP at localhost names
	PrimaryService  string
	HTTPAddr        string
	HTTPSAddr       string
	UpstreamNetwork string // empty: routed containers publish on 127.0.0.1
	ACMEEmail       string
	ACMECA          string
	DrainTimeout    time.Duration

	PreviewBranches   []string         // globs; none: previews off
	PreviewDomain     string           // empty: Domain, or localhost
	PreviewInherit    []string         // keys or globs of Env passed to previews
	PreviewAuth       *proxy.BasicAuth // nil: previews are open
	MaxBuilds         int
	PreviewIdle       time.Duration
	PreviewTTL        time.Duration
	PreviewMaxRunning int
	WakeTimeout       time.Duration
	PreviewCPUs       float64
	PreviewMemory     int64 // bytes

	RegistrySchedule   cron.Schedule        // nil: check at every Schedule tick
	RegistryAuth       registry.Credentials // host -> credential, overriding the Docker config
	InsecureRegistries []string             // hosts reached over plain HTTP
	PruneImages        bool
	SelfUpdate         bool // replace hawser's own container when its tag moves

	// Env is every non-HAWSER key: the compose project's own configuration,
	// which overrides the repository's .env during interpolation.
	Env Env

	shown map[string]string // HAWSER_* values as Redacted shows them
}

// Load reads and parses the .env file at path; relative paths in it are
// resolved against the file's directory. A failure is always an Errors.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, Errors{{File: path, Msg: "cannot read: " + pathCause(err).Error(), err: err}}
	}
	return Parse(path, data, filepath.Dir(path))
}

// Parse parses data, the contents of the .env file named file (used in
// errors), resolving relative paths against dir (the file's directory when
// empty). It checks every key and returns all problems found as an Errors.
func Parse(file string, data []byte, dir string) (*Config, error) {
	l, lerr := newLoading(file, data, dir)
	if lerr != nil {
		return nil, Errors{lerr}
	}
	values, err := l.readDotenv(data)
	if err != nil {
		return nil, Errors{syntaxError(file, l.lines, err)}
	}
	l.checkUnknown(values)
	for _, k := range table() {
		l.apply(k, values)
	}
	l.cfg.Env = projectEnv(values)
	if len(l.errs) > 0 {
		l.errs.sortByLine()
		return nil, l.errs
	}
	return l.cfg, nil
}

// loading is the state of one Parse.
type loading struct {
	file     string
	dir      string
	lines    keyLines
	cfg      *Config
	errs     Errors
	looked   map[string]bool // names dotenv asked the environment for
	key      string          // the key being applied
	repoName string          // for HAWSER_PROJECT's default
}

func newLoading(file string, data []byte, dir string) (*loading, *Error) {
	if dir == "" {
		dir = filepath.Dir(file)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, &Error{File: file, Msg: "cannot resolve the directory: " + err.Error(), err: err}
	}
	return &loading{
		file:   file,
		dir:    abs,
		lines:  scanLines(data),
		cfg:    &Config{File: file, Dir: abs, shown: map[string]string{}},
		looked: map[string]bool{},
	}, nil
}

// readDotenv parses with a lookup that finds nothing, so the process
// environment cannot leak in; it records what was asked for so that a key
// written without a value can be reported rather than silently dropped.
func (l *loading) readDotenv(data []byte) (map[string]string, error) {
	return dotenv.ParseWithLookup(bytes.NewReader(data), func(name string) (string, bool) {
		l.looked[name] = true
		return "", false
	})
}

func (l *loading) checkUnknown(values map[string]string) {
	known := make([]string, 0, len(table()))
	for _, k := range table() {
		known = append(known, k.Name)
	}
	for key := range values {
		if isHawserKey(key) && !slices.Contains(known, key) {
			msg := "unknown key"
			if s := suggest(key, known); s != "" {
				msg += "; did you mean " + s + "?"
			}
			l.fail(key, msg)
		}
	}
	for key, line := range l.lines.bare {
		if _, set := values[key]; !set && l.looked[key] {
			l.errs = append(l.errs, &Error{File: l.file, Line: line, Key: key,
				Msg: "no value; hawser does not read the process environment, so give the key a value here"})
		}
	}
}

// isHawserKey also catches a wrongly cased prefix, which would otherwise
// pass silently to the compose project.
func isHawserKey(key string) bool {
	return strings.HasPrefix(strings.ToUpper(key), keyPrefix)
}

func (l *loading) apply(k Key, values map[string]string) {
	v, present := values[k.Name]
	if !present {
		v = k.Default
	}
	l.key = k.Name
	l.show(v)
	err := k.apply(l, v)
	switch {
	case errors.Is(err, errEmpty):
		l.fail(k.Name, "empty; remove the line to use the default "+k.Default)
	case err != nil:
		l.fail(k.Name, err.Error())
	}
}

func (l *loading) fail(key, msg string) {
	l.errs = append(l.errs, &Error{File: l.file, Line: l.lines.line(key), Key: key, Msg: msg})
}

// show records how Redacted displays the key being applied.
func (l *loading) show(v string) {
	l.cfg.shown[l.key] = v
}

// resolve makes p absolute, relative to the file's directory.
func (l *loading) resolve(p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(l.dir, p)
}

func projectEnv(values map[string]string) Env {
	env := Env{}
	for k, v := range values {
		if !isHawserKey(k) {
			env[k] = v
		}
	}
	return env
}

// Redacted is the configuration in .env form, one KEY=value per line, with
// secrets and every compose project value masked.
func (c Config) Redacted() string {
	var b strings.Builder
	for _, s := range c.settings() {
		b.WriteString(s.Key)
		b.WriteByte('=')
		b.WriteString(s.Value.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// String is Redacted, so that printing a Config cannot leak a secret.
func (c Config) String() string { return c.Redacted() }

// GoString is Redacted, for %#v.
func (c Config) GoString() string { return c.Redacted() }

// LogValue logs every key with secrets masked.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(c.settings()...)
}

func (c Config) settings() []slog.Attr {
	var attrs []slog.Attr
	for _, k := range table() {
		v := c.shown[k.Name]
		if k.Secret {
			v = mask(v)
		}
		attrs = append(attrs, slog.String(k.Name, v))
	}
	for _, k := range slices.Sorted(maps.Keys(c.Env)) {
		attrs = append(attrs, slog.String(k, mask(c.Env[k])))
	}
	return attrs
}

// mask hides a secret but still tells whether it is set.
func mask(v string) string {
	if v == "" {
		return ""
	}
	return "***"
}

// Secret is a value that fmt, slog and encoding/json show masked; Reveal
// gives the value itself.
type Secret string

// Reveal returns the secret itself, for the one place that needs it.
func (s Secret) Reveal() string { return string(s) }

// String masks the secret.
func (s Secret) String() string { return mask(string(s)) }

// GoString masks the secret, for %#v.
func (s Secret) GoString() string { return s.String() }

// LogValue masks the secret.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText masks the secret, so that API output cannot carry it.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Env holds the compose project's keys. Its values may be secrets: fmt,
// slog and encoding/json show only the keys. It converts to the plain
// map[string]string that compose-go takes.
type Env map[string]string

// String shows the keys with masked values.
func (e Env) String() string {
	parts := make([]string, 0, len(e))
	for _, k := range slices.Sorted(maps.Keys(e)) {
		parts = append(parts, k+"="+mask(e[k]))
	}
	return "{" + strings.Join(parts, " ") + "}"
}

// GoString shows the keys with masked values, for %#v.
func (e Env) GoString() string { return e.String() }

// LogValue logs the keys with masked values.
func (e Env) LogValue() slog.Value {
	attrs := make([]slog.Attr, 0, len(e))
	for _, k := range slices.Sorted(maps.Keys(e)) {
		attrs = append(attrs, slog.String(k, mask(e[k])))
	}
	return slog.GroupValue(attrs...)
}

// MarshalJSON encodes the keys with masked values.
func (e Env) MarshalJSON() ([]byte, error) {
	masked := make(map[string]string, len(e))
	for k, v := range e {
		masked[k] = mask(v)
	}
	return json.Marshal(masked)
}
