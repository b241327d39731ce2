package preview

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/loader"
)

// dnsLabel is the check of the issue, written out independently of the
// package's own ValidLabel.
var dnsLabel = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// hashTail is the tail of a hashed slug, reserved from branches.
var hashTail = regexp.MustCompile(`-[0-9a-f]{8}$`)

func assertLabel(t *testing.T, what, label string) {
	t.Helper()
	if !dnsLabel.MatchString(label) || (len(label) >= 4 && label[2:4] == "--") {
		t.Errorf("%s = %q, not a valid DNS label", what, label)
	}
}

func TestSlugKeepsNamesThatAreAlreadyLabels(t *testing.T) {
	for _, branch := range []string{
		"main", "master", "develop", "feature-login", "a", "7", "v2",
		"release-2024", "1a2b3c4d", "a--b", "abc--d", "c-0123", "c-0123456789abc",
		"fix-deadbee", strings.Repeat("a", 63),
	} {
		if got := Slug(branch); got != branch {
			t.Errorf("Slug(%q) = %q, want it kept", branch, got)
		}
	}
}

// The hashes are pinned: a change would move every preview to a new host.
func TestSlugIsStableAcrossReleases(t *testing.T) {
	for branch, want := range map[string]string{
		"feat/x":                                 "feat-x-79b4cc55",
		"feat_x":                                 "feat-x-9d61348d",
		"Feat.X":                                 "feat-x-031c5ad7",
		"":                                       "b-e3b0c442",
		"$(rm -rf /)":                            "rm-rf-a055ea1a",
		"c-0123456789ab":                         "c-0123456789ab-3bcfc4b1",
		"xn--abc":                                "xn-abc-39b9ee34",
		"-lead":                                  "lead-54e05a0b",
		"trail-":                                 "trail-79258a88",
		"release-20240101":                       "release-20240101-ca11bf45",
		"dependabot/npm_and_yarn/lodash-4.17.21": "dependabot-npm-and-yarn-lodash-4-17-21-b7180b7c",
	} {
		if got := Slug(branch); got != want {
			t.Errorf("Slug(%q) = %q, want %q", branch, got, want)
		}
	}
}

func TestBranchesThatSanitiseAlikeGetDifferentSlugs(t *testing.T) {
	a, b, c := Slug("feat/x"), Slug("feat_x"), Slug("Feat.X")
	if a == b || b == c || a == c {
		t.Errorf("feat/x, feat_x, Feat.X share a slug: %q %q %q", a, b, c)
	}
}

func TestBranchCannotClaimAHashedSlug(t *testing.T) {
	victim := Slug("feat/x")
	if got := Slug(victim); got == victim {
		t.Errorf("a branch named %q took the slug of feat/x", victim)
	}
}

func TestBranchCannotClaimAPerCommitLabel(t *testing.T) {
	for _, branch := range []string{"c-0123456789ab", "c-deadbeefcafe"} {
		got := Slug(branch)
		if got == branch || IsCommitLabel(got) {
			t.Errorf("Slug(%q) = %q, the label of a per-commit preview", branch, got)
		}
	}
}

func TestBranchOfOnlySymbolsGetsAFallbackStem(t *testing.T) {
	for _, branch := range []string{"", "$", "../..", "ü", "🚀", "\x01\x7f", "-", "--"} {
		got := Slug(branch)
		if !strings.HasPrefix(got, "b-") || len(got) != len("b-")+hashLen {
			t.Errorf("Slug(%q) = %q, want b-<hash>", branch, got)
		}
	}
}

func TestLongBranchIsCutToOneLabel(t *testing.T) {
	long := strings.Repeat("Very.Long.Branch/", 15)
	got := Slug(long)
	if len(got) != maxLabel {
		t.Errorf("len(Slug(250 characters)) = %d, want %d", len(got), maxLabel)
	}
	if !strings.HasPrefix(got, "very-long-branch-very-long") {
		t.Errorf("Slug(long) = %q, want the start of the name kept", got)
	}
	assertLabel(t, "Slug(long)", got)
	if Slug(long+"x") == got {
		t.Error("names that differ after the cut share a slug")
	}
}

