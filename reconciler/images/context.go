package images

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/go-archive"
	"github.com/moby/patternmatcher/ignorefile"
)

// injectedDockerfile is where a Dockerfile that is not a file inside the
// context (dockerfile_inline, or a path outside the context) is put in the
// tar. Its name and time are fixed so that the same input makes the same
// context.
const injectedDockerfile = ".hawser.Dockerfile"

const dockerignore = ".dockerignore"

// contextTar returns the build context as a tar, without what .dockerignore
// excludes, and the Dockerfile's path inside it. Like the docker CLI it
// always sends the Dockerfile and .dockerignore, which the engine needs.
func contextTar(b types.BuildConfig) (io.ReadCloser, string, error) {
	if info, err := os.Stat(b.Context); err != nil || !info.IsDir() {
		return nil, "", fmt.Errorf("build context %s must be a local directory", b.Context)
	}
	// The context is often the stable checkout path, a symlink: the archive
	// must hold the commit's files, not the link.
	dir, err := filepath.EvalSymlinks(b.Context)
	if err != nil {
		return nil, "", fmt.Errorf("build context %s: %w", b.Context, err)
	}
	b.Context = dir
	name, content, err := dockerfile(b)
	if err != nil {
		return nil, "", err
	}
	excludes, err := readIgnore(b.Context)
	if err != nil {
		return nil, "", err
	}
	if len(excludes) > 0 {
		excludes = append(excludes, "!"+dockerignore, "!"+name)
	}
	tarball, err := archive.TarWithOptions(b.Context, &archive.TarOptions{ExcludePatterns: excludes})
	if err != nil {
		return nil, "", fmt.Errorf("build context %s: %w", b.Context, err)
	}
	if content == nil {
		return tarball, name, nil
	}
	return injectDockerfile(tarball, content), injectedDockerfile, nil
}

// dockerfile returns the Dockerfile's path inside the context, or, when it
// does not live there, the name to inject it under and its content.
func dockerfile(b types.BuildConfig) (string, []byte, error) {
	if b.DockerfileInline != "" {
		return injectedDockerfile, []byte(b.DockerfileInline), nil
	}
	path := dockerfilePath(b)
	if rel, err := filepath.Rel(b.Context, path); err == nil && filepath.IsLocal(rel) {
		return filepath.ToSlash(rel), nil, nil
	}
	content, err := os.ReadFile(path)
	if err != nil {
		return "", nil, fmt.Errorf("dockerfile: %w", err)
	}
	return injectedDockerfile, content, nil
}

// dockerfilePath is where b's Dockerfile is on disk: a relative path is
// relative to the context, as with docker compose.
func dockerfilePath(b types.BuildConfig) string {
	path := b.Dockerfile
	if path == "" {
		path = "Dockerfile"
	}
	if !filepath.IsAbs(path) {
		path = filepath.Join(b.Context, path)
	}
	return path
}

// readIgnore returns the patterns of the context's .dockerignore, if any.
func readIgnore(dir string) ([]string, error) {
	f, err := os.Open(filepath.Join(dir, dockerignore))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	excludes, err := ignorefile.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name(), err)
	}
	return excludes, nil
}

// injectDockerfile adds content to the tar as injectedDockerfile and lists
// that name in .dockerignore, so that `COPY . .` does not copy it.
func injectDockerfile(tarball io.ReadCloser, content []byte) io.ReadCloser {
	epoch := time.Unix(0, 0)
	return archive.ReplaceFileTarWrapper(tarball, map[string]archive.TarModifierFunc{
		injectedDockerfile: func(string, *tar.Header, io.Reader) (*tar.Header, []byte, error) {
			return &tar.Header{Typeflag: tar.TypeReg, Mode: 0o644, ModTime: epoch}, content, nil
		},
		dockerignore: func(_ string, h *tar.Header, r io.Reader) (*tar.Header, []byte, error) {
			if h == nil {
				return &tar.Header{Typeflag: tar.TypeReg, Mode: 0o644, ModTime: epoch}, []byte(injectedDockerfile + "\n"), nil
			}
			old, err := io.ReadAll(r)
			if err != nil {
				return nil, nil, err
			}
			return h, append(old, "\n"+injectedDockerfile+"\n"...), nil
		},
	})
}
