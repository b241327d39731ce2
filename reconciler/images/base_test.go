package images_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"

	"hawser.dev/hawser/reconciler/images"
)

// buildService is service web with a build section: context dir, the
// Dockerfile at dockerfile (relative to dir, "" for the default) holding
// content, and args.
func buildService(t *testing.T, dockerfile, content string, args types.MappingWithEquals) types.ServiceConfig {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "Dockerfile")
	if dockerfile != "" {
		path = filepath.Join(dir, dockerfile)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	svc := types.ServiceConfig{Name: "web"}
	svc.Build = &types.BuildConfig{Context: dir, Dockerfile: dockerfile, Args: args}
	return svc
}

func ptr(s string) *string { return &s }

func TestBaseImagesOfADockerfile(t *testing.T) {
	for _, tc := range []struct {
		name       string
		dockerfile string // path in the context; "" is Dockerfile
		content    string
		args       types.MappingWithEquals
		target     string
		want       []string
	}{
		{name: "one FROM", content: "FROM busybox:1.36\nRUN true\n", want: []string{"busybox:1.36"}},
		{
			name: "stages, scratch and the same image twice count once",
			content: "FROM golang:1.22 AS build\nRUN go build\nFROM build AS test\nFROM scratch\n" +
				"COPY --from=build /x /x\nFROM Build\nFROM docker.io/library/golang:1.22\nFROM alpine:3.20\n",
			want: []string{"golang:1.22", "alpine:3.20"},
		},
		{
			name: "ARGs before the first FROM, from build args and defaults",
			content: "ARG TAG=1.36\nARG REGISTRY\nARG IMAGE=${REGISTRY:-docker.io}/library/busybox\n" +
				"ARG Q=\"3.19\"\nFROM ${IMAGE}:${TAG}\nFROM alpine:${OTHER:-3.20}\nFROM debian:$Q\n" +
				"ARG LATE=9\nFROM nginx:${LATE:-1.27}\n",
			args: types.MappingWithEquals{"TAG": ptr("1.37"), "REGISTRY": nil, "OTHER": ptr("undeclared")},
			want: []string{"docker.io/library/busybox:1.37", "alpine:3.20", "debian:3.19", "nginx:1.27"},
		},
		{
			name: "platform flags, lower case, comments and continuations",
			content: "# syntax=docker/dockerfile:1\n# a comment\nfrom --platform=$BUILDPLATFORM \\\n" +
				"    # a comment inside\n\n    golang:1.22 \\\n    as build\n" +
				"FROM --platform=linux/amd64 busybox:1.36\nRUN echo FROM nginx\n",
			want: []string{"golang:1.22", "busybox:1.36"},
		},
		{
			name:    "escape directive",
			content: "# escape=`\nFROM busy`\nbox:1.36\n",
			want:    []string{"busybox:1.36"},
		},
		{
			name:    "stages after the target are not built",
			content: "FROM alpine:3.20 AS deps\nFROM golang:1.22 AS Build\nFROM nginx:1.27\n",
			target:  "build",
			want:    []string{"alpine:3.20", "golang:1.22"},
		},
		{
			name:       "Dockerfile in a subdirectory of the context",
			dockerfile: "docker/web.Dockerfile",
			content:    "FROM registry.example.com:5000/team/base@sha256:" + strings.Repeat("a", 64) + "\n",
			want:       []string{"registry.example.com:5000/team/base@sha256:" + strings.Repeat("a", 64)},
		},
		{name: "only scratch", content: "FROM scratch\nCOPY app /\n", want: nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc := buildService(t, tc.dockerfile, tc.content, tc.args)
			svc.Build.Target = tc.target
			got, err := images.BaseImages(svc)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("BaseImages = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestBaseImagesOfInlineDockerfile(t *testing.T) {
	svc := types.ServiceConfig{Name: "web"}
	svc.Build = &types.BuildConfig{Context: t.TempDir(), DockerfileInline: "ARG V=1.36\nFROM busybox:$V\n"}
	got, err := images.BaseImages(svc)
	if err != nil || !slices.Equal(got, []string{"busybox:1.36"}) {
		t.Fatalf("BaseImages = %q, %v; want [busybox:1.36]", got, err)
	}
}

func TestServiceWithoutBuildHasNoBaseImages(t *testing.T) {
	svc := types.ServiceConfig{Name: "db"}
	svc.Image = "postgres:16"
	got, err := images.BaseImages(svc)
	if err != nil || got != nil {
		t.Fatalf("BaseImages = %q, %v; want none", got, err)
	}
}

func TestBadFromLinesNameTheDockerfileAndLine(t *testing.T) {
	for _, tc := range []struct {
		name, content, target, want string
	}{
		{name: "FROM without image", content: "# base\nFROM\n", want: "Dockerfile:2: FROM needs an image"},
		{name: "AS without name", content: "FROM busybox AS\n", want: "Dockerfile:1: FROM needs an image"},
		{name: "ARG without value", content: "ARG IMAGE\nRUN true\nFROM ${IMAGE}\n", want: "Dockerfile:3: FROM ${IMAGE}: the image is empty"},
		{name: "invalid reference", content: "FROM busybox:${TAG}\n", want: "Dockerfile:1: FROM busybox:${TAG}:"},
		{name: "upper case repository", content: "FROM \\\n BusyBox:1\n", want: "Dockerfile:1: FROM BusyBox:1:"},
		{name: "unknown target", content: "FROM busybox:1.36 AS one\n", target: "two", want: `Dockerfile: build target "two" is not a stage`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc := buildService(t, "", tc.content, nil)
			svc.Build.Target = tc.target
			_, err := images.BaseImages(svc)
			t.Logf("error: %v", err)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), `service "web"`) {
				t.Fatalf("error = %v, want one for service web containing %q", err, tc.want)
			}
		})
	}
}

func TestMissingDockerfileIsNamed(t *testing.T) {
	dir := t.TempDir()
	svc := types.ServiceConfig{Name: "web"}
	svc.Build = &types.BuildConfig{Context: dir, Dockerfile: "web.Dockerfile"}
	_, err := images.BaseImages(svc)
	if want := filepath.Join(dir, "web.Dockerfile"); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error = %v, want one naming %s", err, want)
	}
}