// hostileBranches are names a pusher might choose. git itself refuses some of
// them; the slug must not rely on that.
func hostileBranches() []string {
	names := []string{
		"$(rm -rf /)", "`reboot`", "a;b", "a|b", "a&b", "a&&b", "a||b", "a>b", "a<b",
		"'quoted'", `"quoted"`, "$HOME", "${IFS}", "~root", "*", "?", "[abc]", "a b", "a\tb",
		"..", "../../etc", "../../etc/passwd", "a/../b", "./a", "a/.", ".hidden", "a.lock",
		"a\nb", "a\rb", "a\x1bb", "a\x7fb", "\x01", "a\u200fb", "a\u202eb", "a\u200bb",
		"main\u00a0", "🚀", "🚀-launch", "feat/🚀", "café", "cafe\u0301", "ünïcödé",
		"mаin",                                 // Cyrillic а
		"main", "MAIN", "Main", "mAiN", "ＭＡＩＮ", // fullwidth
		"feat/x", "feat_x", "Feat.X", "feat-x", "feat.x", "feat x", "feat//x", "feat--x",
		"feat/x/", "/feat/x", "feat-x-79b4cc55", "Feat-X-79b4cc55",
		"c-0123456789ab", "C-0123456789AB", "c-0123456789ab-3bcfc4b1", "c/0123456789ab",
		"xn--abc", "xn--", "ab--cd", "XN--abc", "-lead", "trail-", "-", "--", "---", "",
		"b", "b-e3b0c442", "refs/heads/main", "HEAD", "@", "@{-1}", "a\\b", "a:b", "a^b",
		"\xff\xfe", "\xc3", // invalid UTF-8
		strings.Repeat("a", 250), strings.Repeat("A", 250), strings.Repeat("a", 249) + "b",
		strings.Repeat("a", 64), strings.Repeat("a", 63), strings.Repeat("a", 62) + "-",
		strings.Repeat("é", 125), strings.Repeat("a/", 125),
	}
	return names
}

func TestHostileBranchNamesGetValidDistinctSlugs(t *testing.T) {
	seen := map[string]string{}
	for _, branch := range hostileBranches() {
		got := Slug(branch)
		assertLabel(t, fmt.Sprintf("Slug(%q)", branch), got)
		if other, ok := seen[got]; ok && other != branch {
			t.Errorf("Slug(%q) = Slug(%q) = %q", branch, other, got)
		}
		seen[got] = branch
	}
}

// Random names over an alphabet rich in characters the slug has to replace,
// so that many sanitise alike; a fixed seed keeps the run reproducible.
func TestRandomBranchNamesGetValidDistinctStableSlugs(t *testing.T) {
	const alphabet = "aAbB09-_./ $;`|&\u00e9\u0430🚀\x01"
	runes := []rune(alphabet)
	r := rand.New(rand.NewPCG(5, 5))
	seen := map[string]string{}
	for range 20000 {
		var b strings.Builder
		for range r.IntN(80) {
			b.WriteRune(runes[r.IntN(len(runes))])
		}
		branch := b.String()
		got := Slug(branch)
		assertLabel(t, fmt.Sprintf("Slug(%q)", branch), got)
		if again := Slug(branch); again != got {
			t.Fatalf("Slug(%q) = %q, then %q", branch, got, again)
		}
		if other, ok := seen[got]; ok && other != branch {
			t.Fatalf("Slug(%q) = Slug(%q) = %q", branch, other, got)
		}
		seen[got] = branch
	}
}

