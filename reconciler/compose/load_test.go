package compose

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
)

// load writes files into a temporary directory and loads the project there.
func loadFiles(t *testing.T, files map[string]string, env map[string]string) (*types.Project, error) {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return Load(context.Background(), Source{Dir: dir, Name: "proj", Env: env})
}

func mustLoad(t *testing.T, files map[string]string, env map[string]string) *types.Project {
	t.Helper()
	p, err := loadFiles(t, files, env)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestHostEnvOverridesTheRepositoryDotEnv(t *testing.T) {
	files := map[string]string{
		"compose.yaml": "services:\n  web:\n    image: busybox:${TAG}\n    environment:\n      A: ${A:-unset}\n      B: ${B}\n",
		".env":         "TAG=1.36\nA=from-repo\nB=from-repo\n",
	}
	p := mustLoad(t, files, map[string]string{"B": "from-host"})
	web := p.Services["web"]
	if web.Image != "busybox:1.36" || *web.Environment["A"] != "from-repo" || *web.Environment["B"] != "from-host" {
		t.Fatalf("image %q A=%q B=%q", web.Image, *web.Environment["A"], *web.Environment["B"])
	}
}

func TestProcessEnvironmentDoesNotLeakIntoInterpolation(t *testing.T) {
	t.Setenv("HAWSER_TEST_LEAK", "leaked")
	p := mustLoad(t, map[string]string{"compose.yaml": "services:\n  web:\n    image: busybox\n    environment:\n      X: ${HAWSER_TEST_LEAK:-clean}\n"}, nil)
	if got := *p.Services["web"].Environment["X"]; got != "clean" {
		t.Fatalf("X = %q", got)
	}
}

func TestExtendsIncludeAndEnvFileBehaveAsInCompose(t *testing.T) {
	p := mustLoad(t, map[string]string{
		"compose.yaml": `
include: [other/compose.yaml]
services:
  base:
    image: busybox
    environment: {FROM_BASE: "1"}
  debug:
    image: busybox
    profiles: [debug]
  web:
    extends: base
    env_file: web.env
`,
		"web.env":            "FROM_FILE=2\n",
		"other/compose.yaml": "services:\n  included:\n    image: busybox\n",
	}, nil)
	web := p.Services["web"]
	if *web.Environment["FROM_BASE"] != "1" || *web.Environment["FROM_FILE"] != "2" {
		t.Fatalf("web environment = %v", web.Environment)
	}
	if _, ok := p.Services["included"]; !ok {
		t.Fatal("included service missing")
	}
	if _, ok := p.Services["debug"]; ok {
		t.Fatal("service of a disabled profile loaded")
	}
}

func TestUnsupportedFieldsFailTheLoadNamingServiceAndField(t *testing.T) {
	_, err := loadFiles(t, map[string]string{"compose.yaml": "services:\n  web:\n    image: busybox\n    cgroup_parent: /x\n"}, nil)
	var ue *UnsupportedError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), `service "web": cgroup_parent`) {
		t.Fatalf("err = %v", err)
	}
}

func TestMissingComposeFileIsAClearError(t *testing.T) {
	_, err := loadFiles(t, map[string]string{"README": "no compose here"}, nil)
	if err == nil || !strings.Contains(err.Error(), "no compose.yaml") {
		t.Fatalf("err = %v", err)
	}
}

func TestSyntaxErrorNamesTheFile(t *testing.T) {
	_, err := loadFiles(t, map[string]string{"compose.yaml": "services:\n  web: [oops\n"}, nil)
	if err == nil || !strings.Contains(err.Error(), "compose.yaml") {
		t.Fatalf("err = %v", err)
	}
}
