// Package compose turns a checkout of the application repository into the
// desired state of one compose project: it loads the files with compose-go
// exactly as docker compose would, hashes each service, and says how each
// service maps onto a Docker container.
package compose

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// Source says where a project is and how to read it.
type Source struct {
	// Dir is the directory of the compose files, below the stable checkout path.
	Dir string
	// Files are the compose files relative to Dir; empty means compose's default names.
	Files []string
	// Name is the compose project name.
	Name string
	// Profiles are the profiles to enable.
	Profiles []string
	// Env is the host's configuration: it overrides the repository's own .env
	// in interpolation.
	Env map[string]string
}

// Load reads the project the way docker compose does: the repository's .env
// gives defaults, the host's values override them, profiles select services,
// and extends, include and env_file are resolved. Services that use a field
// hawser does not implement make the load fail, naming each field.
func Load(ctx context.Context, src Source) (*types.Project, error) {
	files := make([]string, len(src.Files))
	copy(files, src.Files)
	p, err := load(ctx, src, files)
	if err != nil {
		return nil, &LoadError{Dir: src.Dir, Err: err}
	}
	if err := checkSupported(p); err != nil {
		return nil, err
	}
	return p, nil
}

// LoadError says the compose files of a commit do not load: fixing it takes
// a new commit or a change to the host's configuration.
type LoadError struct {
	Dir string
	Err error
}

func (e *LoadError) Error() string { return "compose project " + e.Dir + ": " + e.Err.Error() }

// Unwrap returns compose-go's error.
func (e *LoadError) Unwrap() error { return e.Err }

func load(ctx context.Context, src Source, files []string) (*types.Project, error) {
	opts, err := cli.NewProjectOptions(files,
		cli.WithWorkingDirectory(src.Dir),
		cli.WithName(src.Name),
		cli.WithDefaultConfigPath,
		// The repository's .env first, then the host's values over it: the
		// order of these options is the precedence.
		cli.WithEnvFiles(),
		cli.WithDotEnv,
		cli.WithEnv(envList(src.Env)),
		cli.WithProfiles(src.Profiles),
	)
	if err != nil {
		return nil, err
	}
	if len(opts.ConfigPaths) == 0 {
		return nil, errors.New("no compose.yaml, compose.yml, docker-compose.yml or docker-compose.yaml")
	}
	return opts.LoadProject(ctx)
}

func envList(env map[string]string) []string {
	list := make([]string, 0, len(env))
	for _, k := range slices.Sorted(maps.Keys(env)) {
		list = append(list, k+"="+env[k])
	}
	return list
}

// UnsupportedError lists the fields of services that hawser would otherwise
// have to drop silently.
type UnsupportedError struct {
	// Fields maps a service name to the names of its unsupported fields.
	Fields map[string][]string
}

func (e *UnsupportedError) Error() string {
	parts := make([]string, 0, len(e.Fields))
	for _, name := range slices.Sorted(maps.Keys(e.Fields)) {
		parts = append(parts, fmt.Sprintf("service %q: %s", name, strings.Join(e.Fields[name], ", ")))
	}
	return "unsupported compose fields: " + strings.Join(parts, "; ")
}

func checkSupported(p *types.Project) error {
	fields := map[string][]string{}
	for name, svc := range p.Services {
		if u := UnsupportedIn(p, svc); len(u) > 0 {
			fields[name] = u
		}
	}
	if len(fields) > 0 {
		return &UnsupportedError{Fields: fields}
	}
	return nil
}