func TestValidLabelRejectsTheIDNAPrefixShape(t *testing.T) {
	for s, want := range map[string]bool{
		"xn--abc": false, "ab--": false, "a--b": true, "abc--d": true, "ab-c": true,
		"": false, "-a": false, "a-": false, "A": false, strings.Repeat("a", 64): false,
	} {
		if got := ValidLabel(s); got != want {
			t.Errorf("ValidLabel(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestHostJoinsLabelAndDomain(t *testing.T) {
	for _, tc := range []struct{ label, domain, want string }{
		{"web-feat-x-1a2b3c4d", "preview.example.com", "web-feat-x-1a2b3c4d.preview.example.com"},
		{"main", "Preview.Example.COM.", "main.preview.example.com"},
		{"main", "localhost", "main.localhost"},
	} {
		if got := Host(tc.label, tc.domain); got != tc.want {
			t.Errorf("Host(%q, %q) = %q, want %q", tc.label, tc.domain, got, tc.want)
		}
	}
}

func TestServiceLabelKeepsAValidJoin(t *testing.T) {
	if got := ServiceLabel("api", Slug("feat/x")); got != "api-feat-x-79b4cc55" {
		t.Errorf("ServiceLabel = %q, want api-feat-x-79b4cc55", got)
	}
}

func TestServiceLabelStaysOneDistinctLabel(t *testing.T) {
	slugs := []string{Slug("main"), Slug("feat/x"), Slug("feat_x"), Slug(strings.Repeat("x", 250)), Slug(strings.Repeat("y", 63))}
	services := []string{"web", "api", "Web", "api_v2", "api.v2", "API-V2", "xn", "ab--c", "c", strings.Repeat("s", 70), ""}
	seen := map[string]string{}
	for _, service := range services {
		for _, slug := range slugs {
			got := ServiceLabel(service, slug)
			key := service + " + " + slug
			assertLabel(t, "ServiceLabel("+key+")", got)
			if other, ok := seen[got]; ok {
				t.Errorf("ServiceLabel(%s) = ServiceLabel(%s) = %q", key, other, got)
			}
			seen[got] = key
		}
	}
}

func TestServiceLabelNeverTakesAPerCommitLabel(t *testing.T) {
	if got := ServiceLabel("c", "0123456789ab"); IsCommitLabel(got) {
		t.Errorf("ServiceLabel(c, 0123456789ab) = %q, the label of a per-commit preview", got)
	}
}

func TestProjectNameKeepsAValidJoin(t *testing.T) {
	for _, tc := range []struct{ project, slug, want string }{
		{"shop", "main", "shop-main"},
		{"my_app", "feat-x-79b4cc55", "my_app-feat-x-79b4cc55"},
	} {
		if got := ProjectName(tc.project, tc.slug); got != tc.want {
			t.Errorf("ProjectName(%q, %q) = %q, want %q", tc.project, tc.slug, got, tc.want)
		}
	}
}

func TestProjectNameIsAcceptedByCompose(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "compose.yaml")
	if err := os.WriteFile(file, []byte("services:\n  web:\n    image: busybox:1.36\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	for _, tc := range []struct{ project, slug string }{
		{"shop", Slug("main")},
		{"shop", Slug(strings.Repeat("Long/", 50))},
		{strings.Repeat("p", 60), Slug("main")},
		{"_shop", Slug("main")},
		{"Shop", Slug("main")},
		{"shop", Slug("feat/x")},
		{"shop", Slug("feat_x")},
		{"", ""},
	} {
		name := ProjectName(tc.project, tc.slug)
		if len(name) > maxLabel || loader.NormalizeProjectName(name) != name {
			t.Errorf("ProjectName(%q, %q) = %q, not a compose project name of at most 63", tc.project, tc.slug, name)
		}
		if other, ok := seen[name]; ok {
			t.Errorf("ProjectName(%q, %q) = %q, as for %s", tc.project, tc.slug, name, other)
		}
		seen[name] = tc.project + " + " + tc.slug
		loadAs(t, file, name)
	}
}

// loadAs loads the compose file under the given project name as docker
// compose would, which refuses a name it would have to normalise.
func loadAs(t *testing.T, file, name string) {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{file}, cli.WithName(name), cli.WithWorkingDirectory(filepath.Dir(file)))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Errorf("compose refuses project name %q: %v", name, err)
		return
	}
	if p.Name != name {
		t.Errorf("compose loaded project %q as %q", name, p.Name)
	}
}

func FuzzSlug(f *testing.F) {
	names := hostileBranches()
	for i, name := range names {
		f.Add(name, names[(i+1)%len(names)])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		sa, sb := Slug(a), Slug(b)
		assertLabel(t, fmt.Sprintf("Slug(%q)", a), sa)
		if Slug(a) != sa {
			t.Fatalf("Slug(%q) is not deterministic", a)
		}
		if dnsLabel.MatchString(a) && !(len(a) >= 4 && a[2:4] == "--") && !IsCommitLabel(a) &&
			!hashTail.MatchString(a) && sa != a {
			t.Errorf("Slug(%q) = %q, want a valid label kept", a, sa)
		}
		if a != b && sa == sb {
			t.Errorf("Slug(%q) = Slug(%q) = %q", a, b, sa)
		}
	})
}

func FuzzServiceLabelAndProjectName(f *testing.F) {
	f.Add("web", "main")
	f.Add("Web_1", "feat-x-79b4cc55")
	f.Add("c", "0123456789ab")
	f.Add("", "")
	f.Add(strings.Repeat("s", 70), strings.Repeat("b", 63))
	f.Fuzz(func(t *testing.T, service, slug string) {
		assertLabel(t, fmt.Sprintf("ServiceLabel(%q, %q)", service, slug), ServiceLabel(service, slug))
		if IsCommitLabel(ServiceLabel(service, slug)) {
			t.Errorf("ServiceLabel(%q, %q) is a per-commit label", service, slug)
		}
		name := ProjectName(service, slug)
		if len(name) > maxLabel || name == "" || loader.NormalizeProjectName(name) != name {
			t.Errorf("ProjectName(%q, %q) = %q, not a compose project name", service, slug, name)
		}
	})
}
