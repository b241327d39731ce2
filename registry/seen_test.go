package registry

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
)

func mustParse(t *testing.T, ref string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestSeenFileSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s, err := OpenSeenFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.Seen(ctx, "example.com/app:1"); ok || err != nil {
		t.Fatalf("a new store should be empty, got %v, %v", ok, err)
	}
	want := Seen{Remote: "sha256:aa", Platform: "sha256:bb", Local: "sha256:cc", Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	if err := s.Remember(ctx, "example.com/app:1", want); err != nil {
		t.Fatal(err)
	}
	if err := s.Remember(ctx, "example.com/other:2", Seen{Remote: "sha256:dd", Local: "sha256:dd"}); err != nil {
		t.Fatal(err)
	}

	reopened, err := OpenSeenFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, ok, err := reopened.Seen(ctx, "example.com/app:1")
	if err != nil || !ok || got != want {
		t.Fatalf("want %+v after reopen, got %+v (%v, %v)", want, got, ok, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Fatalf("want only the records file, no temporary leftovers, got %v", entries)
	}
}

func TestCorruptSeenFileIsAnErrorNamingIt(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, seenFileName), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenSeenFile(dir); err == nil || !strings.Contains(err.Error(), seenFileName) {
		t.Fatalf("want an error naming the file, got %v", err)
	}
}

func TestFailedSeenWriteKeepsTheOldRecord(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s, err := OpenSeenFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Remember(ctx, "example.com/app:1", Seen{Remote: "sha256:aa"}); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil { // the next write has nowhere to go
		t.Fatal(err)
	}
	if err := s.Remember(ctx, "example.com/app:1", Seen{Remote: "sha256:bb"}); err == nil {
		t.Fatal("want the write error")
	}
	if got, _, _ := s.Seen(ctx, "example.com/app:1"); got.Remote != "sha256:aa" {
		t.Fatalf("a failed write must not change the record in memory, got %+v", got)
	}
}
