package main

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/template"

	"hawser.dev/hawser/reconciler/gittest"
)

// examplesDir is the repository's examples/, seen from this package.
const examplesDir = "../../examples"

// exampleNames lists the directories of examples/, so that a new example is
// checked without a change to these tests.
func exampleNames(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(examplesDir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	if len(names) == 0 {
		t.Fatalf("no example in %s", examplesDir)
	}
	return names
}

// examplesRepo commits the working tree's examples/ to a new repository:
// validate reads a commit, and the files under test are those on disk,
// committed to this repository or not.
func examplesRepo(t *testing.T) *gittest.Repo {
	t.Helper()
	repo := gittest.New(t)
	if err := os.CopyFS(filepath.Join(repo.Dir, "examples"), os.DirFS(examplesDir)); err != nil {
		t.Fatal(err)
	}
	repo.Commit("examples", nil)
	return repo
}

// composeVariables returns the keys an example's compose files interpolate,
// as written: with their defaults and whether they are required.
func composeVariables(t *testing.T, name string) map[string]template.Variable {
	t.Helper()
	opts, err := cli.NewProjectOptions(nil,
		cli.WithWorkingDirectory(filepath.Join(examplesDir, name)),
		cli.WithDefaultConfigPath,
		cli.WithInterpolation(false),
	)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	model, err := opts.LoadModel(ctx)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return template.ExtractVariables(model, template.DefaultPattern)
}

// validateExample runs `hawser validate` on one example of repo, with the
// given keys in .env besides HAWSER_REPO and HAWSER_PATH.
func validateExample(t *testing.T, repo *gittest.Repo, name string, keys ...string) (string, string, error) {
	t.Helper()
	lines := append([]string{"HAWSER_REPO=" + repo.Dir, "HAWSER_PATH=examples/" + name}, keys...)
	return hawser(t, "-env", writeEnv(t, lines...), "validate")
}

// requiredKeys returns a line NAME=value for each required key of vars but
// skip.
func requiredKeys(vars map[string]template.Variable, skip string) []string {
	var lines []string
	for _, name := range slices.Sorted(maps.Keys(vars)) {
		if vars[name].Required && name != skip {
			lines = append(lines, name+"=value-from-the-test-env")
		}
	}
	return lines
}

func TestEveryExampleValidates(t *testing.T) {
	repo := examplesRepo(t)
	for _, name := range exampleNames(t) {
		t.Run(name, func(t *testing.T) {
			keys := requiredKeys(composeVariables(t, name), "")
			stdout, stderr, err := validateExample(t, repo, name, keys...)
			if err != nil || !strings.Contains(stdout, `project "`+name+`"`) {
				t.Fatalf("validate: %v\nstdout: %s\nstderr: %s", err, stdout, stderr)
			}
		})
	}
}

func TestExampleWithoutARequiredKeyNamesIt(t *testing.T) {
	repo := examplesRepo(t)
	checked := 0
	for _, name := range exampleNames(t) {
		vars := composeVariables(t, name)
		for _, key := range slices.Sorted(maps.Keys(vars)) {
			if !vars[key].Required {
				continue
			}
			checked++
			t.Run(name+"/"+key, func(t *testing.T) {
				_, stderr, err := validateExample(t, repo, name, requiredKeys(vars, key)...)
				if err == nil {
					t.Fatalf("validate succeeded without %s", key)
				}
				if !strings.Contains(stderr, "required variable "+key+" is missing") {
					t.Errorf("stderr does not name %s:\n%s", key, stderr)
				}
			})
		}
	}
	if checked == 0 {
		t.Fatal("no example requires a key; with-database should require DB_PASSWORD")
	}
}

func TestEveryExampleREADMENamesTheKeysItReads(t *testing.T) {
	for _, name := range exampleNames(t) {
		t.Run(name, func(t *testing.T) {
			readme, err := os.ReadFile(filepath.Join(examplesDir, name, "README.md"))
			if err != nil {
				t.Fatal(err)
			}
			keys := append([]string{"HAWSER_PATH"}, slices.Sorted(maps.Keys(composeVariables(t, name)))...)
			for _, key := range keys {
				if !strings.Contains(string(readme), "`"+key+"`") {
					t.Errorf("README.md does not name the .env key `%s`", key)
				}
			}
			if !strings.Contains(string(readme), "`examples/"+name+"`") {
				t.Errorf("README.md does not give HAWSER_PATH's value `examples/%s`", name)
			}
		})
	}
}
