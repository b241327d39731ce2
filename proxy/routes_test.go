package proxy

import (
	"strings"
	"testing"
)

func TestRoutesOfOwnersAreInstalledTogetherAndAClashChangesNothing(t *testing.T) {
	p, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := NewRoutes(p)
	if err := r.Set("shop", []Route{{Host: "shop.localhost", Service: "web", Upstreams: []string{"http://127.0.0.1:1001"}}}); err != nil {
		t.Fatal(err)
	}
	if err := r.Set("blog", []Route{{Host: "blog.localhost", Service: "web", Upstreams: []string{"http://127.0.0.1:1002"}}}); err != nil {
		t.Fatal(err)
	}
	if !p.Table().Has("shop.localhost") || !p.Table().Has("blog.localhost") {
		t.Fatalf("hosts = %v", p.Table().Hosts())
	}
	err = r.Set("blog", []Route{{Host: "shop.localhost", Service: "web", Upstreams: []string{"http://127.0.0.1:1003"}}})
	if err == nil || !strings.Contains(err.Error(), "shop.localhost") {
		t.Fatalf("a host claimed by two owners: err = %v", err)
	}
	if !p.Table().Has("blog.localhost") {
		t.Fatal("a refused set changed the table")
	}
	if err := r.Set("blog", nil); err != nil || p.Table().Has("blog.localhost") || !p.Table().Has("shop.localhost") {
		t.Fatalf("removing blog's routes: %v, hosts %v", err, p.Table().Hosts())
	}
}

func TestProductionHostsWinOverPreviews(t *testing.T) {
	p, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := NewRoutes(p)
	preview := []Route{
		{Host: "api.shop.localhost", Service: "web", Upstreams: []string{"http://127.0.0.1:2001"}},
		{Host: "feat.shop.localhost", Service: "web", Upstreams: []string{"http://127.0.0.1:2002"}},
	}
	if err := r.SetSecondary("shop-api", preview); err != nil {
		t.Fatal(err)
	}
	// Production arrives later and still gets its host.
	if err := r.Set("shop", []Route{{Host: "api.shop.localhost", Service: "api", Upstreams: []string{"http://127.0.0.1:1001"}}}); err != nil {
		t.Fatalf("production refused: %v", err)
	}
	if !p.Table().Has("feat.shop.localhost") || !p.Table().Has("api.shop.localhost") {
		t.Fatalf("hosts = %v", p.Table().Hosts())
	}
	err = r.SetSecondary("shop-api", preview)
	if err == nil || !strings.Contains(err.Error(), "api.shop.localhost") {
		t.Fatalf("a preview claiming a production host: err = %v", err)
	}
	if !p.Table().Has("feat.shop.localhost") {
		t.Fatal("the preview's other host was dropped too")
	}
}
