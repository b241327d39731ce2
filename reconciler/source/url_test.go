package source

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestRemoteURLForms(t *testing.T) {
	tests := []struct {
		raw                  string
		protocol, host, user string
		path                 string
	}{
		{"https://example.com/org/repo.git", "https", "example.com", "", "/org/repo.git"},
		{"git@example.com:org/repo.git", "ssh", "example.com", "git", "org/repo.git"},
		{"ssh://deploy@example.com:2222/org/repo.git", "ssh", "example.com", "deploy", "/org/repo.git"},
		{"file:///srv/git/repo", "file", "", "", "/srv/git/repo"},
		{"/srv/git/my repo", "file", "", "", "/srv/git/my repo"},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			ep, _, err := parseRemote(tt.raw)
			if err != nil {
				t.Fatal(err)
			}
			if ep.Protocol != tt.protocol || ep.Host != tt.host || ep.User != tt.user || ep.Path != tt.path {
				t.Fatalf("endpoint = %+v", ep)
			}
		})
	}
}

func TestUnusableRemoteURLsAreRejected(t *testing.T) {
	for _, raw := range []string{"", "relative/repo", "./repo", "git://example.com/repo", "ftp://example.com/repo"} {
		if _, _, err := parseRemote(raw); err == nil {
			t.Errorf("parseRemote(%q) accepted", raw)
		}
	}
}

func TestFileURLAndPlainPathBothCheckOut(t *testing.T) {
	remote := newRemote(t)
	head := remote.commit(map[string]string{"f": "content"})
	for _, url := range []string{"file://" + remote.dir, remote.dir} {
		t.Run(url, func(t *testing.T) {
			repo := newRepo(t, url, Auth{})
			refs, err := repo.LsRemote(testContext(t))
			if err != nil || refs.Branches["main"] != head {
				t.Fatalf("ls-remote = %+v, %v", refs, err)
			}
			co, err := repo.Checkout(testContext(t), "main", head)
			if err != nil {
				t.Fatal(err)
			}
			if got := readFile(t, filepath.Join(co.Current, "f")); got != "content" {
				t.Fatalf("f = %q", got)
			}
		})
	}
}

func TestTokenIsNotSentOverPlainHTTPToOtherHosts(t *testing.T) {
	dir := t.TempDir()
	_, err := New("http://git.example.com/repo.git", Auth{Token: "s3cret-token"}, filepath.Join(dir, "c"), filepath.Join(dir, "o"), testLogger(t))
	if err == nil || !strings.Contains(err.Error(), "https") || strings.Contains(err.Error(), "s3cret-token") {
		t.Fatalf("New = %v, want a refusal that suggests https and hides the token", err)
	}
}
