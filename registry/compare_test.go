package registry

import (
	"context"
	"slices"
	"strings"
	"testing"
)

func TestOnlyAnotherPlatformChangedIsNoUpdate(t *testing.T) {
	reg := newTestRegistry(t)
	amd64 := randomImage(t)
	first := reg.pushIndex("app:stable", multiArch(amd64, randomImage(t)))
	c := newTestChecker(t, Options{})
	local := []string{reg.repoDigest("app", first)}
	chk := Check{Ref: reg.ref("app:stable"), LocalRepoDigests: local}

	if res, err := c.Check(context.Background(), chk); err != nil || res.Update {
		t.Fatalf("want up to date with the pulled index, got %+v, %v", res, err)
	}
	second := reg.pushIndex("app:stable", multiArch(amd64, randomImage(t)))
	res, err := c.Check(context.Background(), chk)
	if err != nil {
		t.Fatal(err)
	}
	if res.Update || res.Remote != second.String() || res.Platform != digestOf(t, amd64).String() {
		t.Fatalf("only arm64 changed: want no update for amd64, got %+v", res)
	}
	n := reg.requestCount()
	if res, err := c.Check(context.Background(), chk); err != nil || res.Update {
		t.Fatalf("want still no update, got %+v, %v", res, err)
	}
	if got := reg.requestsSince(n); !slices.Equal(got, []string{"HEAD /v2/app/manifests/stable"}) {
		t.Fatalf("a known index should cost one HEAD, made %v", got)
	}
}

func TestLocalPlatformChangedIsAnUpdate(t *testing.T) {
	reg := newTestRegistry(t)
	arm64 := randomImage(t)
	first := reg.pushIndex("app:stable", multiArch(randomImage(t), arm64))
	c := newTestChecker(t, Options{})
	chk := Check{Ref: reg.ref("app:stable"), LocalRepoDigests: []string{reg.repoDigest("app", first)}}
	if _, err := c.Check(context.Background(), chk); err != nil {
		t.Fatal(err)
	}

	newAMD64 := randomImage(t)
	reg.pushIndex("app:stable", multiArch(newAMD64, arm64))
	res, err := c.Check(context.Background(), chk)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Update || res.Platform != digestOf(t, newAMD64).String() {
		t.Fatalf("amd64 changed: want an update, got %+v", res)
	}
}

func TestArm64CheckerSeesArm64Change(t *testing.T) {
	reg := newTestRegistry(t)
	amd64 := randomImage(t)
	first := reg.pushIndex("app:stable", multiArch(amd64, randomImage(t)))
	c := newTestChecker(t, Options{Platform: "linux/arm64"})
	chk := Check{Ref: reg.ref("app:stable"), LocalRepoDigests: []string{reg.repoDigest("app", first)}}
	if _, err := c.Check(context.Background(), chk); err != nil {
		t.Fatal(err)
	}

	reg.pushIndex("app:stable", multiArch(amd64, randomImage(t)))
	if res, err := c.Check(context.Background(), chk); err != nil || !res.Update {
		t.Fatalf("arm64 changed: want an update on arm64, got %+v, %v", res, err)
	}
}

func TestSeenDigestsSurviveRestart(t *testing.T) {
	reg := newTestRegistry(t)
	dir := t.TempDir()
	amd64 := randomImage(t)
	first := reg.pushIndex("app:stable", multiArch(amd64, randomImage(t)))
	chk := Check{Ref: reg.ref("app:stable"), LocalRepoDigests: []string{reg.repoDigest("app", first)}}

	seen, err := OpenSeenFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	before := newTestChecker(t, Options{Seen: seen})
	if _, err := before.Check(context.Background(), chk); err != nil {
		t.Fatal(err)
	}
	reg.pushIndex("app:stable", multiArch(amd64, randomImage(t)))
	if res, err := before.Check(context.Background(), chk); err != nil || res.Update {
		t.Fatalf("want no update, got %+v, %v", res, err)
	}

	reopened, err := OpenSeenFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	after := newTestChecker(t, Options{Seen: reopened})
	n := reg.requestCount()
	res, err := after.Check(context.Background(), chk)
	if err != nil || res.Update {
		t.Fatalf("after a restart: want no update, got %+v, %v", res, err)
	}
	for _, r := range reg.requestsSince(n) {
		if strings.HasPrefix(r, "GET /v2/app/manifests/") {
			t.Fatalf("after a restart the platform digest should be remembered, yet the index was fetched: %v", reg.requestsSince(n))
		}
	}
}

func TestIndexWithoutLocalPlatformIsAnError(t *testing.T) {
	reg := newTestRegistry(t)
	reg.pushIndex("app:stable", multiArch(randomImage(t), randomImage(t)))
	c := newTestChecker(t, Options{Platform: "linux/riscv64"})
	older := reg.repoDigest("app", digestOf(t, randomImage(t)))

	_, err := c.Check(context.Background(), Check{Ref: reg.ref("app:stable"), LocalRepoDigests: []string{older}})
	if err == nil || !strings.Contains(err.Error(), "linux/riscv64") {
		t.Fatalf("want an error naming the missing platform, got %v", err)
	}
}

func TestPulledIndexIsUpToDateEvenWithoutLocalPlatform(t *testing.T) {
	reg := newTestRegistry(t)
	idx := reg.pushIndex("app:stable", multiArch(randomImage(t), randomImage(t)))
	c := newTestChecker(t, Options{Platform: "linux/riscv64"})

	res, err := c.Check(context.Background(), Check{Ref: reg.ref("app:stable"), LocalRepoDigests: []string{reg.repoDigest("app", idx)}})
	if err != nil || res.Update {
		t.Fatalf("the local image is the index the tag points at: want up to date, got %+v, %v", res, err)
	}
}

func TestLocalDigestsMatchTheEnginesNamesForTheSameRepository(t *testing.T) {
	const d = "sha256:0123456789012345678901234567890123456789012345678901234567890123"
	repo := mustParse(t, "nginx:1.25").Context()
	got := localDigests(repo, []string{
		"nginx@" + d,
		"docker.io/library/nginx@" + d,
		"index.docker.io/library/nginx@" + d,
		"example.com/nginx@" + d,
		"library/redis@" + d,
		"not a digest",
	})
	if len(got) != 3 {
		t.Fatalf("want the three spellings of Docker Hub's nginx, got %v", got)
	}
}
