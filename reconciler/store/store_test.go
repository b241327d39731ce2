package store

import (
	"errors"
	"path/filepath"
	"testing"
	"time"
)

func TestDeploymentsAreListedNewestFirstAndSurviveReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hawser.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Last("web"); !errors.Is(err, ErrNone) {
		t.Fatalf("Last on empty store: %v, want ErrNone", err)
	}
	for i, result := range []string{ResultSucceeded, ResultFailed, ResultSucceeded} {
		id, err := s.NextID("web")
		if err != nil {
			t.Fatal(err)
		}
		d := Deployment{ID: id, Project: "web", Commit: string(rune('a' + i)), Result: result, Started: time.Now()}
		if err := s.Save(d); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	list, err := s.List("web", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 || list[0].Commit != "c" || list[2].Commit != "a" || list[1].Result != ResultFailed {
		t.Fatalf("list = %+v", list)
	}
	if other, _ := s.List("other", 10); len(other) != 0 {
		t.Fatalf("other project sees %d deployments", len(other))
	}
	id, _ := s.NextID("web")
	if id != "4" {
		t.Fatalf("next id after reopen = %s, want 4", id)
	}
}

func TestFollowedImagesArePerProjectAndSurviveReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hawser.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetFollowed("web", "api", Follow{Ref: "registry.lan/api:1.3.0", From: "registry.lan/api:1.2.0"}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetFollowed("web", "api", Follow{Ref: "registry.lan/api:1.4.0", From: "registry.lan/api:1.2.0"}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.Followed("web")
	if err != nil || got["api"].Ref != "registry.lan/api:1.4.0" || got["api"].From != "registry.lan/api:1.2.0" || len(got) != 1 {
		t.Fatalf("followed = %v, %v", got, err)
	}
	if other, _ := s.Followed("other"); len(other) != 0 {
		t.Fatalf("other project follows %v", other)
	}
}

func TestPinSurvivesReopenAndZeroPinRemovesIt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hawser.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	pin := Pin{Paused: true, Commit: "abc", Since: time.Now().UTC().Truncate(time.Second)}
	if err := s.SetPin("web", pin); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err = Open(path); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, err := s.Pin("web"); err != nil || got.Paused != pin.Paused || got.Commit != pin.Commit || !got.Since.Equal(pin.Since) {
		t.Fatalf("pin = %+v, %v", got, err)
	}
	if got, _ := s.Pin("other"); got.Paused || got.Commit != "" {
		t.Fatalf("other project pinned: %+v", got)
	}
	if err := s.SetPin("web", Pin{}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Pin("web"); got.Paused || got.Commit != "" {
		t.Fatalf("pin after removal = %+v", got)
	}
}

func TestDeploymentByID(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "hawser.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	id, _ := s.NextID("web")
	if err := s.Save(Deployment{ID: id, Project: "web", Commit: "c1"}); err != nil {
		t.Fatal(err)
	}
	if d, err := s.Deployment("web", id); err != nil || d.Commit != "c1" {
		t.Fatalf("deployment = %+v, %v", d, err)
	}
	for _, missing := range []string{"99", "x"} {
		if _, err := s.Deployment("web", missing); !errors.Is(err, ErrNotFound) {
			t.Errorf("deployment %s: %v, want ErrNotFound", missing, err)
		}
	}
}

func TestPreviewInventoryPerProject(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "hawser.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	x := &PreviewRecord{Branch: "feat/x", Commit: "c1", Changed: time.Now().UTC().Truncate(time.Second)}
	for _, set := range []struct {
		project, slug string
		rec           *PreviewRecord
	}{{"shop", "feat-x-1", x}, {"shop", "main2", &PreviewRecord{Branch: "main2"}}, {"blog", "a", &PreviewRecord{Branch: "a"}}, {"shop", "main2", nil}} {
		if err := s.SetPreview(set.project, set.slug, set.rec); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Previews("shop")
	if err != nil || len(got) != 1 || got["feat-x-1"].Branch != "feat/x" || !got["feat-x-1"].Changed.Equal(x.Changed) {
		t.Fatalf("previews = %v, %v", got, err)
	}
}

func TestUpdatePreviewChangesOnlyAnExistingRecord(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "hawser.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.SetPreview("shop", "a", &PreviewRecord{Branch: "a", Commit: "c1"}); err != nil {
		t.Fatal(err)
	}
	asleep := func(rec *PreviewRecord) { rec.Asleep, rec.Hosts = true, map[string]string{"a.example.com": "web"} }
	for _, slug := range []string{"a", "gone"} {
		if err := s.UpdatePreview("shop", slug, asleep); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.UpdatePreview("blog", "a", asleep); err != nil {
		t.Fatal(err)
	}
	got, err := s.Previews("shop")
	if err != nil || len(got) != 1 || !got["a"].Asleep || got["a"].Commit != "c1" || got["a"].Hosts["a.example.com"] != "web" {
		t.Fatalf("previews = %+v, %v", got, err)
	}
	if blog, _ := s.Previews("blog"); len(blog) != 0 {
		t.Fatalf("an update made a record: %+v", blog)
	}
}

func TestDeleteProjectForgetsOnlyThatProject(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "hawser.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, p := range []string{"shop", "shop-feat"} {
		id, _ := s.NextID(p)
		if err := s.Save(Deployment{ID: id, Project: p}); err != nil {
			t.Fatal(err)
		}
		if err := s.SetPin(p, Pin{Paused: true}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteProject("shop-feat"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteProject("never-there"); err != nil {
		t.Fatal(err)
	}
	if l, _ := s.List("shop-feat", 10); len(l) != 0 {
		t.Fatal("deployments of the deleted project remain")
	}
	if p, _ := s.Pin("shop-feat"); p.Paused {
		t.Fatal("the deleted project's pin remains")
	}
	if l, _ := s.List("shop", 10); len(l) != 1 {
		t.Fatal("another project's deployments went too")
	}
}
